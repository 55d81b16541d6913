//! One training cell: resolve a spec's data, give it an id and a directory, and then
//! reuse its finished result, resume it from its checkpoint, or train it.
//!
//! The id hashes what decides the numbers: the resolved spec (minus its label `name`),
//! the data fingerprint (a hash of the exact token streams), the resolved device and
//! precision, and dctk's version.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{content_id, run_dir, to_ron, write_ron_atomic, Status};
use crate::data::{load_corpus, DataManifest, TokenStreams};
use crate::env::{self, Versions};
use crate::train::trainer::{self, precision_name, resolve_placement, RunPlan};
use crate::train::{ExecOptions, ModelConfig, RunResult, TrainSpec};

/// Everything needed to rerun a cell elsewhere.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub spec: TrainSpec,
    /// The corpus path as resolved on this machine.
    pub corpus_path: String,
    pub model: ModelConfig,
    pub plan: RunPlan,
    pub data: DataManifest,
    pub device: String,
    pub precision: String,
    pub versions: Versions,
}

/// Caches tokenized corpora within one process: a sweep over epochs or weight decay
/// tokenizes its corpus once.
#[derive(Clone, Default)]
pub struct DataCache {
    inner: Arc<Mutex<HashMap<String, Arc<TokenStreams>>>>,
}

impl DataCache {
    fn get(&self, spec: &TrainSpec, corpus: &Path) -> Result<Arc<TokenStreams>> {
        let key = format!(
            "{}|{}|{}|{}|{}",
            corpus.display(),
            spec.text_field,
            spec.unique_tokens,
            spec.val_tokens,
            spec.val_fraction
        );
        if let Some(s) = self.inner.lock().unwrap().get(&key) {
            return Ok(s.clone());
        }
        let streams = Arc::new(load_corpus(corpus, &spec.text_field, spec.unique_tokens, spec.val_tokens, spec.val_fraction)?);
        self.inner.lock().unwrap().insert(key, streams.clone());
        Ok(streams)
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
    let data = ctx.data.get(spec, &corpus)?;
    let (device, kind) = resolve_placement(spec)?;
    let mut id_spec = spec.clone();
    id_spec.name = None;
    id_spec.threads = None;
    let versions = env::versions();
    let id = content_id(&[
        to_ron(&id_spec)?.as_bytes(),
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
        plan: RunPlan::new(spec, data.train.len())?,
        data: data.manifest.clone(),
        device: env::device_name(device),
        precision: precision_name(kind).into(),
        versions,
    };
    write_ron_atomic(&dir.join("manifest.ron"), &manifest)?;
    let result = trainer::train(spec, &data, &id, &dir, &ctx.exec);
    if let Err(e) = &result {
        if !e.to_string().contains("--stop-after-steps") {
            let _ = Status::Failed.write(&dir);
        }
    }
    result
}
