//! Training-throughput benchmark: the trainer's own step ([`train_step`]: forward, loss,
//! regularizers, backward, clip, AdamW) in a loop on random token ids, timed after warm-up. `dctk bench train` runs this side by side with the
//! PyTorch reference (`bench/train_ref.py`), which builds the same model in PyTorch eager.
//!
//! Random ids are fine for throughput: the cost of a step does not depend on the values.
//! [`generate_tokens_per_s`] is the decoding side of `dctk bench generate`; [`augment`] is
//! `dctk bench augment` (augmenter cells against raw generation and through `dctk serve`);
//! [`report`] is the synthetic study of `dctk bench report`.
pub mod augment;
pub mod report;

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use tch::{nn, Device, Kind, Tensor};

use crate::train::model::Gpt;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::{train_step, BatchTensors, ModelConfig, StepSettings};

#[derive(Clone, Debug)]
pub struct TrainBench {
    pub config: ModelConfig,
    pub batch_size: i64,
    pub seq_len: i64,
    pub warmup_steps: usize,
    pub steps: usize,
    pub device: Device,
    pub kind: Kind,
    /// Regularizer plugins applied each step (e.g. MIR), as in a training run.
    pub regularizers: Vec<crate::plugin::regularizer::RegularizerRequest>,
}

/// What [`train_stats`] measures: tokens per second (median step time over the timed
/// steps) and this process's minor page faults per timed step (`getrusage` ru_minflt
/// around the timed part of each timed step; `None` where there is no getrusage).
#[derive(Clone, Copy, Debug)]
pub struct TrainStats {
    pub tokens_per_s: f64,
    pub minor_faults_per_step: Option<f64>,
}

/// This process's resource usage so far (`getrusage(RUSAGE_SELF)`).
fn rusage_self() -> Option<libc::rusage> {
    #[cfg(unix)]
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0 {
            return Some(u);
        }
    }
    None
}

/// Minor page faults of this process so far.
pub fn minor_faults() -> Option<i64> {
    rusage_self().map(|u| u.ru_minflt as i64)
}

/// Peak resident set of this process so far, KiB (ru_maxrss on Linux).
pub fn peak_rss_kib() -> Option<i64> {
    rusage_self().map(|u| u.ru_maxrss as i64)
}

/// Tokens per second of training steps ([`train_step`]), median over the timed steps.
pub fn train_tokens_per_s(b: &TrainBench) -> Result<f64> {
    Ok(train_stats(b)?.tokens_per_s)
}

/// [`train_tokens_per_s`] with the minor page faults per timed step.
pub fn train_stats(b: &TrainBench) -> Result<TrainStats> {
    if b.steps == 0 {
        anyhow::bail!("a training benchmark needs at least one timed step (steps = 0)");
    }
    tch::manual_seed(0);
    let mut vs = nn::VarStore::new(b.device);
    let model = Gpt::new(&vs, &b.config, 0.0);
    if b.kind != Kind::Float {
        vs.set_kind(b.kind);
    }
    let mut regs = crate::plugin::regularizer::load_regularizers(&b.regularizers, 0)?;
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut opt = AdamW::new(vars, AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });
    let vocab = crate::train::model::GPT2_VOCAB;
    let settings = StepSettings { seed: 0, micro_batch: b.batch_size, accumulation_steps: 1, grad_clip: 1.0, base_vocab: vocab };
    let mut times = Vec::new();
    let mut faults = Some(0i64);
    for i in 0..b.warmup_steps + b.steps {
        let x = Tensor::randint(vocab, [b.batch_size, b.seq_len], (Kind::Int64, b.device));
        let y = Tensor::randint(vocab, [b.batch_size, b.seq_len], (Kind::Int64, b.device));
        let batch = BatchTensors::from_ids(x, y);
        let f0 = minor_faults();
        let t0 = Instant::now();
        // The step reads its losses and the gradient norm back to the host, which
        // synchronises CUDA like the reference's .item().
        train_step(&model, &mut opt, &mut regs, &batch, i as u64, 1e-3, &settings)?.read();
        if i >= b.warmup_steps {
            times.push(t0.elapsed().as_secs_f64());
            faults = match (faults, f0, minor_faults()) {
                (Some(sum), Some(a), Some(z)) => Some(sum + z - a),
                _ => None,
            };
        }
    }
    times.sort_by(|a, c| a.partial_cmp(c).unwrap());
    let median = times[times.len() / 2];
    Ok(TrainStats {
        tokens_per_s: (b.batch_size * b.seq_len) as f64 / median,
        minor_faults_per_step: faults.map(|f| f as f64 / b.steps as f64),
    })
}

/// Decode throughput of a loaded model: `batch` prompts of `prompt_tokens` random ids (ids
/// of the tokenizer, seeded), each continued greedily for exactly `new_tokens` tokens
/// (end-of-text ignored, so every side generates the same count). Returns generated
/// tokens per second of wall time, prefill included (as `transformers`' `generate` is
/// timed in `bench/hf_generate.py`).
pub fn generate_tokens_per_s(model: &crate::generate::LoadedModel, batch: usize, prompt_tokens: usize, new_tokens: usize, kv_cache: bool) -> Result<f64> {
    use crate::generate::{DecodeOptions, Flow, GenRequest, SamplingParams};
    tch::manual_seed(0);
    let ids = Tensor::randint(model.vocab.base, [batch as i64, prompt_tokens as i64], (Kind::Int64, Device::Cpu));
    let ids: Vec<i64> = Vec::<i64>::try_from(ids.view([-1]))?;
    let params = SamplingParams { max_tokens: new_tokens, temperature: 0.0, ignore_eot: true, ..Default::default() };
    let requests: Vec<GenRequest> = ids
        .chunks(prompt_tokens)
        .map(|row| GenRequest { prompt: row.iter().map(|&t| t as u32).collect(), params: params.clone() })
        .collect();
    let t0 = Instant::now();
    let out = model.generate_with(&requests, DecodeOptions { kv_cache }, &mut |_| Flow::Continue)?;
    let seconds = t0.elapsed().as_secs_f64();
    let generated: usize = out.iter().map(|c| c.tokens.len()).sum();
    Ok(generated as f64 / seconds)
}
