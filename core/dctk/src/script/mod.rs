//! The Rhai binding of studies: the engine, the functions a study can call, imports
//! and positioned errors. Nothing here decides what runs: the functions call into the
//! study layer ([`crate::study`]), and the rounds are [`crate::study::rounds`]'s.
//!
//! Scripts *plan*: `train` returns a [`Run`] handle for a cell at once; reading a pending
//! cell's result ends the pass, the planned cells run in parallel, and the script runs
//! again (see [`crate::study::rounds`]). The engine is sandboxed: an operations limit stops runaway
//! loops, `eval` is disabled, Ctrl-C cancels, and every path goes through the study's
//! [`Sandbox`] (the study directory and the declared data roots; imports too).
//!
//! The functions of this version (each with an example in `docs/script-api.md`):
//!
//! | function | what it does |
//! |---|---|
//! | `train(#{...})`, `train([...])` | plans a training cell (or one per map), returns its `Run` handle(s) |
//! | `generate(#{...})` | plans a generation cell (a corpus domain generated from documents), returns its handle, usable as `train`'s `corpus` |
//! | `grid(#{k: [..], ..})`, `zip(#{k: [..], ..})`, `product(a, b)` | settings variants: Cartesian product, element-wise, combined |
//! | `sweep(base, variants)` | `base` merged with each variant, each named after what varies |
//! | `fit(#{...})` | fits a scaling law to a CSV, `runs` or `rows`; `where`, `group_by` (one fit per group); optional `predict`, `compute_optimal`, `effective_data`, `plots` |
//! | `evaluate(#{...})` | a law at given `params` on data: predictions, residuals, R² on the loss scale, the objective, ARE |
//! | `read_csv(path)` | a CSV inside the sandbox as row maps (numbers as floats, other cells as strings) |
//! | `data_efficiency(#{...})` | the data-efficiency multiplier of a method against real-only baseline runs (bootstrap interval) |
//! | `hitchhiker(#{...})` | fits on smaller runs' intermediate checkpoints, scores on the largest run's last 30% |
//! | `ingest(#{...})` | builds a token corpus (as `dctk data ingest`), returns its summary map |
//! | `mixing_rows(runs)` | one row per evaluation × domain of mixture runs (`step`, `r`, `loss`, …), for BiMix / Ye et al. fits |
//! | `predict_mixture(#{...})` | per-domain fits' predictions for held-out runs (MRE, R²) or a mixture, with intervals |
//! | `optimize_mixture(#{...})` | the mixture (and, over a step range, the total tokens) per-domain BiMix or data-constrained fits predict best, under bounds and budgets |
//! | `corpus_stats(#{...})` | token counts and entropy proxies per domain, and a mixture from one (as `dctk data stats`) |
//! | `table(rows)`, `table(rows, columns)` | renders maps (or runs) as an aligned text table |
//! | `result(run)` | a finished run's whole result map |
//! | `presets()` | the model presets with their sizes |
//!
//! `train`'s keys are documented on [`crate::train::TrainSpec`]; a run's result keys on
//! [`crate::train::RunResult`].
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext, Position, AST};

pub mod handle;
pub mod sweep;

pub use handle::{Run, RunState};

use crate::fitting::script::{data_efficiency_from_script, evaluate_from_script, fit_from_script_recorded, hitchhiker_from_script, read_csv_from_script};
use crate::study::rounds::{self, RoundEnd, RunSummary, StudyError};
use crate::study::session::{Mode, Session, SessionOptions};
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
/// function (or an imported script) carry the position, and file, of the innermost call.
fn from_eval(file: &Path, err: EvalAltResult) -> ScriptError {
    let mut err = err;
    let mut file = file.to_path_buf();
    loop {
        match err {
            EvalAltResult::ErrorInFunctionCall(_, source, inner, _) => {
                if !source.is_empty() {
                    file = PathBuf::from(source);
                }
                err = *inner;
            }
            EvalAltResult::ErrorInModule(source, inner, _) => {
                if !source.is_empty() {
                    file = PathBuf::from(source);
                }
                err = *inner;
            }
            _ => break,
        }
    }
    let pos = err.take_position();
    let message = match &err {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        EvalAltResult::ErrorTooManyOperations(_) => {
            "the script ran past its operations limit (a runaway loop?); studies plan work, Rust executes it (raise it with --max-operations)".into()
        }
        EvalAltResult::ErrorTerminated(..) => "cancelled".into(),
        other => other.to_string(),
    };
    positioned(&file, pos, message)
}

