//! Rhai studies: the engine, the functions a study can call, the rounds that run a
//! study to completion, and positioned errors.
//!
//! Scripts *plan*: `train` returns a [`Run`] handle for a cell at once; reading a pending
//! cell's result ends the round, the planned cells run in parallel, and the script runs
//! again (see [`session`]). The engine is sandboxed: an operations limit stops runaway
//! loops, `eval` is disabled, Ctrl-C cancels, and every path goes through the study's
//! [`Sandbox`] (the study directory and the declared data roots; imports too).
//!
//! The functions of this version (each with an example in `docs/script-api.md`):
//!
//! | function | what it does |
//! |---|---|
//! | `train(#{...})`, `train([...])` | plans a training cell (or one per map), returns its `Run` handle(s) |
//! | `grid(#{k: [..], ..})`, `zip(#{k: [..], ..})`, `product(a, b)` | settings variants: Cartesian product, element-wise, combined |
//! | `sweep(base, variants)` | `base` merged with each variant, each named after what varies |
//! | `fit(#{...})` | fits a scaling law to a CSV or to `runs`; optional `predict`, `compute_optimal`, `effective_data`, `plots` |
//! | `hitchhiker(#{...})` | fits on smaller runs' intermediate checkpoints, scores on the largest run's last 30% |
//! | `ingest(#{...})` | builds a token corpus (as `dctk data ingest`), returns its summary map |
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

pub mod session;
pub mod sweep;

pub use session::{Mode, Run, RunState, Session, SessionOptions};

use crate::study::cell::{materialize, CellState};
use crate::study::executor::{self, Job, Outcome};
use crate::study::sandbox::Sandbox;
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

fn runtime_error(ctx: &NativeCallContext, message: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into(), ctx.call_position()).into()
}

/// What a finished `dctk run` did.
pub struct RunSummary {
    pub rounds: usize,
    pub executed: usize,
    /// Cells that failed (label, id, message).
    pub failed: Vec<(String, String, String)>,
}

/// Why a study stopped.
#[derive(Debug)]
pub enum StudyError {
    Script(ScriptError),
    /// Cells stopped before their end (cancelled, or `--stop-after-steps`).
    Stopped(usize),
    Other(anyhow::Error),
}

impl std::fmt::Display for StudyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StudyError::Script(e) => e.fmt(f),
            StudyError::Stopped(n) => write!(f, "stopped with {n} cell(s) unfinished (checkpointed); run the study again to resume"),
            StudyError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for StudyError {}

/// A study script with its session.
pub struct Study {
    pub session: Arc<Session>,
}

