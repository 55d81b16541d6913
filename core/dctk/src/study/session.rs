//! A study session: the state of one `dctk run`/`plan`/`export` invocation — the cells
//! its script planned (by id, in order), what the study cache says of each, and which run
//! after this round. The round loop is `study/rounds.rs`'s; the Rhai functions that
//! call into a session are the Rhai binding's (`script/`).
//!
//! How "scripts plan, Rust executes" works with ordinary-looking code: `train(...)` never
//! trains. It plans a cell and returns a [`Run`] handle at once. Reading a result from a
//! handle whose cell is finished gives the number; reading one whose cell is pending is a
//! *barrier*: the round stops there, every cell planned so far runs (in parallel), and the
//! script runs again from the top, now finding those cells finished. A script is cheap and
//! deterministic, so rerunning it is free; its `print` output is shown once, in the final
//! round's order and as the study runs ([`Session::print`]), and kept in the study record.
//! Writing all `train` calls before reading any result (e.g. `sweep(...)` then a table)
//! puts a whole grid in one parallel round.
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;

use super::cache::{accept_other_build, only_code_differs, reuse, CellState, OtherBuild};
use super::records::{data_settings, study_dir, PlanRecord, PlannedCell, Table};
use super::execute::ExecutorOptions;
use super::cell::Cell;
use super::generate_cell::{prepare_generate, GenerateSpec, GeneratorSpec};
use super::plan::{prepare_train, TrainCell};
use super::sandbox::Sandbox;
use crate::corpus::DataCache;
use crate::train::TrainSpec;

/// A report the script asked for: where (resolved in the sandbox) and its title.
#[derive(Clone, Debug)]
pub struct ReportRequest {
    pub out: PathBuf,
    pub title: Option<String>,
}

/// The study record's copy of the script's `print` output (of its last pass).
pub const OUTPUT_RECORD: &str = "output.txt";

/// The lines `dctk run` has shown, and where the current pass stopped matching them.
#[derive(Default)]
struct PrintStream {
    lines: Vec<String>,
    diverged_at: Option<usize>,
}

/// Plan only (no execution), or run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Run,
}

/// How a study session behaves.
#[derive(Clone)]
pub struct SessionOptions {
    pub runs_root: PathBuf,
    pub sandbox: Sandbox,
    pub max_operations: u64,
    pub mode: Mode,
    /// Run failed cells again (once per invocation) instead of reporting their error.
    pub rerun_failed: bool,
    /// Reuse finished results of another build for cells whose other inputs are the same
    /// (`dctk run --accept-code-change`), recording it in each such cell's manifest.
    pub accept_code_change: bool,
    pub executor: ExecutorOptions,
    /// Set by Ctrl-C / SIGTERM: stops the script (via the engine's progress hook) and
    /// the executor (cells checkpoint and stop).
    pub cancel: Arc<AtomicBool>,
}

/// A planned cell and where it stands.
pub struct CellEntry {
    pub cell: Arc<Cell>,
    pub state: CellState,
    /// To execute after this round.
    pub pending: bool,
}

