//! `RunPlan`: how a run is laid out in steps (total steps, gradient accumulation, evaluation,
//! checkpoint and epoch-end steps) and token ids ([`VocabLayout`]), derived from the spec and
//! the data and recorded in the cell's manifest; and the checks that refuse, at planning, what
//! a run could not do (step counts past [`MAX_TOTAL_STEPS`], models that cannot fit in memory).
//!
//! **One meaning of "epoch"**: one pass over the unique-token budget *as the sampler serves
//! it*, every selected document followed by its separator, i.e. `epoch_tokens` = unique
//! tokens + one separator per document (`dctk_data::MixAccounting::epoch_tokens`). The
//! epoch-end steps (`val_loss_by_epoch`), `epoch` in metrics and evaluations, evaluations per
//! epoch, `epochs_realized`, the sampler's accounting *and the step count* all use it:
//! total_steps = floor(epoch_tokens × epochs / (batch_size × seq_len)), so `epochs: 4` is four
//! passes over the data (up to the last partial batch, which is dropped), and the epoch rows
//! sit on the data's epoch boundaries.
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use super::model::{ModelConfig, VocabLayout, GPT2_VOCAB};
use super::spec::TrainSpec;
use crate::corpus::RunData;
use crate::plugin::regularizer::RegularizerRequest;

/// The most optimizer steps a run may plan (a billion: years on the fastest step dctk takes).
pub const MAX_TOTAL_STEPS: u64 = 1_000_000_000;
/// The most evaluations, checkpoints or epoch ends a run may plan (the plan lists each).
pub const MAX_LISTED_STEPS: u64 = 1_000_000;

/// How a run is laid out in steps: derived from the spec and the data, recorded in
/// the manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunPlan {
    /// The unique-token budget (documents only).
    pub unique_tokens: u64,
    /// Tokens of one epoch as served: the budget's documents, each followed by its separator.
    #[serde(default)]
    pub epoch_tokens: u64,
    /// Whole sequences of seq_len tokens in one epoch: epoch_tokens / seq_len.
    pub sequences_per_epoch: u64,
    pub total_steps: u64,
    pub accumulation_steps: i64,
    pub tokens_per_step: u64,
    pub eval_steps: Vec<u64>,
    pub checkpoint_steps: Vec<u64>,
    /// Steps at which each whole epoch ends.
    pub epoch_end_steps: Vec<u64>,
    /// Token ids: the tokenizer's, the plugins' extra tokens, padding.
    #[serde(default = "gpt2_layout")]
    pub vocab: VocabLayout,
    /// The fraction of training tokens from synthetic streams (`None`: none). With it, one
    /// epoch (a pass over `epoch_tokens` of the real budget) takes epoch_tokens / (1 −
    /// mix_ratio) training tokens (at mix_ratio = 1, `epoch_tokens` is the synthetic streams').
    #[serde(default)]
    pub mix_ratio: Option<f64>,
}

/// Manifests written before the layout was recorded were all GPT-2.
fn gpt2_layout() -> VocabLayout {
    VocabLayout::new(GPT2_VOCAB, &[])
}