/// A script saved with a UTF-8 byte-order mark (some Windows editors do) is read without it.
fn strip_bom(source: &str) -> &str {
    source.strip_prefix('\u{feff}').unwrap_or(source)
}

/// Records an analysis's result map for the report (see [`Session::record_analysis`]).
fn record(s: &Session, ctx: &NativeCallContext, kind: &str, out: &Map) {
    if s.opts.mode != Mode::Run {
        return;
    }
    if let Ok(value) = rhai::serde::from_dynamic::<serde_json::Value>(&Dynamic::from_map(out.clone())) {
        s.record_analysis(kind, s.call_site(ctx.call_source(), ctx.call_position().line().unwrap_or(0)), value);
    }
}

fn runtime_error(ctx: &NativeCallContext, message: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into(), ctx.call_position()).into()
}

/// A study script with its session.
pub struct Study {
    pub session: Arc<Session>,
}

impl Study {
    pub fn new(opts: SessionOptions, script: &Path) -> Study {
        Study { session: Arc::new(Session::new(opts, script)) }
    }

    fn engine(&self) -> Engine {
        let s = self.session.clone();
        let mut engine = Engine::new();
        engine.set_max_operations(s.opts.max_operations);
        engine.set_max_call_levels(64);
        engine.set_max_expr_depths(128, 64);
        engine.set_max_string_size(16 << 20);
        engine.set_max_array_size(1 << 24);
        engine.set_max_map_size(1 << 24);
        engine.disable_symbol("eval");
        engine.set_module_resolver(SandboxedImports { session: s.clone(), importing: std::sync::Mutex::new(Vec::new()) });
        let out = s.clone();
        engine.on_print(move |text| out.print(text));
        engine.on_debug(|text, _, pos| eprintln!("[debug {pos}] {text}"));
        let cancel = s.opts.cancel.clone();
        engine.on_progress(move |_| cancel.load(Ordering::Relaxed).then(|| Dynamic::from("cancelled")));

        // train(#{...}) and train([#{...}, ...])
        let ss = s.clone();
        engine.register_fn("train", move |ctx: NativeCallContext, settings: Map| -> Result<Run, Box<EvalAltResult>> {
            train_one(&ss, &ctx, settings)
        });
        let ss = s.clone();
        engine.register_fn("train", move |ctx: NativeCallContext, all: Array| -> Result<Array, Box<EvalAltResult>> {
            all.into_iter()
                .enumerate()
                .map(|(i, d)| {
                    let m = d.try_cast::<Map>().ok_or_else(|| runtime_error(&ctx, format!("train: item {i} is not a map of settings")))?;
                    train_one(&ss, &ctx, m).map(Dynamic::from)
                })
                .collect()
        });

        // generate(#{...}): a generation cell; its handle is a corpus for `train`.
        let ss = s.clone();
        engine.register_fn("generate", move |ctx: NativeCallContext, settings: Map| -> Result<Run, Box<EvalAltResult>> {
            generate_one(&ss, &ctx, settings)
        });

        // Run handles: identity now, results when finished.
        engine.register_type_with_name::<Run>("Run");
        let ss = s.clone();
        engine.register_indexer_get(move |ctx: NativeCallContext, run: &mut Run, key: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            run_get(&ss, &ctx, run, key)
        });
        let ss = s.clone();
        engine.register_fn("result", move |ctx: NativeCallContext, run: &mut Run| -> Result<Map, Box<EvalAltResult>> {
            finished(&ss, &ctx, run).map(|m| (*m).clone())
        });
        let describe = |run: &mut Run| format!("Run({}, {}, {})", run.label, run.id, run.status());
        engine.register_fn("to_string", describe);
        engine.register_fn("to_debug", describe);

        sweep::register(&mut engine);

