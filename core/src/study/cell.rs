//! One training cell: resolve a spec's data, give it an id and a directory, and then
//! reuse its finished result, resume it from its checkpoint, or train it.
//!
//! Data resolution (raw input ingested into `.dctk/corpora/` beside the runs root, domains, budgets,
//! validation batches) is [`crate::data`]'s; the cell records its [`DataManifest`] and, once
//! the run is done, the sampler's exact [`MixAccounting`] in `manifest.ron`.
//!
//! The id hashes what decides the numbers: the resolved spec (minus its label `name`),
//! the data fingerprint (tokenizer, shard hashes, subsets, mixture), the resolved device and
//! precision, and dctk's version.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dctk_data::MixAccounting;
use serde::{Deserialize, Serialize};

use super::{content_id, run_dir, to_ron, write_ron_atomic, Status};
use crate::data::{plan_data, resolve_corpus, AutoIngest, CorpusCache, DataManifest, ResolvedCorpus, RunData};
use crate::env::{self, Versions};
use crate::train::trainer::{self, precision_name, resolve_placement, RunPlan};
use crate::train::{ExecOptions, ModelConfig, RunResult, TrainSpec};

/// Everything needed to rerun a cell elsewhere.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
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
    /// Per-domain unique tokens, tokens served and realized epochs: filled in when the run is done.
    #[serde(default)]
    pub accounting: Option<MixAccounting>,
}

/// Resolved and opened corpora within one process: a sweep over epochs or weight decay
/// hashes, ingests and verifies its corpus once.
#[derive(Clone, Default)]
pub struct DataCache {
    resolved: Arc<Mutex<HashMap<String, ResolvedCorpus>>>,
    corpora: CorpusCache,
}

impl DataCache {
    fn get(&self, spec: &TrainSpec, corpus: &Path, ctx: &CellContext) -> Result<RunData> {
        let auto = AutoIngest { text_field: spec.text_field.clone(), val_fraction: spec.val_fraction };
        let key = format!("{}|{}|{}|{}", corpus.display(), ctx.runs_root.display(), auto.text_field, auto.val_fraction);
        let cached = self.resolved.lock().unwrap().get(&key).cloned();
        let resolved = match cached {
            Some(r) => r,
            None => {
                let r = resolve_corpus(corpus, &ctx.runs_root, &auto, ctx.exec.progress).map_err(anyhow::Error::msg)?;
                self.resolved.lock().unwrap().insert(key, r.clone());
                r
            }
        };
        let opened = self.corpora.open(&resolved.dir).map_err(anyhow::Error::msg)?;
        plan_data(spec, opened, &resolved).map_err(anyhow::Error::msg)
    }
}

/// Where a cell runs: the directory holding `runs/`, the directory relative paths in
/// specs are resolved against, and how to execute.
#[derive(Clone)]
pub struct CellContext {
    pub runs_root: PathBuf,
    pub base_dir: PathBuf,
    pub exec: ExecOptions,
    pub data: DataCache,
}

impl CellContext {
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Runs (or reuses, or resumes) the training cell for `spec`.
pub fn run_train_cell(spec: &TrainSpec, ctx: &CellContext) -> Result<RunResult> {
    let corpus = ctx.resolve(&spec.corpus);
    let data = ctx.data.get(spec, &corpus, ctx)?;
    let (device, kind) = resolve_placement(spec)?;
    let mut id_spec = spec.clone();
    id_spec.name = None;
    id_spec.threads = None;
    let versions = env::versions();
    // Plugins are part of what decides the numbers: a rebuilt plugin is a new run.
    let plugins = crate::plugin::regularizer::validate_regularizers(&spec.regularizers)?;
    let plugin_hashes: String = plugins.iter().map(|p| format!("{}={};", p.name, p.blake3)).collect();
    let id = content_id(&[
        to_ron(&id_spec)?.as_bytes(),
        plugin_hashes.as_bytes(),
        data.manifest.fingerprint.as_bytes(),
        env::device_name(device).split(':').next().unwrap().as_bytes(),
        precision_name(kind).as_bytes(),
        versions.dctk.as_bytes(),
    ]);
    let dir = run_dir(&ctx.runs_root, spec.name.as_deref(), &id);
    if Status::read(&dir) == Some(Status::Done) {
        let path = dir.join("result.ron");
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(result) = ron::from_str::<RunResult>(&text) {
                return Ok(result);
            }
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest = Manifest {
        run_id: id.clone(),
        spec: spec.clone(),
        corpus_path: corpus.display().to_string(),
        model: spec.model_config().map_err(anyhow::Error::msg)?,
        plan: RunPlan::new(spec, spec.unique_tokens)?,
        data: data.manifest.clone(),
        device: env::device_name(device),
        precision: precision_name(kind).into(),
        versions,
        plugins,
        accounting: None,
    };
    write_ron_atomic(&dir.join("manifest.ron"), &manifest)?;
    let result = trainer::train(spec, &data, &id, &dir, &ctx.exec);
    match &result {
        Ok(r) => {
            let manifest = Manifest { accounting: Some(r.accounting.clone()), ..manifest };
            write_ron_atomic(&dir.join("manifest.ron"), &manifest)?;
        }
        Err(e) => {
            if e.downcast_ref::<trainer::StoppedEarly>().is_none() {
                let _ = Status::Failed.write(&dir);
            }
        }
    }
    result
}
