//! One training cell: resolve a spec's data, name everything its numbers depend on, and
//! give it an id and a directory; read its state; execute it (in a cell process).
//!
//! The id is blake3 over the cell's [`CellInputs`]: the resolved spec (minus its label
//! `name`, its `threads` and its `corpus` path: data is identified by content), the data
//! fingerprint, each plugin's library hash and settings, the
//! device kind and precision, and the versions of dctk, tch and libtorch (whose version
//! carries its CUDA tag). Same inputs, same id, same numbers: a finished cell is reused
//! wherever its id appears, and nothing else is.
//!
//! Data resolution (raw input ingested into `.dctk/corpora/` beside the runs root, domains,
//! budgets, validation batches) is [`crate::corpus`]'s; the cell records its [`DataManifest`]
//! and, once the run is done, the sampler's exact [`MixAccounting`] in `manifest.ron`.
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use dctk_data::MixAccounting;
use serde::{Deserialize, Serialize};

use super::inputs::CellInputs;
use super::lock::CellLock;
use super::{write_atomic, write_ron_atomic, Status};
use crate::corpus::{DataCache, DataManifest, RunData};
use crate::env::{self, Versions};
use crate::train::trainer::{self, precision_name, resolve_placement, RunPlan};
use crate::train::{ExecOptions, ModelConfig, RunResult, TrainSpec};

/// Everything needed to rerun a cell elsewhere.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    /// The cell's label in its study (its `name`, or `file:line` of its `train` call).
    #[serde(default)]
    pub label: String,
    pub spec: TrainSpec,
    /// The corpus path as resolved on this machine (as given: raw input or a corpus directory).
    pub corpus_path: String,
    pub model: ModelConfig,
    pub plan: RunPlan,
    pub data: DataManifest,
    pub device: String,
    pub precision: String,
    pub versions: Versions,
    /// The plugins this run loads, with the blake3 of each library file.
    #[serde(default)]
    pub plugins: Vec<crate::plugin::PluginRecord>,
    /// The named inputs the id is a hash of (see [`CellInputs`]).
    #[serde(default)]
    pub inputs: CellInputs,
    /// Per-domain unique tokens, tokens served and realized epochs: filled in when the run is done.
    #[serde(default)]
    pub accounting: Option<MixAccounting>,
}

/// A planned training cell: its id and inputs; its manifest is built when it is written
/// (planning 10,000 cells must not build 10,000 manifests).
pub struct TrainCell {
    pub id: String,
    pub label: String,
    pub dir: PathBuf,
    pub spec: TrainSpec,
    pub corpus: PathBuf,
    pub data: Arc<RunData>,
    pub plugins: Vec<crate::plugin::PluginRecord>,
    pub inputs: CellInputs,
    pub device: String,
    pub precision: String,
    pub params: i64,
    /// Training FLOPs of the whole run: flops_per_token × steps × tokens per step.
    pub flops: f64,
    /// Token ids: the corpus tokenizer's, the regularizers' extra tokens, padding.
    pub vocab: crate::train::model::VocabLayout,
    /// Tokens of one epoch as served (documents + separators).
    pub epoch_tokens: u64,
}

impl TrainCell {
    /// Everything needed to rerun the cell elsewhere.
    pub fn manifest(&self) -> Result<Manifest> {
        Ok(Manifest {
            run_id: self.id.clone(),
            label: self.label.clone(),
            spec: self.spec.clone(),
            corpus_path: self.corpus.display().to_string(),
            model: self.spec.model_config(&self.vocab).map_err(anyhow::Error::msg)?,
            plan: RunPlan::new(&self.spec, self.spec.unique_tokens, self.epoch_tokens, self.vocab.clone())?,
            data: self.data.manifest.clone(),
            device: self.device.clone(),
            precision: self.precision.clone(),
            versions: env::versions(),
            plugins: self.plugins.clone(),
            inputs: self.inputs.clone(),
            accounting: None,
        })
    }
}