impl RunPlan {
    /// (tokens per step, total steps): total_steps = floor(epoch_tokens × epochs /
    /// (batch_size × seq_len)) for `epoch_tokens` of one pass as served, at least one, at most [`MAX_TOTAL_STEPS`]; and the numbers of
    /// evaluations, checkpoints and epoch ends the plan will list, each at most
    /// [`MAX_LISTED_STEPS`]. Errors name the key. Cheap (no step is enumerated): planning a
    /// sweep calls it per cell.
    pub fn steps(spec: &TrainSpec, epoch_tokens: u64) -> Result<(u64, u64)> {
        let tokens_per_step = (spec.batch_size * spec.seq_len) as u64;
        let total_tokens_f = epoch_tokens as f64 * spec.epochs * spec.epoch_scale();
        let total_steps_f = (total_tokens_f / tokens_per_step as f64).floor();
        if total_steps_f > MAX_TOTAL_STEPS as f64 {
            bail!(
                "key \"epochs\" ({}): {epoch_tokens} tokens per epoch × {} epochs is {total_steps_f:.3e} steps of {} × {} tokens, more than a run may take ({MAX_TOTAL_STEPS}); lower epochs or unique_tokens",
                spec.epochs,
                spec.epochs,
                spec.batch_size,
                spec.seq_len
            );
        }
        let total_tokens = total_tokens_f.floor() as u64;
        let total_steps = total_tokens / tokens_per_step;
        if total_steps == 0 {
            bail!(
                "{epoch_tokens} tokens per epoch (unique tokens + one separator per document) × {} epochs gives {total_tokens} tokens, fewer than one batch of {} × {}: raise unique_tokens or epochs, or lower batch_size",
                spec.epochs,
                spec.batch_size,
                spec.seq_len
            );
        }
        let listed = |key: &str, n: f64| -> Result<()> {
            if n > MAX_LISTED_STEPS as f64 {
                bail!("key \"{key}\": the run would list {n:.3e} of them over {total_steps} steps, more than {MAX_LISTED_STEPS}; evaluate or checkpoint less often");
            }
            Ok(())
        };
        match spec.eval_every {
            Some(every) => listed("eval_every", (total_steps / every) as f64)?,
            None => listed("evals_per_epoch", (spec.epochs * spec.evals_per_epoch as f64).ceil())?,
        }
        listed("epochs", spec.epochs.floor())?;
        if let Some(every) = spec.checkpoint_every {
            listed("checkpoint_every", (total_steps / every) as f64)?;
        }
        Ok((tokens_per_step, total_steps))
    }

    /// The whole plan: [`RunPlan::steps`], evaluation, checkpoint and epoch-end steps.
    /// `unique_tokens` is the budget, `epoch_tokens` one epoch as served (see the module
    /// documentation), `vocab` the token-id layout.
    pub fn new(spec: &TrainSpec, unique_tokens: u64, epoch_tokens: u64, vocab: VocabLayout) -> Result<RunPlan> {
        let (tokens_per_step, total_steps) = RunPlan::steps(spec, epoch_tokens)?;
        let seqs = epoch_tokens / spec.seq_len as u64;
        let steps_per_epoch = epoch_tokens as f64 * spec.epoch_scale() / tokens_per_step as f64;
        let at = |epochs: f64| ((epochs * steps_per_epoch).round() as u64).clamp(1, total_steps);
        let mut epoch_end_steps: Vec<u64> = (1..=spec.epochs.floor() as u64).map(|e| at(e as f64)).collect();
        epoch_end_steps.dedup();
        let mut evals: BTreeSet<u64> = BTreeSet::new();
        match spec.eval_every {
            // Multiples of `every` only: never a walk over every step.
            Some(every) => evals.extend((every..=total_steps).step_by(every as usize)),
            None => {
                let per = spec.evals_per_epoch as f64;
                let n = (spec.epochs * per).ceil() as u64;
                evals.extend((1..=n).map(|k| at(k as f64 / per)));
            }
        }
        evals.extend(&epoch_end_steps);
        evals.insert(total_steps);
        let checkpoints: BTreeSet<u64> = match spec.checkpoint_every {
            Some(every) => (every..=total_steps).step_by(every as usize).chain([total_steps]).collect(),
            None => evals.clone(),
        };
        Ok(RunPlan {
            unique_tokens,
            epoch_tokens,
            sequences_per_epoch: seqs,
            total_steps,
            accumulation_steps: spec.batch_size / spec.micro_batch(),
            tokens_per_step,
            eval_steps: evals.into_iter().collect(),
            checkpoint_steps: checkpoints.into_iter().collect(),
            epoch_end_steps,
            vocab,
            mix_ratio: spec.mix_ratio,
        })
    }

    /// Epochs (passes over the data as served) after `step` steps.
    pub fn epoch_at(&self, step: u64) -> f64 {
        let scale = match self.mix_ratio {
            Some(r) if r < 1.0 => 1.0 / (1.0 - r),
            _ => 1.0,
        };
        (step * self.tokens_per_step) as f64 / (self.epoch_tokens as f64 * scale)
    }
}