        let ss = s.clone();
        engine.register_fn("ingest", move |ctx: NativeCallContext, settings: Map| -> Result<Map, Box<EvalAltResult>> {
            let json: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(settings))
                .map_err(|e| runtime_error(&ctx, format!("ingest: {e}")))?;
            let summary = ss.ingest(json).map_err(|e| runtime_error(&ctx, format!("ingest: {e}")))?;
            let dynamic = rhai::serde::to_dynamic(&summary).map_err(|e| runtime_error(&ctx, format!("ingest: {e}")))?;
            Ok(dynamic.cast::<Map>())
        });
        let ss = s.clone();
        engine.register_fn("corpus_stats", move |ctx: NativeCallContext, settings: Map| -> Result<Map, Box<EvalAltResult>> {
            let json: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(settings))
                .map_err(|e| runtime_error(&ctx, format!("corpus_stats: {e}")))?;
            let stats = ss.corpus_stats(json).map_err(|e| runtime_error(&ctx, format!("corpus_stats: {e:#}")))?;
            let dynamic = rhai::serde::to_dynamic(&stats).map_err(|e| runtime_error(&ctx, format!("corpus_stats: {e}")))?;
            Ok(dynamic.cast::<Map>())
        });
        let ss = s.clone();
        engine.register_fn("fit", move |ctx: NativeCallContext, mut request: Map| -> Result<Dynamic, Box<EvalAltResult>> {
            data_rows(&ss, &ctx, &mut request, "fit")?;
            per_domain(&ctx, &mut request)?;
            if ss.opts.mode == Mode::Plan {
                // `dctk plan` writes nothing into the study: no plot files.
                request.remove("plots");
            }
            let mut records = Vec::new();
            let record = (ss.opts.mode == Mode::Run).then_some(&mut records);
            let out = fit_from_script_recorded(&ss.opts.sandbox, request, record).map_err(|e| runtime_error(&ctx, format!("fit: {e:#}")))?;
            for r in records {
                ss.record_analysis("fit", ss.call_site(ctx.call_source(), ctx.call_position().line().unwrap_or(0)), r);
            }
            Ok(out)
        });
        let ss = s.clone();
        engine.register_fn("mixing_rows", move |ctx: NativeCallContext, runs: Array| -> Result<Array, Box<EvalAltResult>> {
            let maps = runs_as_maps(&ss, &ctx, Dynamic::from_array(runs), "mixing_rows")?;
            crate::fitting::mixing::mixing_rows(&maps).map_err(|e| runtime_error(&ctx, format!("mixing_rows: {e:#}")))
        });
        let ss = s.clone();
        engine.register_fn("predict_mixture", move |ctx: NativeCallContext, mut request: Map| -> Result<Map, Box<EvalAltResult>> {
            let runs = match request.remove("runs") {
                Some(r) => Some(runs_as_maps(&ss, &ctx, r, "predict_mixture")?),
                None => None,
            };
            let out = crate::fitting::mixing::predict_from_script(request, runs).map_err(|e| runtime_error(&ctx, format!("predict_mixture: {e:#}")))?;
            record(&ss, &ctx, "mixture_prediction", &out);
            Ok(out)
        });
        let ss = s.clone();
        engine.register_fn("optimize_mixture", move |ctx: NativeCallContext, request: Map| -> Result<Map, Box<EvalAltResult>> {
            let out = crate::fitting::mixing::optimize_from_script(request).map_err(|e| runtime_error(&ctx, format!("optimize_mixture: {e:#}")))?;
            record(&ss, &ctx, "mixture_optimum", &out);
            Ok(out)
        });
        let ss = s.clone();
        engine.register_fn("report", move |ctx: NativeCallContext, request: Map| -> Result<(), Box<EvalAltResult>> {
            let mut out = None;
            let mut title = None;
            for (k, v) in request {
                match k.as_str() {
                    "out" => out = Some(v.into_string().map_err(|t| runtime_error(&ctx, format!("report: key \"out\" must be a string (a directory or an .html path in the study), not {t}")))?),
                    "title" => title = Some(v.to_string()),
                    other => return Err(runtime_error(&ctx, format!("report: unknown key \"{other}\" (keys: out, title)"))),
                }
            }
            let out = out.unwrap_or_else(|| "report".into());
            // Written after the final pass: check now that the study may write there.
            let path = ss.opts.sandbox.resolve(&out, "key \"out\"").map_err(|e| runtime_error(&ctx, format!("report: {e}")))?;
            ss.reports.lock().unwrap().push(crate::study::session::ReportRequest { out: path, title });
            Ok(())
        });
        engine.register_fn("report", move |ctx: NativeCallContext| -> Result<(), Box<EvalAltResult>> {
            Err(runtime_error(&ctx, "report: give a map, e.g. report(#{ out: \"report\", title: \"my study\" })".into()))
        });
        let ss = s.clone();
        engine.register_fn("evaluate", move |ctx: NativeCallContext, mut request: Map| -> Result<Dynamic, Box<EvalAltResult>> {
            data_rows(&ss, &ctx, &mut request, "evaluate")?;
            evaluate_from_script(&ss.opts.sandbox, request).map_err(|e| runtime_error(&ctx, format!("evaluate: {e:#}")))
        });
        let ss = s.clone();
        engine.register_fn("read_csv", move |ctx: NativeCallContext, path: &str| -> Result<Array, Box<EvalAltResult>> {
            read_csv_from_script(&ss.opts.sandbox, path).map_err(|e| runtime_error(&ctx, format!("{e:#}")))
        });
        let ss = s.clone();
        engine.register_fn("data_efficiency", move |ctx: NativeCallContext, mut request: Map| -> Result<Map, Box<EvalAltResult>> {
            for key in ["baseline", "method"] {
                if let Some(v) = request.remove(key) {
                    let runs = if v.is_array() { v } else { Dynamic::from_array(vec![v]) };
                    request.insert(key.into(), rows_as_maps(&ss, &ctx, runs.cast::<Array>())?.into());
                }
            }
            let out = data_efficiency_from_script(request).map_err(|e| runtime_error(&ctx, format!("data_efficiency: {e:#}")))?;
            record(&ss, &ctx, "data_efficiency", &out);
            Ok(out)
        });
        let ss = s.clone();
        engine.register_fn("hitchhiker", move |ctx: NativeCallContext, mut request: Map| -> Result<Map, Box<EvalAltResult>> {
            if let Some(runs) = request.remove("runs") {
                request.insert("runs".into(), runs_as_maps(&ss, &ctx, runs, "hitchhiker")?.into());
            }
            hitchhiker_from_script(request).map_err(|e| runtime_error(&ctx, format!("hitchhiker: {e:#}")))
        });
        let ss = s.clone();
        engine.register_fn("table", move |ctx: NativeCallContext, rows: Array| -> Result<String, Box<EvalAltResult>> {
            let rows = rows_as_maps(&ss, &ctx, rows)?;
            table(&rows, None).map_err(|e| runtime_error(&ctx, e))
        });
        let ss = s.clone();
        engine.register_fn(
            "table",
            move |ctx: NativeCallContext, rows: Array, columns: Array| -> Result<String, Box<EvalAltResult>> {
                let rows = rows_as_maps(&ss, &ctx, rows)?;
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

    fn compile(&self, engine: &Engine) -> Result<AST, ScriptError> {
        let path = &self.session.script;
        let source = std::fs::read_to_string(path).map_err(|e| ScriptError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("cannot read script: {e}"),
        })?;
        let mut ast = engine
            .compile(strip_bom(&source))
            .map_err(|e| positioned(path, e.position(), format!("syntax error: {}", e.err_type())))?;
        ast.set_source(path.display().to_string());
        Ok(ast)
    }

    /// Runs the script once, planning cells; nothing executes.
    fn round(&self, engine: &Engine, ast: &AST) -> Result<RoundEnd, ScriptError> {
        let s = &self.session;
        s.begin_round();
        match engine.run_ast(ast) {
            Ok(()) => Ok(RoundEnd::Complete),
            Err(e) => match *s.barrier.lock().unwrap() {
                Some((line, column)) => Ok(RoundEnd::Barrier(line, column)),
                None => Err(from_eval(&s.script, *e)),
            },
        }
    }

    /// `dctk plan`: one round, nothing executed. Cells after a barrier are not known yet.
    pub fn plan(&self) -> Result<RoundEnd, ScriptError> {
        let engine = self.engine();
        let ast = self.compile(&engine)?;
        self.round(&engine, &ast)
    }

    /// `dctk run`: rounds until the script completes with every cell it reads finished,
    /// cells executed on this machine. The script's output (of the final round, or up to
    /// its error) goes to stdout. `after_first_round` sees the session once the first
    /// round has planned its cells.
    pub fn run(&self, after_first_round: &mut dyn FnMut(&Session)) -> Result<RunSummary, StudyError> {
        let engine = self.engine();
        let ast = self.compile(&engine).map_err(|e| StudyError::Script(Box::new(e)))?;
        let mut pass = || self.round(&engine, &ast).map_err(|e| Box::new(e) as rounds::PassError);
        let executor = self.session.opts.executor.kind.executor();
        rounds::run(&self.session, executor.as_ref(), &mut pass, after_first_round)
    }
}

