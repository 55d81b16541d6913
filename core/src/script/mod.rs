//! Rhai studies: the engine, the functions a study can call, and positioned errors.
//!
//! Scripts *plan*: they build plain maps of settings and hand them to Rust, which
//! executes. The engine is sandboxed: an operations limit stops runaway loops, `eval`
//! is disabled, and imports resolve relative to the study's directory.
//!
//! Functions registered here (the script API of this version):
//!
//! | function | what it does |
//! |---|---|
//! | `train(#{...})` | trains one model (or reuses/resumes it), returns a map of results |
//! | `fit(#{...})` | fits a scaling law to a CSV or to `runs` (train results), returns the report |
//! | `ingest(#{...})` | builds a token corpus (as `dctk data ingest`), returns its summary map |
//! | `table(rows)`, `table(rows, columns)` | renders an array of maps as an aligned text table |
//! | `presets()` | the model presets with their sizes |
//!
//! `train`'s keys are documented on [`crate::train::TrainSpec`]; its result map on
//! [`crate::train::RunResult`].
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext, Position};

use crate::study::cell::{run_train_cell, CellContext};
use crate::train::{model::PRESETS, ModelConfig, TrainSpec};

/// A script error with the file and position it points at.
#[derive(Debug)]
pub struct ScriptError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            _ => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ScriptError {}

fn positioned(file: &Path, pos: Position, message: String) -> ScriptError {
    ScriptError { file: file.to_path_buf(), line: pos.line(), column: pos.position(), message }
}

/// Turns a Rhai evaluation error into a positioned error. Errors raised inside a
/// function called by the script carry the position of the innermost call.
fn from_eval(file: &Path, err: EvalAltResult) -> ScriptError {
    let mut err = err;
    // Unwrap "error in function call" layers to the innermost cause and position.
    loop {
        match err {
            EvalAltResult::ErrorInFunctionCall(_, _, inner, _) | EvalAltResult::ErrorInModule(_, inner, _) => err = *inner,
            _ => break,
        }
    }
    let pos = err.take_position();
    let message = match &err {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        EvalAltResult::ErrorTooManyOperations(_) => {
            "the script ran past its operations limit (a runaway loop?); studies plan work, Rust executes it".into()
        }
        other => other.to_string(),
    };
    positioned(file, pos, message)
}

fn runtime_error(ctx: &NativeCallContext, message: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into(), ctx.call_position()).into()
}

/// Runs study scripts with a cell context (where runs go, how they execute).
pub struct Study {
    pub cells: CellContext,
    /// Rhai operations allowed per script (loops, calls): a runaway-loop guard.
    pub max_operations: u64,
}

impl Study {
    fn engine(&self, script_dir: &Path) -> Engine {
        let mut engine = Engine::new();
        engine.set_max_operations(self.max_operations);
        engine.set_max_call_levels(64);
        engine.set_max_expr_depths(128, 64);
        engine.set_max_string_size(16 << 20);
        engine.set_max_array_size(1 << 20);
        engine.set_max_map_size(1 << 16);
        engine.disable_symbol("eval");
        engine.set_module_resolver(rhai::module_resolvers::FileModuleResolver::new_with_path(script_dir));
        engine.on_print(|s| println!("{s}"));
        engine.on_debug(|s, _, pos| eprintln!("[debug {pos}] {s}"));

        let cells = Arc::new(self.cells.clone());
        engine.register_fn("train", move |ctx: NativeCallContext, settings: Map| -> Result<Map, Box<EvalAltResult>> {
            let json: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(settings))
                .map_err(|e| runtime_error(&ctx, format!("train: {e}")))?;
            let spec = TrainSpec::from_json(json).map_err(|e| runtime_error(&ctx, format!("train: {e}")))?;
            let result = run_train_cell(&spec, &cells).map_err(|e| runtime_error(&ctx, format!("train: {e:#}")))?;
            let dynamic = rhai::serde::to_dynamic(&result).map_err(|e| runtime_error(&ctx, format!("train: {e}")))?;
            Ok(dynamic.cast::<Map>())
        });
        let base_dir = self.cells.base_dir.clone();
        engine.register_fn("ingest", move |ctx: NativeCallContext, settings: Map| -> Result<Map, Box<EvalAltResult>> {
            let json: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(settings))
                .map_err(|e| runtime_error(&ctx, format!("ingest: {e}")))?;
            let summary = crate::data::ingest_from_script(json, &base_dir).map_err(|e| runtime_error(&ctx, format!("ingest: {e}")))?;
            let dynamic = rhai::serde::to_dynamic(&summary).map_err(|e| runtime_error(&ctx, format!("ingest: {e}")))?;
            Ok(dynamic.cast::<Map>())
        });
        let base_dir = self.cells.base_dir.clone();
        engine.register_fn("fit", move |ctx: NativeCallContext, request: Map| -> Result<Map, Box<EvalAltResult>> {
            fit_from_script(&base_dir, request).map_err(|e| runtime_error(&ctx, format!("fit: {e:#}")))
        });
        engine.register_fn("table", |ctx: NativeCallContext, rows: Array| -> Result<String, Box<EvalAltResult>> {
            table(&rows, None).map_err(|e| runtime_error(&ctx, e))
        });
        engine.register_fn(
            "table",
            |ctx: NativeCallContext, rows: Array, columns: Array| -> Result<String, Box<EvalAltResult>> {
                let cols: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
                table(&rows, Some(&cols)).map_err(|e| runtime_error(&ctx, e))
            },
        );
        engine.register_fn("presets", || -> Array {
            PRESETS
                .iter()
                .map(|&(name, ..)| {
                    let cfg = ModelConfig::preset(name, 1024).unwrap();
                    let mut m = Map::new();
                    m.insert("name".into(), name.into());
                    m.insert("n_layer".into(), cfg.n_layer.into());
                    m.insert("d_model".into(), cfg.d_model.into());
                    m.insert("params".into(), cfg.total_params().into());
                    m.insert("non_embedding_params".into(), cfg.non_embedding_params().into());
                    Dynamic::from_map(m)
                })
                .collect()
        });
        engine
    }

    /// Compiles and runs the script at `path`.
    pub fn run_file(&self, path: &Path) -> Result<(), ScriptError> {
        let source = std::fs::read_to_string(path).map_err(|e| ScriptError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("cannot read script: {e}"),
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let engine = self.engine(&dir);
        let ast = engine
            .compile(&source)
            .map_err(|e| positioned(path, e.position(), format!("syntax error: {}", e.err_type())))?;
        engine.run_ast(&ast).map_err(|e| from_eval(path, *e))
    }
}

