//! Planning: from a script's `train` settings to a cell — resolve its data, name
//! everything its numbers depend on ([`named_inputs`]), give it an id and a directory,
//! and write its `manifest.ron` (the contract a cell process executes, see
//! `study/exec_cell.rs`).
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

use anyhow::{Context, Result};
use dctk_data::MixAccounting;
use serde::{Deserialize, Serialize};

use super::inputs::CellInputs;
use super::write_record;
use crate::corpus::{DataCache, DataManifest, RunData};
use crate::env::{self, Versions};
use crate::train::trainer::{precision_name, resolve_placement, RunPlan};
use crate::train::{ModelConfig, TrainSpec};

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
    /// The synthetic streams' corpus paths as resolved on this machine (`spec.synthetic`, in order).
    #[serde(default)]
    pub synthetic_paths: Vec<String>,
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
    /// Real versus synthetic tokens (unique, seen, epochs, mix ratio asked and served, Kim et
    /// al.'s real-token equivalent): filled in when the run is done.
    #[serde(default)]
    pub real_synthetic: Option<crate::train::RealSyntheticAccounting>,
    /// Set when the result was accepted from another build (`--accept-code-change`).
    #[serde(default)]
    pub accepted_code_change: Option<AcceptedCodeChange>,
    /// The CPU the cell was executed on and the kernel settings in force (see
    /// [`crate::cpu`]): filled in by the cell process.
    #[serde(default)]
    pub cpu: Option<crate::cpu::CpuRecord>,
}

/// Recorded in the manifest of a cell whose result was accepted from another build
/// (`dctk run --accept-code-change`): never silent, always traceable.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AcceptedCodeChange {
    /// The cell whose result this is.
    pub from_id: String,
    pub changes: Vec<String>,
}

/// A planned training cell: its id and inputs; its manifest is built when it is written
/// (planning 10,000 cells must not build 10,000 manifests).
pub struct TrainCell {
    pub id: String,
    pub label: String,
    pub dir: PathBuf,
    pub spec: TrainSpec,
    pub corpus: PathBuf,
    /// The synthetic streams' corpora, resolved (`spec.synthetic`, in order).
    pub synthetic: Vec<PathBuf>,
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
            // `threads` decides no number the id names (see `named_inputs`): not frozen here
            // for every later study that reuses this directory.
            spec: TrainSpec { threads: None, ..self.spec.clone() },
            corpus_path: self.corpus.display().to_string(),
            synthetic_paths: self.synthetic.iter().map(|p| p.display().to_string()).collect(),
            model: self.spec.model_config(&self.vocab).map_err(anyhow::Error::msg)?,
            plan: RunPlan::new(&self.spec, self.spec.unique_tokens, self.epoch_tokens, self.vocab.clone())?,
            data: self.data.manifest.clone(),
            device: self.device.clone(),
            precision: self.precision.clone(),
            versions: env::versions(),
            plugins: self.plugins.clone(),
            inputs: self.inputs.clone(),
            accounting: None,
            real_synthetic: None,
            accepted_code_change: None,
            cpu: None,
        })
    }
}

