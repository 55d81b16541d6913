//! The training step: the one place a batch becomes an optimizer update. The trainer, the
//! benchmarks (`dctk bench train`, `dctk bench regularizer`) and the loader benchmark test
//! all call [`train_step`], so what is timed is what trains.
//!
//! One step: zero the gradients; per micro-batch (gradient accumulation), reseed dropout from
//! (seed, step, micro), let the regularizers rewrite the batch (`transform_batch`), forward
//! (with the document mask when documents must not see each other), the cross-entropy, the
//! regularizers' auxiliary loss, backward of (loss + aux) / accumulation steps; then clip the
//! global gradient norm and take one AdamW step.
use std::collections::BTreeMap;

use anyhow::Result;
use dctk_data::Batch;
use tch::{Device, Tensor};

use super::model::Gpt;
use super::optim::AdamW;
use crate::plugin::regularizer::{MicroBatch, RegularizerSet};

/// A batch as tensors: inputs and targets [rows, T] and, without cross-document attention,
/// the block-diagonal causal mask [rows, 1, T, T].
pub struct BatchTensors {
    pub x: Tensor,
    pub y: Tensor,
    pub mask: Option<Tensor>,
    pub rows: i64,
}

impl BatchTensors {
    pub fn new(batch: &Batch, device: Device) -> BatchTensors {
        let (rows, t) = (batch.batch_size as i64, batch.seq_len as i64);
        let all = Tensor::from_slice(&batch.tokens_i64()).view([rows, t + 1]);
        let x = all.narrow(1, 0, t).contiguous().to(device);
        let y = all.narrow(1, 1, t).contiguous().to(device);
        let mask = (!batch.cross_doc_attention).then(|| {
            let seg: Vec<i64> = (0..batch.batch_size)
                .flat_map(|i| batch.segment_ids(i).into_iter().take(batch.seq_len).map(i64::from))
                .collect();
            // Built on the device: a [rows, 1, T, T] mask is T times the size of the ids.
            Gpt::document_mask(&Tensor::from_slice(&seg).view([rows, t]).to(device))
        });
        BatchTensors { x, y, mask, rows }
    }

    /// Inputs and targets [rows, T] given as tensors (the benchmarks' random ids), attention
    /// across the whole row.
    pub fn from_ids(x: Tensor, y: Tensor) -> BatchTensors {
        let rows = x.size()[0];
        BatchTensors { x, y, mask: None, rows }
    }

    /// Rows `start .. start + n`.
    pub fn rows(&self, start: i64, n: i64) -> BatchTensors {
        BatchTensors {
            x: self.x.narrow(0, start, n),
            y: self.y.narrow(0, start, n).contiguous(),
            mask: self.mask.as_ref().map(|m| m.narrow(0, start, n)),
            rows: n,
        }
    }
}

/// What a step needs besides the model, the optimizer and the batch: fixed for a run.
#[derive(Clone, Copy, Debug)]
pub struct StepSettings {
    /// The run's seed: dropout is reseeded from (seed, step, micro).
    pub seed: u64,
    /// Rows per forward pass; the batch's rows are `micro_batch × accumulation_steps`.
    pub micro_batch: i64,
    pub accumulation_steps: i64,
    /// Global-norm clipping threshold (0 disables).
    pub grad_clip: f64,
    /// The ids text encodes to (the tokenizer's vocabulary and the corpus's special tokens,
    /// [`super::model::VocabLayout::text_ids`]): regularizers number their extra tokens from it.
    pub base_vocab: i64,
}

/// What one step measured.
#[derive(Clone, Debug, Default)]
pub struct StepOutcome {
    /// Mean cross-entropy of the main forward passes over the micro-batches.
    pub train_loss: f64,
    /// Mean of the regularizers' summed auxiliary loss over the micro-batches, if any plugin
    /// added a term.
    pub aux_loss: Option<f64>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The regularizers' metrics (`<plugin>/<name>`), averaged over the micro-batches.
    pub metrics: BTreeMap<String, f64>,
}

/// Dropout seed of one micro-batch: a pure function of (seed, step, micro), so a
/// resumed run draws the same masks as an uninterrupted one.
pub fn step_seed(seed: u64, step: u64, micro: i64) -> i64 {
    let mut h = blake3::Hasher::new();
    h.update(b"dctk/step-rng");
    h.update(&seed.to_le_bytes());
    h.update(&step.to_le_bytes());
    h.update(&micro.to_le_bytes());
    (u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap()) >> 1) as i64
}

/// One optimizer step at learning rate `lr` on `batch` (step `step` of the run; 0-based).
pub fn train_step(
    model: &Gpt,
    opt: &mut AdamW,
    regs: &mut RegularizerSet,
    batch: &BatchTensors,
    step: u64,
    lr: f64,
    s: &StepSettings,
) -> Result<StepOutcome> {
    let accumulation = s.accumulation_steps;
    opt.zero_grad();
    let mut loss_sum = 0.0;
    let mut aux_sum: Option<f64> = None;
    let mut metrics: BTreeMap<String, f64> = BTreeMap::new();
    for m in 0..accumulation {
        let mb = batch.rows(m * s.micro_batch, s.micro_batch);
        tch::manual_seed(step_seed(s.seed, step, m));
        let (x, y) = if regs.is_empty() {
            (mb.x.shallow_clone(), mb.y.shallow_clone())
        } else {
            regs.transform_batch(step, m as u64, s.base_vocab, &mb.x, &mb.y)?
        };
        let logits = model.forward_masked(&x, mb.mask.as_ref(), true);
        let loss = Gpt::loss(&logits, &y);
        loss_sum += loss.double_value(&[]);
        // The regularizers' terms (MIR: λ·CE of a second forward on masked inputs
        // against the same targets) join the loss before backward.
        let total = if regs.is_empty() {
            loss
        } else {
            let view = MicroBatch { step, micro: m as u64, base_vocab: s.base_vocab, inputs: &x, targets: &y, logits: Some(&logits) };
            let aux = regs.aux_loss(&view, &mut |ids| model.forward_masked(ids, mb.mask.as_ref(), true))?;
            for (k, v) in aux.metrics {
                *metrics.entry(k).or_default() += v / accumulation as f64;
            }
            match aux.loss {
                Some(a) => {
                    *aux_sum.get_or_insert(0.0) += a.double_value(&[]);
                    loss + a
                }
                None => loss,
            }
        };
        (&total / accumulation as f64).backward();
    }
    let grad_norm = opt.clip_grad_norm(s.grad_clip);
    opt.step(lr);
    Ok(StepOutcome {
        train_loss: loss_sum / accumulation as f64,
        aux_loss: aux_sum.map(|a| a / accumulation as f64),
        grad_norm,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_seeds_differ() {
        assert_ne!(step_seed(0, 1, 0), step_seed(0, 2, 0));
        assert_ne!(step_seed(0, 1, 0), step_seed(0, 1, 1));
        assert!(step_seed(5, 9, 0) >= 0);
    }
}