/// The first non-finite number in `settings` (nested maps and arrays included), as
/// `key "lr": NaN is not a number`: serde would turn it into `null` and report a type error.
fn non_finite(settings: &Map, prefix: &str) -> Option<String> {
    fn walk(v: &Dynamic, path: String) -> Option<String> {
        if let Ok(x) = v.as_float() {
            return (!x.is_finite()).then(|| format!("key \"{path}\": {x} is not a number (settings must be finite)"));
        }
        if let Some(m) = v.read_lock::<Map>() {
            return m.iter().find_map(|(k, v)| walk(v, if path.is_empty() { k.to_string() } else { format!("{path}.{k}") }));
        }
        if let Some(a) = v.read_lock::<Array>() {
            return a.iter().enumerate().find_map(|(i, v)| walk(v, format!("{path}[{i}]")));
        }
        None
    }
    settings.iter().find_map(|(k, v)| walk(v, if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") }))
}

fn train_one(s: &Arc<Session>, ctx: &NativeCallContext, mut settings: Map) -> Result<Run, Box<EvalAltResult>> {
    if let Some(why) = non_finite(&settings, "") {
        return Err(runtime_error(ctx, format!("train: {why}")));
    }
    if let Some(path) = handle_corpus(s, ctx, &settings, "train")? {
        settings.insert("corpus".into(), path.into());
    }
    // init_from: a finished run's handle (a pending one is a barrier) → its id and directory.
    if let Some(v) = settings.get("init_from") {
        let run = v.read_lock::<Run>().map(|r| r.clone()).ok_or_else(|| {
            runtime_error(ctx, "train: key \"init_from\": expected a run handle (what train returns)".to_string())
        })?;
        let map = finished(s, ctx, &run)?;
        if !map.contains_key("final_val_loss") {
            return Err(runtime_error(ctx, format!("train: key \"init_from\": cell {} ({}) is a generation cell, not a training run", run.label, run.id)));
        }
        let mut init = Map::new();
        init.insert("run".into(), run.id.clone().into());
        init.insert("dir".into(), run.dir.clone().into());
        settings.insert("init_from".into(), init.into());
    }
    if let Some(list) = settings.get("synthetic").cloned() {
        settings.insert("synthetic".into(), synthetic_paths(s, ctx, list)?.into());
    }
    let json: serde_json::Value =
        rhai::serde::from_dynamic(&Dynamic::from_map(settings)).map_err(|e| runtime_error(ctx, format!("train: {e}")))?;
    let spec = TrainSpec::from_json(json).map_err(|e| runtime_error(ctx, format!("train: {e}")))?;
    s.train(&spec, ctx.call_source(), ctx.call_position().line().unwrap_or(0))
        .map(Run::from_planned)
        .map_err(|e| runtime_error(ctx, format!("train: {e:#}")))
}

/// `corpus: handle` (a `generate` cell): its output corpus's path, once it is finished (a
/// pending one ends the round here). The path is dctk's own, trusted without the sandbox.
fn handle_corpus(s: &Arc<Session>, ctx: &NativeCallContext, settings: &Map, what: &str) -> Result<Option<String>, Box<EvalAltResult>> {
    let Some(run) = settings.get("corpus").and_then(|v| v.read_lock::<Run>().map(|r| r.clone())) else { return Ok(None) };
    let map = finished(s, ctx, &run)?;
    let Some(path) = map.get("corpus").and_then(|c| c.clone().into_string().ok()) else {
        return Err(runtime_error(ctx, format!("{what}: key \"corpus\": cell {} ({}) is a training run, not a corpus; pass a generate handle or a corpus path", run.label, run.id)));
    };
    s.trust_corpus_path(&path);
    Ok(Some(path))
}

/// `synthetic: [gen1, "path", …]`: each `generate` handle as its output corpus's path (a
/// pending one ends the round here), each string as given (the sandbox resolves it).
fn synthetic_paths(s: &Arc<Session>, ctx: &NativeCallContext, list: Dynamic) -> Result<Array, Box<EvalAltResult>> {
    let items = list.try_cast::<Array>().ok_or_else(|| runtime_error(ctx, "train: key \"synthetic\": expected an array of generate handles or corpus paths".into()))?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            if item.is::<Run>() {
                let mut one = Map::new();
                one.insert("corpus".into(), item);
                let path = handle_corpus(s, ctx, &one, &format!("train: key \"synthetic\"[{i}]"))?.expect("a handle");
                Ok(Dynamic::from(path))
            } else if item.is_string() {
                Ok(item)
            } else {
                Err(runtime_error(ctx, format!("train: key \"synthetic\"[{i}]: expected a generate handle or a corpus path, got {}", item.type_name())))
            }
        })
        .collect()
}