/// The shared state of one session (the engine's registered functions hold an `Arc` of it).
pub struct Session {
    pub opts: SessionOptions,
    pub script: PathBuf,
    pub data: DataCache,
    /// Every cell planned in this invocation, by id, in order of first appearance.
    pub cells: Mutex<IndexMap<String, CellEntry>>,
    /// Cell ids seen in the current round (state re-read once per round).
    seen: Mutex<HashSet<String>>,
    /// `file:line` labels used this round, to number repeated ones.
    label_counts: Mutex<HashMap<String, usize>>,
    /// Cells whose process failed in this invocation, with why. They are not run again
    /// in this invocation (`--rerun-failed` retries a failed cell once), even when the
    /// process died before it could write `failed` (a crash, an OOM kill, a failed start):
    /// otherwise a crashing cell would be relaunched forever.
    pub failed_here: Mutex<HashMap<String, String>>,
    /// Set when the round stopped at a pending result: (line, column).
    pub barrier: Mutex<Option<(usize, usize)>>,
    /// The script's `print` output of this round.
    pub output: Mutex<Vec<String>>,
    /// The analyses of this pass (fits, data-efficiency multipliers, mixture optima and
    /// predictions) with their chart data: the final pass's go to the study record's
    /// `analyses.json`, which reports draw from.
    pub analyses: Mutex<Vec<serde_json::Value>>,
    /// The reports this pass asked for (`report(#{...})`), written once the final pass
    /// completes.
    pub reports: Mutex<Vec<ReportRequest>>,
    /// What `dctk run` has already shown on stdout: the lines of earlier passes, in pass
    /// order (see [`Session::print`]).
    shown: Mutex<PrintStream>,
    /// Scripts imported by the study (for `dctk export`).
    pub imports: Mutex<Vec<PathBuf>>,
    /// Corpus paths as resolved by the sandbox (a sweep names one corpus 10,000 times).
    corpus_paths: Mutex<HashMap<String, PathBuf>>,
    /// `corpus_stats` results by (corpus directory, settings): computed once per session,
    /// not once per pass of the script.
    corpus_stats: Mutex<HashMap<String, serde_json::Value>>,
    /// The study's previous plan record, and its cells by label (to find results of
    /// another build).
    previous: std::sync::OnceLock<Option<(PlanRecord, HashMap<String, usize>)>>,
    /// Cells with a finished result of another build only: by new id.
    pub other_build: Mutex<IndexMap<String, OtherBuild>>,
    /// Of those, the ones whose result this invocation accepted (`--accept-code-change`).
    pub accepted: Mutex<IndexMap<String, OtherBuild>>,
}

impl Session {
    pub fn new(opts: SessionOptions, script: &Path) -> Session {
        Session {
            opts,
            script: script.to_path_buf(),
            data: DataCache::default(),
            cells: Mutex::new(IndexMap::new()),
            seen: Mutex::new(HashSet::new()),
            label_counts: Mutex::new(HashMap::new()),
            failed_here: Mutex::new(HashMap::new()),
            barrier: Mutex::new(None),
            output: Mutex::new(Vec::new()),
            analyses: Mutex::new(Vec::new()),
            reports: Mutex::new(Vec::new()),
            shown: Mutex::new(PrintStream::default()),
            imports: Mutex::new(Vec::new()),
            corpus_paths: Mutex::new(HashMap::new()),
            corpus_stats: Mutex::new(HashMap::new()),
            previous: std::sync::OnceLock::new(),
            other_build: Mutex::new(IndexMap::new()),
            accepted: Mutex::new(IndexMap::new()),
        }
    }

    pub fn begin_round(&self) {
        self.seen.lock().unwrap().clear();
        self.label_counts.lock().unwrap().clear();
        *self.barrier.lock().unwrap() = None;
        self.output.lock().unwrap().clear();
        self.analyses.lock().unwrap().clear();
        self.reports.lock().unwrap().clear();
        self.shown.lock().unwrap().diverged_at = None;
        for e in self.cells.lock().unwrap().values_mut() {
            e.pending = false;
        }
    }

    /// A `print` of the script. Under `dctk run` the line is shown at once when it is new:
    /// a pass of a deterministic script prints what the pass before it printed up to its
    /// barrier, then more, so showing each line the first time its position is reached
    /// shows the final pass's output in its order, as the study runs (a study killed
    /// while its cells train has shown what it printed). A pass that prints something
    /// else at a position already shown (a script printing a status) stops the streaming
    /// for that pass; [`Session::finish_output`] shows the final pass's lines from there.
    pub fn print(&self, text: &str) {
        let index = {
            let mut out = self.output.lock().unwrap();
            out.push(text.to_string());
            out.len() - 1
        };
        if self.opts.mode != Mode::Run {
            return;
        }
        let mut shown = self.shown.lock().unwrap();
        if shown.diverged_at.is_some() {
            return;
        }
        match shown.lines.get(index) {
            Some(line) if line == text => {}
            Some(_) => shown.diverged_at = Some(index),
            None => {
                println!("{text}");
                shown.lines.push(text.to_string());
            }
        }
    }

    /// The end of the study: the final pass's lines not shown yet go to stdout (under
    /// `dctk run`; `dctk plan` shows none), and the study record keeps the whole output.
    pub fn finish_output(&self) {
        let out = std::mem::take(&mut *self.output.lock().unwrap());
        if self.opts.mode == Mode::Run {
            let shown = self.shown.lock().unwrap();
            let from = match shown.diverged_at {
                Some(at) => {
                    println!("[the script's final pass printed differently from an earlier pass from line {} of its output on; the final pass's lines follow]", at + 1);
                    at
                }
                None => shown.lines.len(),
            };
            for line in out.iter().skip(from) {
                println!("{line}");
            }
        }
        self.save_output(&out);
    }