/// Tokens of one epoch of the run's data as the sampler serves it (documents + one separator
/// each, summed over the run's own corpus's domains, not the synthetic streams; at mix_ratio = 1, over the streams:
/// the epoch basis `epochs` counts passes over). Asked of a fresh sampler's accounting, once
/// per data fingerprint per process (planning a sweep asks per cell).
pub fn epoch_tokens(data: &RunData) -> Result<u64> {
    static CACHE: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
    let key = &data.manifest.fingerprint;
    if let Some(&n) = CACHE.lock().unwrap().get_or_insert_with(HashMap::new).get(key) {
        return Ok(n);
    }
    let sampler = data.sampler().map_err(anyhow::Error::msg)?;
    // The manifest's domains are the mixture's, in order; streams are the `synthetic` corpora's.
    let streams_basis = data.manifest.mix_ratio == Some(1.0);
    let acc = sampler.accounting();
    let n = acc.domains.iter().zip(&data.manifest.domains).filter(|(_, p)| p.stream == streams_basis).map(|(d, _)| d.epoch_tokens).sum();
    CACHE.lock().unwrap().get_or_insert_with(HashMap::new).insert(key.clone(), n);
    Ok(n)
}

/// The run's token-id layout at planning: the corpus tokenizer's ids, the corpus's special
/// tokens, then the extra tokens the regularizers ask for (asked of short-lived instances),
/// padded to a multiple of 64.
pub fn plan_vocab(data: &RunData, regularizers: &[RegularizerRequest]) -> Result<VocabLayout> {
    let extra = crate::plugin::regularizer::regularizer_extra_tokens(regularizers)?;
    Ok(run_vocab(data, &extra))
}

/// [`VocabLayout::with_corpus_specials`] of the run's special tokens (over all its corpora)
/// and the plugins' extra tokens.
pub fn run_vocab(data: &RunData, plugins: &[(String, i64)]) -> VocabLayout {
    VocabLayout::with_corpus_specials(data.manifest.vocab_size as i64, data.manifest.special_tokens.len() as i64, plugins)
}

/// Bytes a training run of `cfg` holds at its peak, estimated: weights, gradients and AdamW's
/// two moments (plus fp32 master weights in bf16), and the activations autograd keeps for one
/// micro-batch: per layer and token about 10·d_model + 3·d_ff values (norms, q/k/v, attention
/// output, SwiGLU's gate, up and product), the attention weights (n_head × seq_len per token)
/// when a document mask forces the explicit kernel, and the LM head's loss: its logits never
/// exist whole (the chunked head, `train::head`), so a chunk's buffer (at most 256 MiB) and the
/// head's gradient (vocab × d_model, fp32) per pass, plus ∂h (d_model per token). Regularizers
/// that run a second forward (MIR) double the activations. An estimate for refusing absurd
/// sizes, not an allocator.
pub fn training_memory_bytes(cfg: &ModelConfig, spec: &TrainSpec, kind: Kind) -> f64 {
    let params = cfg.total_params() as f64;
    let value_bytes = if kind == Kind::BFloat16 { 2.0 } else { 4.0 };
    let master = if kind == Kind::BFloat16 { 4.0 } else { 0.0 };
    let state = params * (2.0 * value_bytes + master + 8.0);
    let tokens = (spec.micro_batch() * spec.seq_len) as f64;
    let mut per_token = cfg.n_layer as f64 * (10 * cfg.d_model + 3 * cfg.d_ff) as f64 * value_bytes;
    if !spec.cross_doc_attention {
        per_token += (cfg.n_layer * cfg.n_head * spec.seq_len) as f64 * value_bytes;
    }
    per_token += cfg.d_model as f64 * value_bytes;
    let head_chunk_bytes = (256u64 << 20) as f64 + (cfg.vocab_size * cfg.d_model) as f64 * 4.0;
    let passes = if spec.regularizers.is_empty() { 1.0 } else { 2.0 };
    state + passes * (tokens * per_token + head_chunk_bytes)
}