fn generate_one(s: &Arc<Session>, ctx: &NativeCallContext, mut settings: Map) -> Result<Run, Box<EvalAltResult>> {
    let fail = |m: String| runtime_error(ctx, format!("generate: {m}"));
    if let Some(path) = handle_corpus(s, ctx, &settings, "generate")? {
        settings.insert("corpus".into(), path.into());
    }
    let generator = settings.remove("generator").ok_or_else(|| fail("missing required key \"generator\" (#{ kind: \"local\", run: … } or #{ kind: \"openai\", base_url: …, model: … })".into()))?;
    let mut generator = generator.try_cast::<Map>().ok_or_else(|| fail("key \"generator\": expected a map #{ kind: \"local\" | \"openai\", … }".into()))?;
    if let Some(why) = non_finite(&settings, "").or_else(|| non_finite(&generator, "generator")) {
        return Err(fail(why));
    }
    // A local generator's run: its cell must be finished (reading a pending one is a barrier).
    let source = match generator.remove("run") {
        None => None,
        Some(v) => {
            let run = v.read_lock::<Run>().map(|r| r.clone()).ok_or_else(|| fail("key \"generator.run\": expected a run handle (what train returns)".into()))?;
            finished(s, ctx, &run)?;
            Some(crate::study::generate_cell::SourceRun { id: run.id.clone(), dir: PathBuf::from(&run.dir) })
        }
    };
    let generator: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(generator)).map_err(|e| fail(format!("key \"generator\": {e}")))?;
    let generator = crate::study::generate_cell::GeneratorSpec::from_json(&generator, source).map_err(fail)?;
    let json: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(settings)).map_err(|e| fail(e.to_string()))?;
    let spec = crate::study::generate_cell::GenerateSpec::from_json(json).map_err(fail)?;
    s.generate(&spec, generator, ctx.call_source(), ctx.call_position().line().unwrap_or(0))
        .map(Run::from_planned)
        .map_err(|e| fail(format!("{e:#}")))
}