    /// `file:line` of a call in the script (for the report's records).
    pub fn call_site(&self, source: Option<&str>, line: usize) -> String {
        let file = source
            .and_then(|s| Path::new(s).file_name())
            .or_else(|| self.script.file_name())
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        format!("{file}:{line}")
    }

    /// Records an analysis of this pass (see [`Session::analyses`]); `dctk plan` records none.
    pub fn record_analysis(&self, kind: &str, at: String, value: serde_json::Value) {
        if self.opts.mode != Mode::Run {
            return;
        }
        let mut v = value;
        if let Some(m) = v.as_object_mut() {
            m.insert("kind".into(), kind.into());
            m.insert("at".into(), at.into());
        }
        self.analyses.lock().unwrap().push(v);
    }

    /// Keeps a pass's `print` output in the study record (`output.txt` of the study's
    /// directory; `dctk plan` writes nothing), after each pass: what a killed study
    /// printed is not lost.
    pub fn save_output(&self, lines: &[String]) {
        if self.opts.mode != Mode::Run {
            return;
        }
        let path = study_dir(&self.opts.runs_root, &self.script).join(OUTPUT_RECORD);
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        // Keeping the record is a courtesy: a failure to write it must not fail the study.
        let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).map_err(anyhow::Error::from).and_then(|()| super::write_atomic(&path, text.as_bytes()));
        if let Err(e) = written {
            eprintln!("warning: could not keep the script's output in {}: {e:#}", path.display());
        }
    }

    /// The label of an unnamed cell: `file:line` of the `train` call (in the study or in
    /// an imported script), numbered when one line plans several.
    fn default_label(&self, source: Option<&str>, line: usize) -> String {
        let file = source
            .and_then(|s| Path::new(s).file_name())
            .or_else(|| self.script.file_name())
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let base = format!("{file}:{line}");
        let mut counts = self.label_counts.lock().unwrap();
        let n = counts.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base
        } else {
            format!("{base}#{n}")
        }
    }

    /// Plans the cell of `spec` (the `train` function): returns where it stands.
    pub fn train(&self, spec: &TrainSpec, source: Option<&str>, line: usize) -> anyhow::Result<PlannedRef> {
        let label = match &spec.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => self.default_label(source, line),
        };
        let corpus = self.resolve_corpus_path(&spec.corpus)?;
        let synthetic = spec
            .synthetic
            .iter()
            .enumerate()
            .map(|(i, p)| self.resolve_corpus_path(p).map_err(|e| anyhow::anyhow!("key \"synthetic\"[{i}]: {e:#}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cell = prepare_train(spec, &label, &corpus, &synthetic, &self.opts.runs_root, &self.data, false)?;
        self.register(Cell::Train(cell))
    }

    /// Plans the generation cell of `spec` with `generator` (the `generate` function):
    /// `corpus` is the source corpus as the script named it (resolved here), or, for a
    /// `local` generator, none (the source run's corpus).
    pub fn generate(&self, spec: &GenerateSpec, generator: GeneratorSpec, source: Option<&str>, line: usize) -> anyhow::Result<PlannedRef> {
        let label = match &spec.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => self.default_label(source, line),
        };
        let corpus_path = match (&spec.corpus, &generator) {
            (Some(c), _) => self.resolve_corpus_path(c)?,
            (None, GeneratorSpec::Local { run_dir, .. }) => {
                // The source run's own corpus (already ingested), found as `LoadedModel` finds it.
                let path = Path::new(run_dir).join("manifest.ron");
                let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let manifest: super::plan::Manifest = ron::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                crate::corpus::locate_corpus(Path::new(run_dir), &manifest.data.corpus_dir)
            }
            (None, GeneratorSpec::OpenAi(_)) => anyhow::bail!("key \"corpus\": an openai generator needs the corpus to generate from"),
        };
        let corpus = self.data.open_corpus(&corpus_path, &self.opts.runs_root).map_err(|e| anyhow::anyhow!("key \"corpus\": {e:#}"))?;
        let cell = prepare_generate(spec, generator, &label, &corpus, &self.opts.runs_root)?;
        self.register(Cell::Generate(cell))
    }

    /// A corpus path of the script resolved by the sandbox (once per path and session).
    fn resolve_corpus_path(&self, given: &str) -> anyhow::Result<PathBuf> {
        if let Some(p) = self.corpus_paths.lock().unwrap().get(given).cloned() {
            return Ok(p);
        }
        let p = self.opts.sandbox.resolve(given, "key \"corpus\"").map_err(anyhow::Error::msg)?;
        self.corpus_paths.lock().unwrap().insert(given.to_string(), p.clone());
        Ok(p)
    }

    /// Rhai `corpus_stats(#{ corpus, ... })`: the corpus (a sandboxed path, raw input ingested
    /// as `train` would) and its per-domain statistics, as JSON (see
    /// [`crate::corpus::stats::stats_from_script`]); computed once per session.
    pub fn corpus_stats(&self, settings: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let given = settings.get("corpus").and_then(|c| c.as_str()).ok_or_else(|| anyhow::anyhow!("missing key \"corpus\" (a corpus directory or raw .jsonl input, as for train)"))?;
        let path = self.resolve_corpus_path(given)?;
        let corpus = self.data.open_corpus(&path, &self.opts.runs_root).map_err(|e| anyhow::anyhow!("key \"corpus\": {e:#}"))?;
        let key = format!("{}\u{0}{settings}", corpus.dir.display());
        if let Some(v) = self.corpus_stats.lock().unwrap().get(&key) {
            return Ok(v.clone());
        }
        let v = crate::corpus::stats::stats_from_script(&corpus, &settings)?;
        self.corpus_stats.lock().unwrap().insert(key, v.clone());
        Ok(v)
    }

    /// Marks `path` (a generation cell's output corpus, in dctk's own runs directory) as
    /// resolved: a script names it through a handle, not as a path the sandbox checks.
    pub fn trust_corpus_path(&self, path: &str) {
        self.corpus_paths.lock().unwrap().insert(path.to_string(), PathBuf::from(path));
    }

    /// Records a planned cell and reads where it stands (once per round).
    fn register(&self, cell: Cell) -> anyhow::Result<PlannedRef> {
        let id = cell.id().to_string();
        let first_this_round = self.seen.lock().unwrap().insert(id.clone());
        let mut cells = self.cells.lock().unwrap();
        // A new entry is always first this round: its state is read just below.
        let entry = cells.entry(id.clone()).or_insert_with(|| CellEntry { state: CellState::New, cell: Arc::new(cell), pending: false });
        if first_this_round {
            let failed_here = self.failed_here.lock().unwrap().get(&id).cloned();
            let mut on_disk = CellState::read(entry.cell.dir());
            if let (CellState::New, Some(train)) = (&on_disk, entry.cell.as_train()) {
                if let Some(other) = self.result_of_other_build(train) {
                    if self.opts.accept_code_change && self.opts.mode == Mode::Run {
                        accept_other_build(train, &other, &super::run_dir(&self.opts.runs_root, &other.old_id))?;
                        on_disk = CellState::read(entry.cell.dir());
                        self.accepted.lock().unwrap().insert(id.clone(), other);
                    } else {
                        self.other_build.lock().unwrap().insert(id.clone(), other);
                    }
                }
            }
            let (state, pending) = reuse(on_disk, failed_here, self.opts.rerun_failed);
            entry.state = state;
            entry.pending = pending;
        }
        Ok(PlannedRef { id: entry.cell.id().to_string(), label: entry.cell.label().to_string(), dir: entry.cell.dir_buf(), pending: entry.pending, state: entry.state.clone() })
    }

    /// The finished cell of the previous plan with this cell's label whose inputs differ
    /// from this cell's only in the code's identity, if any.
    fn result_of_other_build(&self, cell: &TrainCell) -> Option<OtherBuild> {
        let previous = self.previous.get_or_init(|| {
            let record = PlanRecord::load(&study_dir(&self.opts.runs_root, &self.script).join(super::records::RUN_PLAN))?;
            let by_label = record.cells.iter().enumerate().map(|(i, c)| (c.label.clone(), i)).collect();
            Some((record, by_label))
        });
        let (record, by_label) = previous.as_ref()?;
        let old = &record.cells[*by_label.get(&cell.label)?];
        if old.id == cell.id {
            return None;
        }
        let old_inputs = record.inputs(old);
        if !only_code_differs(&old_inputs, &cell.inputs) {
            return None;
        }
        if !CellState::read(&super::run_dir(&self.opts.runs_root, &old.id)).is_finished() {
            return None;
        }
        Some(OtherBuild {
            label: cell.label.clone(),
            old_id: old.id.clone(),
            new_id: cell.id.clone(),
            changes: super::inputs::diff(&old_inputs, &cell.inputs).iter().map(|c| c.to_string()).collect(),
        })
    }

    /// What `plan` and `run` say about results of another build (never silent).
    pub fn other_build_report(&self) -> Option<String> {
        use std::fmt::Write;
        let mut out = String::new();
        let accepted = self.accepted.lock().unwrap();
        if !accepted.is_empty() {
            let _ = writeln!(out, "--accept-code-change: reused {} result(s) of another build (recorded in each cell's manifest):", accepted.len());
            for o in accepted.values() {
                let _ = writeln!(out, "  {} ({} → {}): {}", o.label, o.old_id, o.new_id, o.changes.join(", "));
            }
        }
        let other = self.other_build.lock().unwrap();
        let waiting: Vec<&OtherBuild> = other.values().filter(|o| !accepted.contains_key(&o.new_id)).collect();
        if !waiting.is_empty() {
            let _ = writeln!(
                out,
                "{} cell(s) have finished results of another build of dctk only (this build {}); they run again unless you accept those results with `dctk run --accept-code-change`:",
                waiting.len(),
                crate::env::BUILD_ID
            );
            for o in waiting {
                let _ = writeln!(out, "  {} ({} → {}): {}", o.label, o.old_id, o.new_id, o.changes.join(", "));
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// `ingest(#{...})`, once: the same settings over unchanged inputs reuse the corpus
    /// written earlier (this invocation's rounds, or an earlier `dctk run` recorded under
    /// `runs/studies/<study>/ingest-<key>.json`), so rerunning a study never re-ingests.
    pub fn ingest(&self, settings: serde_json::Value) -> Result<serde_json::Value, String> {
        let sandbox = self.opts.sandbox.clone();
        let resolve = |p: &str, what: &str| sandbox.resolve(p, what);
        // Key: the settings and the size and mtime of every input file.
        let mut parts = vec![settings.to_string()];
        let mut paths: Vec<String> = Vec::new();
        if let Some(a) = settings.get("inputs").and_then(|v| v.as_array()) {
            paths.extend(a.iter().filter_map(|v| v.as_str().map(String::from)));
        }
        if let Some(ds) = settings.get("domains").and_then(|v| v.as_array()) {
            for d in ds {
                if let Some(a) = d.get("paths").and_then(|v| v.as_array()) {
                    paths.extend(a.iter().filter_map(|v| v.as_str().map(String::from)));
                }
            }
        }
        for p in &paths {
            let path = resolve(p, "key \"inputs\"")?;
            let mut files = vec![path.clone()];
            if path.is_dir() {
                files = std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?.flatten().map(|e| e.path()).collect();
                files.sort();
            }
            for f in files {
                let m = std::fs::metadata(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
                parts.push(format!("{}|{}|{mtime}", f.display(), m.len()));
            }
        }
        let key = super::content_id(&parts.iter().map(|p| p.as_bytes()).collect::<Vec<_>>());
        let stamp = super::records::study_dir(&self.opts.runs_root, &self.script).join(format!("ingest-{key}.json"));
        let out = settings.get("out").and_then(|v| v.as_str()).map(|o| resolve(o, "key \"out\"")).transpose()?;
        if out.as_ref().is_some_and(|o| o.exists()) {
            if let Some(summary) = std::fs::read_to_string(&stamp).ok().and_then(|t| serde_json::from_str(&t).ok()) {
                return Ok(summary);
            }
        }
        let summary = crate::corpus::ingest_from_script(settings, &resolve)?;
        super::write_atomic(&stamp, summary.to_string().as_bytes()).map_err(|e| format!("{e:#}"))?;
        Ok(summary)
    }

    /// Cells to execute after this round, in plan order.
    pub fn pending(&self) -> Vec<Arc<Cell>> {
        self.cells.lock().unwrap().values().filter(|e| e.pending).map(|e| e.cell.clone()).collect()
    }
}

/// A planned cell as `train` sees it: its identity, whether it runs after this round,
/// and its state in the study cache.
#[derive(Clone, Debug)]
pub struct PlannedRef {
    pub id: String,
    pub label: String,
    pub dir: PathBuf,
    pub pending: bool,
    pub state: CellState,
}

/// The planned cells of a session, as a plan record.
pub fn plan_record(s: &Session) -> PlanRecord {
    let cells = s.cells.lock().unwrap();
    PlanRecord::from_cells(
        s.script.display().to_string(),
        cells
            .values()
            .map(|e| PlannedCell {
                label: e.cell.label().to_string(),
                id: e.cell.id().to_string(),
                inputs: e.cell.inputs().clone(),
                data_settings: e.cell.as_train().map(|c| data_settings(&c.spec)).unwrap_or_default(),
            })
            .collect(),
    )
}

/// One row per cell, in plan order: what the study measured. Floats use Rust's shortest
/// round-trip form, so two equal tables mean bitwise-equal numbers. Timings are left out
/// (they differ between runs; they are in each cell's result.ron).
pub fn results_table(s: &Session) -> Table {
    let cells = s.cells.lock().unwrap();
    let domains: BTreeSet<String> = cells
        .values()
        .filter_map(|e| match &e.state {
            CellState::Finished(r) => Some(r.final_val_loss_by_domain.keys().cloned().collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut columns: Vec<String> = [
        "label", "id", "status", "model", "params", "unique_tokens", "epochs", "steps", "train_tokens", "final_val_loss", "best_val_loss",
        "final_train_loss",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    columns.extend(domains.iter().map(|d| format!("val_loss.{d}")));
    // A column for every setting that varies between the study's cells (`weight_decay`,
    // `lr`, `regularizers[0].name`, a plugin's `mir.lambda`, …), named after the setting.
    let setting_name = |input: &str| -> Option<String> {
        if let Some(s) = input.strip_prefix("spec.") {
            return Some(s.to_string());
        }
        let rest = input.strip_prefix("plugin.")?;
        let (plugin, key) = rest.split_once(".settings.")?;
        Some(format!("{plugin}.{key}"))
    };
    let mut varying: indexmap::IndexMap<String, String> = indexmap::IndexMap::new();
    // Varying settings of the training cells (generation cells' settings are another kind).
    let train: Vec<&TrainCell> = cells.values().filter_map(|e| e.cell.as_train()).collect();
    if let Some(first) = train.first() {
        let mut names: indexmap::IndexSet<&String> = indexmap::IndexSet::new();
        for c in &train {
            names.extend(c.inputs.0.keys());
        }
        for name in names {
            let Some(column) = setting_name(name) else { continue };
            let value0 = first.inputs.0.get(name);
            if train.iter().any(|c| c.inputs.0.get(name) != value0) && !columns.contains(&column) {
                varying.insert(name.clone(), column);
            }
        }
    }
    columns.extend(varying.values().cloned());
    let rows = cells
        .values()
        .map(|e| {
            let Some(m) = e.cell.as_train() else {
                // A generation cell: its identity and status; its counts are in its result.ron.
                let mut row = vec![e.cell.label().to_string(), e.cell.id().to_string(), e.state.name().to_string(), "generate".to_string()];
                row.resize(columns.len(), String::new());
                return row;
            };
            let model = serde_json::to_value(&m.spec.model).map(|v| v.as_str().map(String::from).unwrap_or(v.to_string())).unwrap_or_default();
            let mut row = vec![m.label.clone(), m.id.clone(), e.state.name().to_string(), model, m.params.to_string()];
            row.push(m.spec.unique_tokens.to_string());
            row.push(m.spec.epochs.to_string());
            match &e.state {
                CellState::Finished(r) => {
                    row.extend([r.steps.to_string(), r.train_tokens.to_string(), r.final_val_loss.to_string(), r.best_val_loss.to_string(), r.final_train_loss.to_string()]);
                    row.extend(domains.iter().map(|d| r.final_val_loss_by_domain.get(d).map(|x| x.to_string()).unwrap_or_default()));
                }
                _ => row.extend(std::iter::repeat_n(String::new(), 5 + domains.len())),
            }
            row.extend(varying.keys().map(|k| m.inputs.0.get(k).map(|v| v.trim_matches('"').to_string()).unwrap_or_default()));
            row
        })
        .collect();
    Table { columns, rows }
}
