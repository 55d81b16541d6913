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
//! | `fit(#{...})` | fits a scaling law to a CSV or to `runs` (train results), returns the report; optional `predict`, `compute_optimal`, `effective_data`, `plots` |
//! | `hitchhiker(#{...})` | fits on smaller runs' intermediate checkpoints, scores on the largest run's last 30% |
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
        engine.register_fn("hitchhiker", |ctx: NativeCallContext, request: Map| -> Result<Map, Box<EvalAltResult>> {
            hitchhiker_from_script(request).map_err(|e| runtime_error(&ctx, format!("hitchhiker: {e:#}")))
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
    let predict = request.remove("predict");
    let compute_optimal = request.remove("compute_optimal");
    let effective_data = request.remove("effective_data");
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
                            .filter_map(|(k, v)| Some((k.to_string(), as_number(&v)?)))
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
    let mut report = to_dyn(&fit.report)?.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("fit report is not a map"))?;
    if let Some(points) = predict {
        let rows = number_maps(points, "predict")?;
        let inputs = &fit.report.inputs;
        let columns = inputs
            .iter()
            .map(|name| {
                let col = rows.iter().enumerate().map(|(i, r)| {
                    r.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
                        .ok_or_else(|| anyhow::anyhow!("predict[{i}] lacks input \"{name}\" (the law's inputs: {})", inputs.join(", ")))
                });
                Ok((name.clone(), col.collect::<anyhow::Result<Vec<f64>>>()?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let predictions = fit.predict(&dctk_laws::Points::for_prediction(columns)?)?;
        let out: Array = rows
            .iter()
            .zip(&predictions)
            .map(|(row, p)| {
                let mut m: Map = row.iter().map(|(k, v)| (k.as_str().into(), Dynamic::from_float(*v))).collect();
                m.insert("loss".into(), Dynamic::from_float(p.value));
                if let Some(iv) = p.interval {
                    m.insert("lower".into(), Dynamic::from_float(iv.lower));
                    m.insert("upper".into(), Dynamic::from_float(iv.upper));
                }
                Dynamic::from_map(m)
            })
            .collect();
        report.insert("predictions".into(), out.into());
    }
    if let Some(flops) = compute_optimal {
        let budgets: Vec<f64> = match flops.clone().try_cast::<Array>() {
            Some(a) => a.iter().map(|x| number(x, "compute_optimal")).collect::<anyhow::Result<_>>()?,
            None => vec![number(&flops, "compute_optimal")?],
        };
        let out: Array = budgets
            .iter()
            .map(|&c| to_dyn(&dctk_laws::compute_optimal_from_fit(&fit, c)?))
            .collect::<anyhow::Result<_>>()?;
        report.insert("compute_optimal".into(), out.into());
    }
    if let Some(request) = effective_data {
        // #{ input: "D", loss: <the method's loss>, at: <the method's data>, fixed: #{N: ...} }
        let m = request.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("key \"effective_data\" must be a map #{{input, loss, at, fixed}}"))?;
        let get = |k: &str| m.get(k).ok_or_else(|| anyhow::anyhow!("effective_data: missing key \"{k}\""));
        let input = get("input")?.to_string();
        let fixed: Vec<(String, f64)> = match m.get("fixed") {
            Some(f) => number_maps(Dynamic::from_array(vec![f.clone()]), "effective_data.fixed")?.remove(0),
            None => vec![],
        };
        let mult = dctk_laws::effective_data_multiplier(&fit, &input, &fixed, number(get("loss")?, "effective_data.loss")?, number(get("at")?, "effective_data.at")?)?;
        report.insert("effective_data".into(), to_dyn(&mult)?);
    }
    Ok(report)
}

/// A Rhai number (int or float) as f64; `None` for anything else.
fn as_number(v: &Dynamic) -> Option<f64> {
    v.as_float().ok().or_else(|| v.as_int().ok().map(|i| i as f64))
}

/// A Rhai number as f64, or an error naming `what`.
fn number(v: &Dynamic, what: &str) -> anyhow::Result<f64> {
    as_number(v).ok_or_else(|| anyhow::anyhow!("key \"{what}\" must be a number, got {}", v.type_name()))
}

/// An array of maps of numbers (e.g. `[#{N: 1e9, D: 2e10}]`) as name/value rows.
fn number_maps(v: Dynamic, what: &str) -> anyhow::Result<Vec<Vec<(String, f64)>>> {
    let arr = v.try_cast::<Array>().ok_or_else(|| anyhow::anyhow!("key \"{what}\" must be an array of maps"))?;
    arr.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let m = r.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("{what}[{i}] is not a map"))?;
            m.iter().map(|(k, v)| Ok((k.to_string(), number(v, &format!("{what}[{i}].{k}"))?))).collect()
        })
        .collect()
}