/// The result map of a finished run; a pending run ends the round here (a barrier).
fn finished(s: &Session, ctx: &NativeCallContext, run: &Run) -> Result<Arc<Map>, Box<EvalAltResult>> {
    match &run.state {
        RunState::Finished(m, _) => Ok(m.clone()),
        // `dctk plan` shows the cells (the failed one among them) instead of stopping at the error.
        RunState::Failed(_) if s.opts.mode == Mode::Plan => barrier(s, ctx),
        RunState::Failed(msg) => Err(runtime_error(
            ctx,
            format!(
                "cell {} ({}) failed: {}\n  its files are in {}; {}",
                run.label,
                run.id,
                msg.lines().next().unwrap_or(""),
                run.dir,
                crate::study::cache::how_to_retry(Path::new(&run.dir))
            ),
        )),
        RunState::Pending => barrier(s, ctx),
    }
}

/// Ends the round at a read of an unfinished cell. Not catchable by the script's
/// try/catch: the round ends, the planned cells run, the script runs again.
fn barrier<T>(s: &Session, ctx: &NativeCallContext) -> Result<T, Box<EvalAltResult>> {
    let pos = ctx.call_position();
    *s.barrier.lock().unwrap() = Some((pos.line().unwrap_or(0), pos.position().unwrap_or(0)));
    Err(EvalAltResult::ErrorTerminated(Dynamic::from("dctk: pending cell"), pos).into())
}