/// How a round of the script ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RoundEnd {
    Complete,
    /// Stopped at a pending result at (line, column).
    Barrier(usize, usize),
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
        engine.set_module_resolver(SandboxedImports { session: s.clone() });
        let out = s.clone();
        engine.on_print(move |text| out.output.lock().unwrap().push(text.to_string()));
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
        engine.register_fn("fit", move |ctx: NativeCallContext, mut request: Map| -> Result<Map, Box<EvalAltResult>> {
            if let Some(runs) = request.remove("runs") {
                request.insert("runs".into(), runs_as_maps(&ss, &ctx, runs, "fit")?.into());
            }
            if ss.opts.mode == Mode::Plan {
                // `dctk plan` writes nothing into the study: no plot files.
                request.remove("plots");
            }
            fit_from_script(&ss.opts.sandbox, request).map_err(|e| runtime_error(&ctx, format!("fit: {e:#}")))
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
            .compile(&source)
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

    /// `dctk run`: rounds until the script completes with every cell it reads finished.
    /// The script's output (of the final round, or up to its error) goes to stdout.
    /// `after_first_round` sees the session once the first round has planned its cells.
    pub fn run(&self, after_first_round: &mut dyn FnMut(&Session)) -> Result<RunSummary, StudyError> {
        let s = &self.session;
        let engine = self.engine();
        let ast = self.compile(&engine).map_err(StudyError::Script)?;
        let (mut rounds, mut executed) = (0, 0);
        loop {
            rounds += 1;
            let end = self.round(&engine, &ast);
            if rounds == 1 {
                after_first_round(s);
            }
            let end = match end {
                Ok(end) => end,
                Err(e) => {
                    self.flush_output();
                    return Err(StudyError::Script(e));
                }
            };
            let pending = s.pending();
            if pending.is_empty() {
                if let RoundEnd::Barrier(line, column) = end {
                    // Cannot happen (a barrier is a read of a pending cell), but never loop.
                    return Err(StudyError::Other(anyhow::anyhow!("{}:{line}:{column}: stopped at a pending result with nothing to run", s.script.display())));
                }
                self.flush_output();
                let failed: Vec<(String, String, String)> = s
                    .cells
                    .lock()
                    .unwrap()
                    .values()
                    .filter_map(|e| match &e.state {
                        CellState::Failed(m) => Some((e.cell.label.clone(), e.cell.id.clone(), m.clone())),
                        _ => None,
                    })
                    .collect();
                return Ok(RunSummary { rounds, executed, failed });
            }
            let mut jobs = Vec::new();
            for cell in &pending {
                materialize(cell).map_err(StudyError::Other)?;
                jobs.push(Job { id: cell.id.clone(), label: cell.label.clone(), dir: cell.dir.clone() });
            }
            let outcomes = executor::run(jobs, &s.opts.executor, &s.opts.cancel);
            executed += outcomes.iter().filter(|(_, o)| *o == Outcome::Finished).count();
            let stopped = outcomes.iter().filter(|(_, o)| *o == Outcome::Stopped).count();
            for (job, o) in &outcomes {
                if let Outcome::Failed(why) = o {
                    s.failed_here.lock().unwrap().insert(job.id.clone(), why.clone());
                }
            }
            if s.opts.executor.fail_fast {
                if let Some((job, Outcome::Failed(msg))) = outcomes.iter().find(|(_, o)| matches!(o, Outcome::Failed(_))) {
                    return Err(StudyError::Other(anyhow::anyhow!(
                        "cell {} ({}) failed: {}\n--fail-fast: the study stopped; other running cells were checkpointed ({stopped} stopped) and resume on the next run; `dctk run --rerun-failed` retries the failed one",
                        job.label,
                        job.id,
                        msg.lines().next().unwrap_or("")
                    )));
                }
            }
            if stopped > 0 || s.opts.cancel.load(Ordering::Relaxed) {
                return Err(StudyError::Stopped(stopped.max(1)));
            }
        }
    }

    fn flush_output(&self) {
        for line in self.session.output.lock().unwrap().drain(..) {
            println!("{line}");
        }
    }
}

fn train_one(s: &Arc<Session>, ctx: &NativeCallContext, settings: Map) -> Result<Run, Box<EvalAltResult>> {
    let json: serde_json::Value =
        rhai::serde::from_dynamic(&Dynamic::from_map(settings)).map_err(|e| runtime_error(ctx, format!("train: {e}")))?;
    let spec = TrainSpec::from_json(json).map_err(|e| runtime_error(ctx, format!("train: {e}")))?;
    s.train(&spec, ctx.call_source(), ctx.call_position().line().unwrap_or(0))
        .map_err(|e| runtime_error(ctx, format!("train: {e:#}")))
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
                "cell {} ({}) failed: {}\n  its files are in {}; `dctk run --rerun-failed` tries it again",
                run.label,
                run.id,
                msg.lines().next().unwrap_or(""),
                run.dir
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
        let text = std::fs::read_to_string(&file)
            .map_err(|e| EvalAltResult::ErrorRuntime(format!("import \"{path}\": {}: {e}", file.display()).into(), pos))?;
        let mut ast = engine.compile(&text).map_err(|e| {
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

/// `fit(#{ law, data | runs, columns, ... })`: the keys of `dctk_laws::FitSpec`, plus
/// `runs` (an array of `train` results, each one row of its numeric fields) and
/// `plots` (a directory, relative to the script, for residual and curve SVGs).
/// Returns the fit report as a map (parameters with intervals, objective, diagnostics).
fn fit_from_script(sandbox: &Sandbox, mut request: Map) -> anyhow::Result<Map> {
    let runs = request.remove("runs");
    let plots = request.remove("plots").map(|p| p.to_string());
    let predict = request.remove("predict");
    let compute_optimal = request.remove("compute_optimal");
    let effective_data = request.remove("effective_data");
    if let Some(data) = request.get_mut("data") {
        let resolved = sandbox.resolve(&data.to_string(), "key \"data\"").map_err(anyhow::Error::msg)?;
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
        let dir = sandbox.resolve(&dir, "key \"plots\"").map_err(anyhow::Error::msg)?;
        crate::fitting::write_plots(&fit, &dir, &spec.law)?;
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