/// Plans the cell for `spec`, whose corpus the caller resolved to `corpus`.
pub fn prepare_train(spec: &TrainSpec, label: &str, corpus: &Path, runs_root: &Path, data: &DataCache, progress: bool) -> Result<TrainCell> {
    let run_data = data.get(spec, corpus, runs_root, progress)?;
    let (device, kind) = resolve_placement(spec)?;
    let versions = env::versions();
    // Plugins are part of what decides the numbers: a rebuilt plugin is a new run.
    let plugins = crate::plugin::regularizer::validate_regularizers(&spec.regularizers)?;
    let vocab = crate::train::plan::plan_vocab(&run_data, &spec.regularizers)?;
    let model = spec.model_config(&vocab).map_err(anyhow::Error::msg)?;
    crate::train::plan::check_fits_memory(&model, spec, device, kind).map_err(anyhow::Error::msg)?;
    // The step count (and its check) without the full plan, which the manifest builds.
    let epoch_tokens = crate::train::plan::epoch_tokens(&run_data)?;
    let (tokens_per_step, total_steps) = RunPlan::steps(spec, spec.unique_tokens)?;

    let mut inputs = CellInputs::default();
    inputs.insert("kind", "train");
    let mut id_spec = serde_json::to_value(spec)?;
    if let Some(m) = id_spec.as_object_mut() {
        // The label, the thread count and the local path decide no number; device and
        // precision enter below as resolved ("auto" and "cpu" on a CPU are one cell);
        // text_field and val_fraction only shape an automatic ingest, whose result the
        // data fingerprint identifies.
        for key in ["name", "threads", "corpus", "device", "precision", "text_field", "val_fraction"] {
            m.remove(key);
        }
    }
    inputs.insert_json("spec", &id_spec);
    // The fingerprint covers the tokenizer, every selected subset and the validation
    // settings; per-domain details are in the data manifest (and `dctk run` on an
    // exported bundle compares them domain by domain).
    inputs.insert("data.fingerprint", &run_data.manifest.fingerprint);
    inputs.insert("data.tokenizer", &run_data.manifest.tokenizer);
    for p in &plugins {
        inputs.insert(format!("plugin.{}.blake3", p.name), &p.blake3);
        inputs.insert(format!("plugin.{}.version", p.name), &p.version);
        if let Some(s) = &p.settings {
            inputs.insert_json(&format!("plugin.{}.settings", p.name), &serde_json::Value::Object(s.clone()));
        }
    }
    let device_kind = env::device_name(device).split(':').next().unwrap().to_string();
    inputs.insert("device", &device_kind);
    inputs.insert("precision", precision_name(kind));
    inputs.insert("version.dctk", &versions.dctk);
    inputs.insert("version.tch", &versions.tch);
    inputs.insert("version.libtorch", &versions.libtorch);
    inputs.insert("version.cuda", if device_kind == "cuda" { cuda_tag(&versions.libtorch) } else { "none (cpu)".into() });
    let id = inputs.id();

    let dir = super::run_dir(runs_root, &id);
    let flops = model.flops_per_token(spec.seq_len) * (total_steps * tokens_per_step) as f64;
    Ok(TrainCell {
        id,
        label: label.to_string(),
        dir,
        spec: spec.clone(),
        corpus: corpus.to_path_buf(),
        data: run_data,
        plugins,
        inputs,
        device: env::device_name(device),
        precision: precision_name(kind).into(),
        params: model.total_params(),
        flops,
        vocab,
        epoch_tokens,
    })
}

/// The CUDA tag of a libtorch version (`2.11.0+cu130` → `cu130`).
fn cuda_tag(libtorch: &str) -> String {
    libtorch.split_once('+').map(|(_, t)| t.to_string()).unwrap_or_else(|| "unknown".into())
}

/// Where a cell stands on disk.
#[derive(Clone, Debug)]
pub enum CellState {
    /// Never started here.
    New,
    /// Finished: its result (status `done` or `diverged`).
    Finished(Box<RunResult>),
    /// Failed with this message (from `error.txt`).
    Failed(String),
    /// Started, not finished, not running now: resumes from its checkpoint (at this step).
    Interrupted(Option<u64>),
    /// Another dctk process holds its lock.
    Busy(String),
}