fn run_get(s: &Session, ctx: &NativeCallContext, run: &Run, key: &str) -> Result<Dynamic, Box<EvalAltResult>> {
    match key {
        "id" | "run_id" => return Ok(run.id.clone().into()),
        "label" | "name" => return Ok(run.label.clone().into()),
        "status" => return Ok(run.status().to_string().into()),
        "run_dir" => return Ok(run.dir.clone().into()),
        _ => {}
    }
    let map = finished(s, ctx, run)?;
    map.get(key).cloned().ok_or_else(|| {
        let mut keys: Vec<&str> = map.keys().map(|k| k.as_str()).chain(["label"]).collect();
        keys.sort();
        runtime_error(ctx, format!("a run has no key \"{key}\"; its keys: {}", keys.join(", ")))
    })
}

/// An array of runs (or maps) as an array of result maps, for `fit`/`hitchhiker`:
/// pending runs end the round; diverged runs are left out, with a note.
fn runs_as_maps(s: &Session, ctx: &NativeCallContext, runs: Dynamic, what: &str) -> Result<Array, Box<EvalAltResult>> {
    let arr = runs
        .try_cast::<Array>()
        .ok_or_else(|| runtime_error(ctx, format!("{what}: key \"runs\" must be an array of runs")))?;
    let kept = arr.into_iter().filter(|item| match item.read_lock::<Run>() {
        Some(run) if run.status() == "diverged" => {
            eprintln!("{what}: leaving out run {} ({}): it diverged", run.label, run.id);
            false
        }
        _ => true,
    });
    rows_as_maps(s, ctx, kept.collect())
}

/// `runs` (run handles, diverged ones left out) and `rows` (maps or runs) of a `fit` or
/// `evaluate` request as result maps; a pending run ends the round.
fn data_rows(s: &Session, ctx: &NativeCallContext, request: &mut Map, what: &str) -> Result<(), Box<EvalAltResult>> {
    if let Some(runs) = request.remove("runs") {
        request.insert("runs".into(), runs_as_maps(s, ctx, runs, what)?.into());
    }
    if let Some(rows) = request.remove("rows") {
        let rows = rows.try_cast::<Array>().ok_or_else(|| runtime_error(ctx, format!("{what}: key \"rows\" must be an array of maps")))?;
        request.insert("rows".into(), rows_as_maps(s, ctx, rows)?.into());
    }
    Ok(())
}

/// `fit`'s `per: "domain"`: the runs (result maps by now) become `mixing_rows`, one fit per
/// domain (`group_by: "domain"`), columns `s=step,r=r,loss=loss` unless given.
fn per_domain(ctx: &NativeCallContext, request: &mut Map) -> Result<(), Box<EvalAltResult>> {
    let Some(per) = request.remove("per") else { return Ok(()) };
    if per.to_string() != "domain" {
        return Err(runtime_error(ctx, format!("fit: key \"per\" must be \"domain\", got {per}")));
    }
    let runs = request
        .remove("runs")
        .and_then(|r| r.try_cast::<Array>())
        .ok_or_else(|| runtime_error(ctx, "fit: per: \"domain\" needs \"runs\" (the study's mixture runs)".to_string()))?;
    let rows = crate::fitting::mixing::mixing_rows(&runs).map_err(|e| runtime_error(ctx, format!("fit: {e:#}")))?;
    let law = request.get("law").map(|l| l.to_string()).unwrap_or_default();
    let columns = match law.as_str() {
        "bimix_dc" => "s=step,r=r,e=e,loss=loss",
        "mixing_law" => {
            // Ye et al.: every domain's proportion but the last (alphabetically), which the
            // others determine; a shift of all t_j would be absorbed by k otherwise.
            let mut names: Vec<String> = rows.first().and_then(|r| r.read_lock::<Map>().map(|m| m.keys().filter(|k| k.starts_with("r_")).map(|k| k.to_string()).collect())).unwrap_or_default();
            names.sort();
            names.pop();
            let opts = request.entry("law_options".into()).or_insert_with(|| Map::new().into());
            if let Some(mut o) = opts.write_lock::<Map>() {
                o.entry("mixture_columns".into()).or_insert_with(|| names.into_iter().map(Dynamic::from).collect::<Array>().into());
            }
            "loss=loss"
        }
        _ => "s=step,r=r,loss=loss",
    };
    request.insert("rows".into(), rows.into());
    request.insert("group_by".into(), "domain".into());
    request.entry("columns".into()).or_insert_with(|| columns.into());
    Ok(())
}

