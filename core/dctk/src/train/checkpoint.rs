//! Checkpoints: model weights, optimizer state and the data-order state, so a run
//! interrupted at any moment resumes to the same losses, step for step (on CPU).
//!
//! ```text
//! ckpt/model.safetensors   model variables by name; metadata `dctk`: the model config and
//!                          vocabulary layout (JSON), so the file says what it holds
//! ckpt/optim.safetensors   AdamW moments (and fp32 masters in bf16 runs)
//! ckpt/state.ron           step, AdamW step, data fingerprint, run id, sampler state
//! ```
//! The data order is the `dctk_data::Sampler`'s: its [`SamplerState`] (per-domain stream
//! positions, counters and round-robin credit; shuffles are re-derived from the seed) is saved
//! with the weights and restored on resume. Dropout is reseeded from (seed, step) each step.
//! So a resumed run sees exactly the token sequence of an uninterrupted one.
//!
//! Writing is crash-safe: the new checkpoint is written to `ckpt.tmp/`, then swapped in
//! by two renames; a reader falls back to `ckpt.old/` if a crash hit between them.
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use dctk_data::SamplerState;
use serde::{Deserialize, Serialize};
#[cfg(feature = "torch")]
use safetensors::tensor::{Dtype, View};
#[cfg(feature = "torch")]
use tch::{nn::VarStore, Device, Tensor};

use super::model::{ModelConfig, VocabLayout};
#[cfg(feature = "torch")]
use super::optim::AdamW;

/// What the checkpoint's tensors are: written as the safetensors metadata key `dctk`, a JSON
/// object `{"run_id", "model_config", "vocab"}` (one key, so the header is deterministic).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    pub run_id: String,
    pub model_config: ModelConfig,
    pub vocab: VocabLayout,
}

#[cfg(feature = "torch")]
/// A tensor's bytes on the host, for the safetensors writer.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

#[cfg(feature = "torch")]
impl View for HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(feature = "torch")]
/// Writes named tensors as safetensors with `metadata` in the header (tch's writer has none).
/// The tensor bytes are exactly what `Tensor::write_safetensors` writes, and
/// `Tensor::read_safetensors` reads the file back.
pub(crate) fn write_safetensors(tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>, path: &Path) -> Result<()> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(Device::Cpu).contiguous();
        let dtype = Dtype::try_from(t.kind()).with_context(|| format!("{}: tensor `{name}`", path.display()))?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel).with_context(|| format!("{}: tensor `{name}`", path.display()))?;
        views.push((name.as_str(), HostTensor { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), bytes }));
    }
    safetensors::tensor::serialize_to_file(views, &metadata, path).with_context(|| format!("writing {}", path.display()))
}

/// The `dctk` metadata of a checkpoint's `model.safetensors`, if it has any.
pub fn read_meta(model_file: &Path) -> Result<Option<CheckpointMeta>> {
    let bytes = fs::read(model_file).with_context(|| format!("reading {}", model_file.display()))?;
    meta_of(&bytes, model_file)
}