impl CellState {
    pub fn read(dir: &Path) -> CellState {
        match Status::read(dir) {
            None => CellState::New,
            Some(Status::Done | Status::Diverged) => match fs::read_to_string(dir.join("result.ron")).ok().and_then(|t| ron::from_str::<RunResult>(&t).ok()) {
                Some(r) => CellState::Finished(Box::new(r)),
                None => CellState::Interrupted(checkpoint_step(dir)),
            },
            Some(status) => match CellLock::holder(dir) {
                Some(holder) => CellState::Busy(holder),
                None if status == Status::Failed => CellState::Failed(
                    fs::read_to_string(dir.join("error.txt")).unwrap_or_else(|_| "failed (no error.txt)".into()).trim().to_string(),
                ),
                None => CellState::Interrupted(checkpoint_step(dir)),
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            CellState::New => "new",
            CellState::Finished(r) if r.status == "diverged" => "diverged",
            CellState::Finished(_) => "done",
            CellState::Failed(_) => "failed",
            CellState::Interrupted(_) => "interrupted",
            CellState::Busy(_) => "running",
        }
    }
}

fn checkpoint_step(dir: &Path) -> Option<u64> {
    let ckpt = crate::train::checkpoint::find(dir)?;
    crate::train::checkpoint::read_state(&ckpt).ok().map(|s| s.step)
}

/// Writes the cell's manifest (before it first runs).
pub fn materialize(cell: &TrainCell) -> Result<()> {
    fs::create_dir_all(&cell.dir).with_context(|| format!("creating {}", cell.dir.display()))?;
    if !cell.dir.join("manifest.ron").exists() {
        write_ron_atomic(&cell.dir.join("manifest.ron"), &cell.manifest()?)?;
    }
    Ok(())
}

/// Another process holds the cell's lock: try again later.
#[derive(Debug)]
pub struct CellBusy(pub String);

impl std::fmt::Display for CellBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the cell is being run by another dctk ({})", self.0)
    }
}

impl std::error::Error for CellBusy {}

/// Executes the cell in `dir` from its `manifest.ron` (what a cell process does, here
/// or as one task of a job array): lock it, re-resolve and check its data, train
/// (resuming from its checkpoint), record accounting. Failures write `error.txt` and
/// status `failed`; a run stopped on request stays resumable.
pub fn execute(dir: &Path, opts: &ExecOptions) -> Result<RunResult> {
    let _lock = CellLock::acquire(dir)?.ok_or_else(|| CellBusy(CellLock::holder(dir).unwrap_or_default()))?;
    if let CellState::Finished(r) = CellState::read(dir) {
        return Ok(*r);
    }
    let result = execute_locked(dir, opts);
    if let Err(e) = &result {
        if e.downcast_ref::<trainer::StoppedEarly>().is_none() {
            let _ = write_atomic(&dir.join("error.txt"), format!("{e:#}\n").as_bytes());
            let _ = Status::Failed.write(dir);
        }
    }
    result
}

fn execute_locked(dir: &Path, opts: &ExecOptions) -> Result<RunResult> {
    let path = dir.join("manifest.ron");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: Manifest = ron::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let _ = fs::remove_file(dir.join("error.txt"));
    let runs_root = dir.parent().unwrap_or(Path::new("."));
    let data = DataCache::default().get(&manifest.spec, Path::new(&manifest.corpus_path), runs_root, opts.progress)?;
    if data.manifest.fingerprint != manifest.data.fingerprint {
        bail!(
            "{}: the data changed since this cell was planned (fingerprint {} now, {} in the manifest); \
             rerun the study to plan it again",
            manifest.corpus_path,
            &data.manifest.fingerprint[..16],
            &manifest.data.fingerprint[..16.min(manifest.data.fingerprint.len())]
        );
    }
    // The trainer writes only its own artefacts (metrics.jsonl, ckpt/); the cell's status
    // and result.ron are the study's records.
    Status::Running.write(dir)?;
    let result = trainer::train(&manifest.spec, &data, &manifest.run_id, dir, opts)?;
    write_ron_atomic(&dir.join("result.ron"), &result)?;
    let status = if result.status == "diverged" { Status::Diverged } else { Status::Done };
    let manifest = Manifest { accounting: Some(result.accounting.clone()), ..manifest };
    write_ron_atomic(&path, &manifest)?;
    status.write(dir)?;
    Ok(result)
}
