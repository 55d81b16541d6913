//! The training step: the one place a batch becomes an optimizer update. The trainer, the
//! benchmarks (`dctk bench train`, `dctk bench regularizer`) and the loader benchmark test
//! all call [`train_step`], so what is timed is what trains.
//!
//! One step: zero the gradients; per micro-batch (gradient accumulation), reseed dropout from
//! (seed, step, micro), let the regularizers rewrite the batch (`transform_batch`), forward
//! (with the document mask when documents must not see each other), the cross-entropy, the
//! regularizers' auxiliary loss, backward of (loss + aux) / accumulation steps; then clip the
//! global gradient norm and take one AdamW step. The cross-entropy goes through the fused,
//! chunked head ([`super::head`]); nothing is read back to the host before the step ends.
use std::collections::BTreeMap;

use anyhow::Result;
use dctk_data::Batch;
use tch::{Device, Kind, Tensor};

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

/// What a step leaves on the device until it is read: the summed main and auxiliary
/// losses over the micro-batches, and the gradient norm before clipping.
pub struct PendingStep {
    loss_sum: Tensor,
    aux_sum: Option<Tensor>,
    grad_norm: Tensor,
    accumulation: i64,
    metrics: BTreeMap<String, f64>,
}

impl PendingStep {
    /// The step's numbers on the host: one device-to-host copy of three scalars.
    pub fn read(self) -> StepOutcome {
        let has_aux = self.aux_sum.is_some();
        let device = self.loss_sum.device();
        let aux = self.aux_sum.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, device)));
        let packed = Tensor::stack(&[self.loss_sum.to_kind(Kind::Double), aux.to_kind(Kind::Double), self.grad_norm.to_kind(Kind::Double)], 0);
        let v: Vec<f64> = Vec::<f64>::try_from(packed.to_device(Device::Cpu)).unwrap_or_else(|_| vec![f64::NAN; 3]);
        let n = self.accumulation as f64;
        StepOutcome { train_loss: v[0] / n, aux_loss: has_aux.then(|| v[1] / n), grad_norm: v[2], metrics: self.metrics }
    }
}

/// One optimizer step at learning rate `lr` on `batch` (step `step` of the run; 0-based).
///
/// The step reads nothing back from the device (nanoGPT's rule: the host syncs only to
/// log): the losses accumulate in device scalars and clipping scales the gradients by a
/// device-side coefficient. The caller reads what it logs with [`PendingStep::read`], one
/// device-to-host copy. (A regularizer plugin that logs metrics reads its own.)
pub fn train_step(
    model: &Gpt,
    opt: &mut AdamW,
    regs: &mut RegularizerSet,
    batch: &BatchTensors,
    step: u64,
    lr: f64,
    s: &StepSettings,
) -> Result<PendingStep> {
    let accumulation = s.accumulation_steps;
    opt.zero_grad();
    let mut loss_sum: Option<Tensor> = None;
    let mut aux_sum: Option<Tensor> = None;
    let mut metrics: BTreeMap<String, f64> = BTreeMap::new();
    for m in 0..accumulation {
        let mb = batch.rows(m * s.micro_batch, s.micro_batch);
        tch::manual_seed(step_seed(s.seed, step, m));
        let (x, y) = if regs.is_empty() {
            (mb.x.shallow_clone(), mb.y.shallow_clone())
        } else {
            regs.transform_batch(step, m as u64, s.base_vocab, &mb.x, &mb.y)?
        };
        // The head's loss fused and chunked: the [rows·T, vocab] logits are never held.
        let hidden = model.forward_hidden(&x, mb.mask.as_ref(), true);
        let loss = model.head_loss(&hidden, &y);
        accumulate(&mut loss_sum, &loss);
        // The regularizers' terms (MIR: λ·CE of a second forward on masked inputs
        // against the same targets) join the loss before backward.
        let total = if regs.is_empty() {
            loss
        } else {
            let view = MicroBatch { step, micro: m as u64, base_vocab: s.base_vocab, inputs: &x, targets: &y, hidden: Some(&hidden) };
            let aux = regs.aux_loss(model, &view, &mut |ids| model.forward_hidden(ids, mb.mask.as_ref(), true))?;
            for (k, v) in aux.metrics {
                *metrics.entry(k).or_default() += v / accumulation as f64;
            }
            match aux.loss {
                Some(a) => {
                    accumulate(&mut aux_sum, &a);
                    loss + a
                }
                None => loss,
            }
        };
        (&total / accumulation as f64).backward();
    }
    let grad_norm = opt.clip_grad_norm_on_device(s.grad_clip);
    opt.step(lr);
    let device = batch.x.device();
    Ok(PendingStep {
        loss_sum: loss_sum.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, device))),
        aux_sum,
        grad_norm,
        accumulation,
        metrics,
    })
}

/// `sum += value` for a detached device scalar, starting from nothing.
fn accumulate(sum: &mut Option<Tensor>, value: &Tensor) {
    let v = value.detach().to_kind(Kind::Float);
    *sum = Some(match sum.take() {
        None => v,
        Some(s) => s + v,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of `fn name` in `src`, up to the next item at the same indentation.
    fn body<'a>(src: &'a str, signature: &str) -> &'a str {
        let start = src.find(signature).unwrap_or_else(|| panic!("{signature} not found"));
        let indent = src[..start].rsplit('\n').next().unwrap_or("");
        let end = src[start..].find(&format!("\n{indent}}}\n")).map_or(src.len(), |e| start + e);
        &src[start..end]
    }

    /// nanoGPT's rule, by construction: nothing in the step, the head's loss, clipping or
    /// the optimizer update reads a tensor back to the host; the step's only read is
    /// `PendingStep::read`, of what the log records.
    #[test]
    fn the_step_reads_nothing_back_before_it_ends() {
        let step = include_str!("step.rs");
        let optim = include_str!("optim.rs");
        let head = include_str!("head.rs");
        let bodies = [
            ("train_step", body(step, "pub fn train_step(")),
            ("accumulate", body(step, "fn accumulate(")),
            ("clip_grad_norm_on_device", body(optim, "pub fn clip_grad_norm_on_device(")),
            ("AdamW::step", body(optim, "pub fn step(&mut self, lr: f64)")),
            ("head::cross_entropy_chunked", body(head, "pub fn cross_entropy_chunked(")),
        ];
        let reads = ["double_value", "int64_value", "try_from", "copy_data", ".item(", "to_device(Device::Cpu)", ".to(Device::Cpu)", "clip_grad_norm(", "print"];
        for (name, text) in bodies {
            assert!(text.len() > 150, "{name}: body not found whole ({} bytes)", text.len());
            for read in reads {
                assert!(!text.contains(read), "{name} reads back to the host: `{read}`");
            }
        }
        assert!(body(step, "pub fn read(self)").contains("try_from"), "the one read moved");
    }

    #[test]
    fn step_seeds_differ() {
        assert_ne!(step_seed(0, 1, 0), step_seed(0, 2, 0));
        assert_ne!(step_seed(0, 1, 0), step_seed(0, 1, 1));
        assert!(step_seed(5, 9, 0) >= 0);
    }
}