/// Renders rows (maps) as an aligned text table: floats with 4 decimals.
pub fn table(rows: &Array, columns: Option<&[String]>) -> Result<String, String> {
    let maps: Vec<Map> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| r.clone().try_cast::<Map>().ok_or(format!("table: row {i} is not a map")))
        .collect::<Result<_, _>>()?;
    let cols: Vec<String> = match columns {
        Some(c) => c.to_vec(),
        None => maps.first().map(|m| m.keys().map(|k| k.to_string()).collect()).unwrap_or_default(),
    };
    let cell = |m: &Map, c: &str| -> String {
        match m.get(c) {
            None => "-".into(),
            Some(v) if v.is_float() => format!("{:.4}", v.as_float().unwrap()),
            Some(v) => v.to_string(),
        }
    };
    let body: Vec<Vec<String>> = maps.iter().map(|m| cols.iter().map(|c| cell(m, c)).collect()).collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| body.iter().map(|r| r[i].len()).chain([c.len()]).max().unwrap())
        .collect();
    let line = |cells: &[String]| -> String {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ")
    };
    let mut out = line(&cols);
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for r in &body {
        out.push('\n');
        out.push_str(&line(r));
    }
    Ok(out)
}

/// `fit(#{ law, data | runs, columns, ... })`: the keys of `dctk_laws::FitSpec`, plus
/// `runs` (an array of `train` results, each one row of its numeric fields) and
/// `plots` (a directory, relative to the script, for residual and curve SVGs).
/// Returns the fit report as a map (parameters with intervals, objective, diagnostics).
fn fit_from_script(base_dir: &Path, mut request: Map) -> anyhow::Result<Map> {
    let runs = request.remove("runs");
    let plots = request.remove("plots").map(|p| p.to_string());
    if let Some(data) = request.get_mut("data") {
        let resolved = base_dir.join(data.to_string());
        *data = resolved.display().to_string().into();
    }
    let spec: dctk_laws::FitSpec = rhai::serde::from_dynamic(&Dynamic::from_map(request))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows: Option<Vec<Vec<(String, f64)>>> = match runs {
        None => None,
        Some(runs) => {
            let runs = runs.try_cast::<Array>().ok_or_else(|| anyhow::anyhow!("key \"runs\" must be an array of train results"))?;
            Some(
                runs.into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let map = r.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("runs[{i}] is not a map"))?;
                        Ok(map
                            .into_iter()
                            .filter_map(|(k, v)| {
                                let x = v.as_float().ok().or_else(|| v.as_int().ok().map(|i| i as f64))?;
                                Some((k.to_string(), x))
                            })
                            .collect())
                    })
                    .collect::<anyhow::Result<_>>()?,
            )
        }
    };
    let fit = crate::fitting::fit_spec(&spec, rows.as_deref())?;
    if let Some(dir) = plots {
        crate::fitting::write_plots(&fit, &base_dir.join(dir), &spec.law)?;
    }
    let report = rhai::serde::to_dynamic(&fit.report).map_err(|e| anyhow::anyhow!("{e}"))?;
    report.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("fit report is not a map"))
}