/// [`read_meta`] of a `model.safetensors` already read into `bytes` (named `model_file` in errors).
pub fn meta_of(bytes: &[u8], model_file: &Path) -> Result<Option<CheckpointMeta>> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).with_context(|| format!("reading {}", model_file.display()))?;
    match meta.metadata().as_ref().and_then(|m| m.get("dctk")) {
        None => Ok(None),
        Some(json) => Ok(Some(serde_json::from_str(json).with_context(|| format!("{}: metadata `dctk`", model_file.display()))?)),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckpointState {
    /// Optimizer steps completed.
    pub step: u64,
    pub adam_step: i64,
    pub run_id: String,
    pub data_fingerprint: String,
    /// Where the data sampler stands after `step` steps.
    #[serde(default)]
    pub sampler: Option<SamplerState>,
}

fn ckpt_dirs(run_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (run_dir.join("ckpt"), run_dir.join("ckpt.tmp"), run_dir.join("ckpt.old"))
}

#[cfg(feature = "torch")]
/// Writes a checkpoint (see the module docs); on failure the half-written `ckpt.tmp/` is
/// removed, so it cannot trouble the next attempt.
pub fn save(run_dir: &Path, vs: &VarStore, opt: &AdamW, state: &CheckpointState, meta: &CheckpointMeta) -> Result<()> {
    let result = save_swapping(run_dir, vs, opt, state, meta);
    if result.is_err() {
        let _ = remove_debris(run_dir);
    }
    result
}

#[cfg(feature = "torch")]
fn save_swapping(run_dir: &Path, vs: &VarStore, opt: &AdamW, state: &CheckpointState, meta: &CheckpointMeta) -> Result<()> {
    let (live, tmp, old) = ckpt_dirs(run_dir);
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let vars: Vec<(String, Tensor)> = vars.into_iter().collect();
    let meta = HashMap::from([("dctk".to_string(), serde_json::to_string(meta)?)]);
    write_safetensors(&vars, Some(meta), &tmp.join("model.safetensors"))?;
    Tensor::write_safetensors(&opt.state_tensors(), tmp.join("optim.safetensors")).context("writing optim.safetensors")?;
    let state_ron = ron::ser::to_string_pretty(state, ron::ser::PrettyConfig::default().struct_names(true))?;
    dctk_fs::write_atomic(&tmp.join("state.ron"), state_ron.as_bytes())?;
    for f in ["model.safetensors", "optim.safetensors"] {
        fs::File::open(tmp.join(f))?.sync_all()?;
    }
    if live.exists() {
        if old.exists() {
            fs::remove_dir_all(&old)?;
        }
        fs::rename(&live, &old)?;
    }
    fs::rename(&tmp, &live)?;
    if old.exists() {
        fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Removes what a killed or failed writer left in a run directory: `ckpt.tmp/` (a checkpoint
/// being written; `ckpt/` or `ckpt.old/` still hold the last good one) and the temporary
/// files of atomic writes (`.*.tmp-*`) in the run directory and in `ckpt/`. Only under the
/// cell's lock, where no other writer is live.
pub fn remove_debris(run_dir: &Path) -> Result<()> {
    let (live, tmp, _) = ckpt_dirs(run_dir);
    if tmp.is_dir() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    } else if tmp.exists() {
        fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    dctk_fs::remove_temp_files(run_dir);
    if live.is_dir() {
        dctk_fs::remove_temp_files(&live);
    }
    Ok(())
}

/// The checkpoint directory to resume from, if any.
pub fn find(run_dir: &Path) -> Option<PathBuf> {
    let (live, _, old) = ckpt_dirs(run_dir);
    [live, old].into_iter().find(|d| d.join("state.ron").exists())
}

pub fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("state.ron");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    ron::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(feature = "torch")]
/// The tensors of a checkpoint's `model.safetensors`, by name.
pub fn read_weights(model_path: &Path) -> Result<BTreeMap<String, Tensor>> {
    Ok(Tensor::read_safetensors(model_path).with_context(|| format!("reading {}", model_path.display()))?.into_iter().collect())
}

#[cfg(feature = "torch")]
/// Copies `saved` (read from `model_path`) into an already-built model, converting each
/// tensor to the variable's kind. Every variable must be there with its shape; the error
/// names the file and the tensor.
pub fn copy_weights(saved: &BTreeMap<String, Tensor>, model_path: &Path, vs: &VarStore) -> Result<()> {
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vs.variables() {
            let Some(src) = saved.get(&name) else {
                bail!("{}: missing tensor `{name}`", model_path.display());
            };
            if src.size() != var.size() {
                bail!("{}: tensor `{name}` has shape {:?}, the model wants {:?}", model_path.display(), src.size(), var.size());
            }
            var.copy_(&src.to_kind(var.kind()));
        }
        Ok(())
    })
}

#[cfg(feature = "torch")]
/// Loads weights and optimizer state into an already-built model and optimizer.
pub fn load(dir: &Path, vs: &mut VarStore, opt: &mut AdamW, state: &CheckpointState) -> Result<()> {
    let model_path = dir.join("model.safetensors");
    copy_weights(&read_weights(&model_path)?, &model_path, vs)?;
    let optim_path = dir.join("optim.safetensors");
    let optim: BTreeMap<String, Tensor> = Tensor::read_safetensors(&optim_path)
        .with_context(|| format!("reading {}", optim_path.display()))?
        .into_iter()
        .collect();
    opt.load_state_tensors(state.adam_step, &optim)
        .map_err(|e| anyhow::anyhow!("{}: {e}", optim_path.display()))?;
    Ok(())
}