/// Plans the cell for `spec`, whose corpus the caller resolved to `corpus`.
/// `synthetic` are the resolved paths of `spec.synthetic`, in order.
pub fn prepare_train(spec: &TrainSpec, label: &str, corpus: &Path, synthetic: &[PathBuf], runs_root: &Path, data: &DataCache, progress: bool) -> Result<TrainCell> {
    check_threads(spec.threads)?;
    let run_data = data.plan(&spec.data_spec(corpus, synthetic).map_err(anyhow::Error::msg)?, runs_root, progress)?;
    let (device, kind) = resolve_placement(spec)?;
    let versions = env::versions();
    // Plugins are part of what decides the numbers: a rebuilt plugin is a new run.
    let plugins = crate::plugin::regularizer::validate_regularizers(&spec.regularizers)?;
    let vocab = crate::train::plan::plan_vocab(&run_data, &spec.regularizers)?;
    let model = spec.model_config(&vocab).map_err(anyhow::Error::msg)?;
    crate::train::plan::check_fits_memory(&model, spec, device, kind).map_err(anyhow::Error::msg)?;
    crate::cpu::check(spec.numerics).map_err(|e| anyhow::anyhow!("key \"numerics\": {e}"))?;
    // The step count (and its check) without the full plan, which the manifest builds.
    let epoch_tokens = crate::train::plan::epoch_tokens(&run_data)?;
    let (tokens_per_step, total_steps) = RunPlan::steps(spec, epoch_tokens)?;

    let device_kind = env::device_name(device).split(':').next().unwrap().to_string();
    let inputs = named_inputs(spec, &run_data.manifest, &plugins, &device_kind, precision_name(kind), &versions)?;
    let id = inputs.id();

    let dir = super::run_dir(runs_root, &id);
    let flops = model.flops_per_token(spec.seq_len) * (total_steps * tokens_per_step) as f64;
    Ok(TrainCell {
        id,
        label: label.to_string(),
        dir,
        spec: spec.clone(),
        corpus: corpus.to_path_buf(),
        synthetic: synthetic.to_vec(),
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

/// The most CPU threads a cell may ask for: more than any machine dctk runs on has, and
/// few enough that libtorch's thread pool can start them.
pub const MAX_THREADS: i32 = 1024;

/// `threads` is refused at plan when no cell process could start that many (libtorch
/// aborts creating its pool), instead of every run of the cell crashing.
fn check_threads(threads: Option<i32>) -> Result<()> {
    match threads {
        Some(t) if t > MAX_THREADS => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            anyhow::bail!("key \"threads\": {t} is more than dctk can start (at most {MAX_THREADS}; this machine has {cores} core(s))")
        }
        _ => Ok(()),
    }
}

/// The named inputs a cell's id is a hash of: the spec's settings that decide numbers,
/// the data fingerprint and tokenizer, each plugin's library hash, version and settings,
/// the device kind and precision, and the versions. Planning computes them here; a cell
/// process recomputes them on its machine before its first step and refuses to train
/// when they differ from its manifest's.
pub fn named_inputs(
    spec: &TrainSpec,
    data: &DataManifest,
    plugins: &[crate::plugin::PluginRecord],
    device_kind: &str,
    precision: &str,
    versions: &Versions,
) -> Result<CellInputs> {
    let mut inputs = CellInputs::default();
    inputs.insert("kind", "train");
    let mut id_spec = serde_json::to_value(spec)?;
    if let Some(m) = id_spec.as_object_mut() {
        // The label, the thread count and the local path decide no number; device and
        // precision enter below as resolved ("auto" and "cpu" on a CPU are one cell);
        // text_field and val_fraction only shape an automatic ingest, whose result the
        // data fingerprint identifies.
        for key in ["name", "threads", "corpus", "synthetic", "device", "precision", "text_field", "val_fraction"] {
            m.remove(key);
        }
        // A source run is identified by its id, not where it lies.
        if let Some(init) = m.get_mut("init_from").and_then(|v| v.as_object_mut()) {
            init.remove("dir");
        }
    }
    inputs.insert_json("spec", &id_spec);
    // The fingerprint covers the tokenizer, every selected subset and the validation
    // settings; per-domain details are in the data manifest (and `dctk run` on an
    // exported bundle compares them domain by domain).
    inputs.insert("data.fingerprint", &data.fingerprint);
    inputs.insert("data.tokenizer", &data.tokenizer);
    for p in plugins {
        inputs.insert(format!("plugin.{}.blake3", p.name), &p.blake3);
        inputs.insert(format!("plugin.{}.version", p.name), &p.version);
        if let Some(s) = &p.settings {
            inputs.insert_json(&format!("plugin.{}.settings", p.name), &serde_json::Value::Object(s.clone()));
        }
    }
    inputs.insert("device", device_kind);
    inputs.insert("precision", precision);
    inputs.insert("version.dctk", &versions.dctk);
    inputs.insert("version.build", &versions.build);
    inputs.insert("version.tch", &versions.tch);
    inputs.insert("version.libtorch", &versions.libtorch);
    inputs.insert("version.cuda", if device_kind == "cuda" { cuda_tag(&versions.libtorch) } else { "none (cpu)".into() });
    Ok(inputs)
}

/// The CUDA tag of a libtorch version (`2.11.0+cu130` → `cu130`).
fn cuda_tag(libtorch: &str) -> String {
    libtorch.split_once('+').map(|(_, t)| t.to_string()).unwrap_or_else(|| "unknown".into())
}

/// Writes the cell's manifest (before it first runs).
pub fn materialize(cell: &TrainCell) -> Result<()> {
    fs::create_dir_all(&cell.dir).with_context(|| format!("creating {}", cell.dir.display()))?;
    if !cell.dir.join("manifest.ron").exists() {
        write_record(&cell.dir.join("manifest.ron"), &cell.manifest()?)?;
    }
    Ok(())
}