/// Refuses a model whose training cannot fit the device's memory ([`training_memory_bytes`]
/// against the machine's total RAM on the CPU; CUDA devices are not measured here, libtorch
/// reports running out there). The error names the key `model`.
pub fn check_fits_memory(cfg: &ModelConfig, spec: &TrainSpec, device: Device, kind: Kind) -> Result<(), String> {
    match device {
        Device::Cpu => match total_ram_bytes() {
            Some(ram) => check_fits(cfg, spec, kind, ram, "this machine's RAM"),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn check_fits(cfg: &ModelConfig, spec: &TrainSpec, kind: Kind, available_bytes: f64, what: &str) -> Result<(), String> {
    let need = training_memory_bytes(cfg, spec, kind);
    if need > available_bytes {
        return Err(format!(
            "key \"model\": training this model ({:.3e} parameters, micro-batch {} × {}) needs about {:.1} GB of memory, more than {what} ({:.1} GB); choose a smaller model or micro_batch",
            cfg.total_params() as f64,
            spec.micro_batch(),
            spec.seq_len,
            need / 1e9,
            available_bytes / 1e9
        ));
    }
    Ok(())
}

/// `MemTotal` of /proc/meminfo (Linux), in bytes: read once per process (planning a sweep
/// checks every cell against it).
fn total_ram_bytes() -> Option<f64> {
    static TOTAL: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> TrainSpec {
        let mut v = json!({"corpus": "x", "unique_tokens": 100_000, "epochs": 4, "seq_len": 100, "batch_size": 10});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        TrainSpec::from_json(v).unwrap()
    }
    #[test]
    fn plan_counts_steps_epochs_and_evals() {
        // 99,950 tokens → 999 whole sequences of 100; 99.95 steps of 10 sequences per epoch.
        let p = RunPlan::new(&spec(json!({})), 99_950, 99_950, gpt2_layout()).unwrap();
        assert_eq!(p.sequences_per_epoch, 999);
        assert_eq!(p.total_steps, 399); // floor(99,950·4 / (10·100))
        assert_eq!(p.epoch_end_steps, vec![100, 200, 300, 399]);
        assert!(p.eval_steps.contains(&50) && p.eval_steps.contains(&399));
        assert_eq!(p.checkpoint_steps, p.eval_steps);
        let p = RunPlan::new(&spec(json!({"eval_every": 100, "checkpoint_every": 150})), 99_950, 99_950, gpt2_layout()).unwrap();
        assert_eq!(p.eval_steps, vec![100, 200, 300, 399]);
        assert_eq!(p.checkpoint_steps, vec![150, 300, 399]);
        assert!((p.epoch_at(399) - 399_000.0 / 99_950.0).abs() < 1e-12);
    }

    #[test]
    fn plan_refuses_runs_shorter_than_one_batch() {
        let e = RunPlan::new(&spec(json!({"epochs": 0.001})), 100_000, 100_000, gpt2_layout()).unwrap_err().to_string();
        assert!(e.contains("fewer than one batch"), "{e}");
    }

    #[test]
    fn epochs_count_passes_over_the_data_as_served() {
        // 99,000 unique tokens in 2,000 documents: 101,000 tokens per epoch as served; 4
        // epochs are 404,000 tokens, 404 steps of 1,000, and each epoch ends on a pass.
        let p = RunPlan::new(&spec(json!({"evals_per_epoch": 1})), 99_000, 101_000, gpt2_layout()).unwrap();
        assert_eq!(p.total_steps, 404);
        assert_eq!(p.epoch_end_steps, vec![101, 202, 303, 404]);
        assert_eq!(p.eval_steps, vec![101, 202, 303, 404]);
        assert!((p.epoch_at(101) - 1.0).abs() < 1e-12);
        assert!((p.epoch_at(p.total_steps) - 4.0).abs() < 1e-12, "epochs: 4 is four passes");
        // A pass that is not a whole number of batches: the last partial batch is dropped,
        // so the last epoch ends at the run's last step.
        let p = RunPlan::new(&spec(json!({"epochs": 40, "evals_per_epoch": 1})), 10_000, 10_950, gpt2_layout()).unwrap();
        assert_eq!(p.total_steps, 438); // floor(10,950 × 40 / 1,000)
        assert_eq!(*p.epoch_end_steps.last().unwrap(), 438);
        assert!(p.epoch_end_steps.windows(2).all(|w| w[0] < w[1]));
        assert!(4.0 * 10.0 - p.epoch_at(p.total_steps) < 1_000.0 / 10_950.0);
    }

    #[test]
    fn impossible_step_counts_are_refused_naming_the_key() {
        let e = RunPlan::new(&spec(json!({"epochs": 1e300, "eval_every": 1})), 100_000, 100_000, gpt2_layout()).unwrap_err().to_string();
        assert!(e.starts_with("key \"epochs\"") && e.contains("more than a run may take"), "{e}");
        let e = RunPlan::steps(&spec(json!({"epochs": 1e6, "eval_every": 1})), 100_000).unwrap_err().to_string();
        assert!(e.starts_with("key \"eval_every\""), "{e}");
        let e = RunPlan::steps(&spec(json!({"epochs": 1e7})), 100_000).unwrap_err().to_string();
        assert!(e.starts_with("key \"evals_per_epoch\""), "{e}");
        // Two million epoch ends would be listed.
        let p = RunPlan::new(&spec(json!({"epochs": 2e6, "eval_every": 1000, "checkpoint_every": 1000})), 100_000, 100_000, gpt2_layout());
        let e = p.unwrap_err().to_string();
        assert!(e.starts_with("key \"epochs\""), "{e}");
        // Large but possible: 10⁷ steps plan without listing them.
        let p = RunPlan::new(&spec(json!({"epochs": 1e5, "eval_every": 100_000, "checkpoint_every": 100_000})), 100_000, 100_000, gpt2_layout()).unwrap();
        assert_eq!(p.total_steps, 10_000_000);
        assert_eq!(p.checkpoint_steps.len(), 100);
        assert_eq!(p.eval_steps.len(), 100_000, "every epoch end is evaluated");
    }

    #[test]
    fn absurd_models_are_refused_against_memory() {
        let s = spec(json!({"model": {"n_layer": 1000, "d_model": 65_536, "n_head": 64}}));
        let cfg = s.model_config(&gpt2_layout()).unwrap();
        let e = check_fits(&cfg, &s, Kind::Float, 128e9, "RAM").unwrap_err();
        assert!(e.starts_with("key \"model\"") && e.contains("GB"), "{e}");
        let tiny = spec(json!({"model": "tiny"}));
        let cfg = tiny.model_config(&gpt2_layout()).unwrap();
        check_fits(&cfg, &tiny, Kind::Float, 4e9, "RAM").unwrap();
        // Weights, gradients and two moments: 16 bytes a parameter in fp32.
        assert!(training_memory_bytes(&cfg, &tiny, Kind::Float) > 16.0 * cfg.total_params() as f64);
        check_fits_memory(&cfg, &tiny, Device::Cpu, Kind::Float).unwrap();
    }

    #[test]
    fn vocab_layout_puts_plugin_tokens_after_the_tokenizer_and_pads_to_64() {
        let gpt2 = VocabLayout::new(50_257, &[("mir".into(), 1)]);
        assert_eq!((gpt2.extra[0].first_id, gpt2.padded), (50_257, 50_304));
        assert_eq!(VocabLayout::new(50_257, &[]).padded, 50_304);
        let bpe = VocabLayout::new(8192, &[]);
        assert_eq!(bpe.padded, 8192);
        let bpe_mir = VocabLayout::new(8192, &[("zloss".into(), 0), ("mir".into(), 1)]);
        assert_eq!(bpe_mir.extra.len(), 1);
        assert_eq!((bpe_mir.extra[0].first_id, bpe_mir.padded, bpe_mir.used()), (8192, 8256, 8193));
        // A corpus's special tokens come before the plugins' ids.
        let bolt = VocabLayout::with_corpus_specials(50_257, 4, &[("mir".into(), 1)]);
        assert_eq!((bolt.text_ids(), bolt.extra[1].first_id, bolt.used(), bolt.padded), (50_261, 50_261, 50_262, 50_304));
        assert_eq!((bolt.extra[0].plugin.as_str(), bolt.extra[0].first_id), ("corpus", 50_257));
        assert_eq!(VocabLayout::new(8192, &[("mir".into(), 1)]).text_ids(), 8192);
        let w = VocabLayout::new(50_280, &[("mir".into(), 1)]);
        assert_eq!((w.extra[0].first_id, w.padded), (50_280, 50_304));
    }
}