/// `hitchhiker(#{ law, runs, ... })`: Choshen et al.'s protocol on a study's runs. Each run
/// contributes its logged validation curve (`curve`: tokens, val_loss) and size
/// (`params`); the largest run is the target. The law is fitted on the smaller runs'
/// checkpoints (dropping those before `cut_beginning_tokens`, default 1e10 as in the
/// paper; lower it for small studies) and scored on the target's last 30%.
fn hitchhiker_from_script(request: Map) -> anyhow::Result<Map> {
    let mut request = request;
    let runs = request.remove("runs").ok_or_else(|| anyhow::anyhow!("missing key \"runs\" (train results)"))?;
    let mut opts = dctk_laws::HitchhikerOptions::default();
    for (key, slot) in [
        ("cut_beginning_tokens", &mut opts.cut_beginning_tokens),
        ("train_fraction", &mut opts.train_fraction),
        ("test_from_fraction", &mut opts.test_from_fraction),
    ] {
        if let Some(v) = request.remove(key) {
            *slot = number(&v, key)?;
        }
    }
    let runs = runs.try_cast::<Array>().ok_or_else(|| anyhow::anyhow!("key \"runs\" must be an array of train results"))?;
    let curves = runs
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let m = r.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("runs[{i}] is not a map"))?;
            let params = number(m.get("params").ok_or_else(|| anyhow::anyhow!("runs[{i}] has no \"params\""))?, "params")?;
            let curve = m.get("curve").cloned().ok_or_else(|| anyhow::anyhow!("runs[{i}] has no \"curve\""))?;
            let points = curve.try_cast::<Array>().ok_or_else(|| anyhow::anyhow!("runs[{i}].curve is not an array"))?;
            let (mut tokens, mut loss) = (Vec::new(), Vec::new());
            for p in points {
                let p = p.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("runs[{i}].curve has a non-map point"))?;
                let t = number(p.get("tokens").unwrap_or(&Dynamic::UNIT), "curve.tokens")?;
                if t > 0.0 {
                    tokens.push(t);
                    loss.push(number(p.get("val_loss").unwrap_or(&Dynamic::UNIT), "curve.val_loss")?);
                }
            }
            let name = m.get("run_id").map(|v| v.to_string()).unwrap_or_else(|| format!("run {i}"));
            Ok(dctk_laws::Curve { name, params, tokens, loss })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec: dctk_laws::FitSpec = rhai::serde::from_dynamic(&Dynamic::from_map(request)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let law = spec.build_law()?;
    let fit_opts = spec.fit_options(law.as_ref())?;
    let result = dctk_laws::hitchhiker(law, &curves, &opts, &fit_opts)?;
    to_dyn(&result)?.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("not a map"))
}

/// Any serde value (a decision result) as a Rhai value.
fn to_dyn<T: serde::Serialize>(value: &T) -> anyhow::Result<Dynamic> {
    rhai::serde::to_dynamic(value).map_err(|e| anyhow::anyhow!("{e}"))
}