/// Table rows: maps as they are, runs as their result maps (plus `label`); a pending run
/// ends the round.
fn rows_as_maps(s: &Session, ctx: &NativeCallContext, rows: Array) -> Result<Array, Box<EvalAltResult>> {
    rows.into_iter()
        .map(|item| {
            if item.is::<Run>() {
                let run = item.cast::<Run>();
                let mut m = (*finished(s, ctx, &run)?).clone();
                m.insert("label".into(), run.label.clone().into());
                Ok(Dynamic::from_map(m))
            } else {
                Ok(item)
            }
        })
        .collect()
}

/// `import "name" as m;` resolves `name.rhai` relative to the study directory, inside the
/// sandbox, and records the file for `dctk export`. Modules are not cached across
/// rounds: one that plans cells must see their new states.
struct SandboxedImports {
    session: Arc<Session>,
    /// The scripts being imported right now, outermost (the study) first: an import of one
    /// of them is a cycle (Rhai would recurse until the stack overflows).
    importing: std::sync::Mutex<Vec<PathBuf>>,
}

/// A file's canonical path, for comparing imports.
fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// `a.rhai → b.rhai → a.rhai`: file names, relative to the study directory when inside it.
fn chain(files: &[PathBuf], study_dir: &Path) -> String {
    files.iter().map(|f| f.strip_prefix(study_dir).unwrap_or(f).display().to_string()).collect::<Vec<_>>().join(" → ")
}

impl rhai::ModuleResolver for SandboxedImports {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Arc<rhai::Module>, Box<EvalAltResult>> {
        let with_ext = if Path::new(path).extension().is_some() { path.to_string() } else { format!("{path}.rhai") };
        let file = self
            .session
            .opts
            .sandbox
            .resolve(&with_ext, &format!("import \"{path}\""))
            .map_err(|e| EvalAltResult::ErrorRuntime(e.into(), pos))?;
        let key = canonical(&file);
        {
            let mut importing = self.importing.lock().unwrap();
            if importing.is_empty() {
                importing.push(canonical(&self.session.script));
            }
            if let Some(at) = importing.iter().position(|f| *f == key) {
                let mut cycle = importing[at..].to_vec();
                cycle.push(key.clone());
                let study_dir = canonical(&self.session.opts.sandbox.study_dir);
                return Err(EvalAltResult::ErrorRuntime(
                    format!("import \"{path}\": an import cycle: {}", chain(&cycle, &study_dir)).into(),
                    pos,
                )
                .into());
            }
            importing.push(key.clone());
        }
        let result = self.load(engine, &file, path, pos);
        self.importing.lock().unwrap().retain(|f| *f != key);
        result
    }
}

impl SandboxedImports {
    fn load(&self, engine: &Engine, file: &Path, path: &str, pos: Position) -> Result<Arc<rhai::Module>, Box<EvalAltResult>> {
        let file = file.to_path_buf();
        let text = std::fs::read_to_string(&file)
            .map_err(|e| EvalAltResult::ErrorRuntime(format!("import \"{path}\": {}: {e}", file.display()).into(), pos))?;
        let mut ast = engine.compile(strip_bom(&text)).map_err(|e| {
            EvalAltResult::ErrorInModule(file.display().to_string(), EvalAltResult::ErrorParsing(e.err_type().clone(), e.position()).into(), pos)
        })?;
        ast.set_source(file.display().to_string());
        let module = rhai::Module::eval_ast_as_new(rhai::Scope::new(), &ast, engine)
            .map_err(|e| EvalAltResult::ErrorInModule(file.display().to_string(), e, pos))?;
        let shared: Arc<rhai::Module> = module.into();
        let mut imports = self.session.imports.lock().unwrap();
        if !imports.contains(&file) {
            imports.push(file);
        }
        Ok(shared)
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

