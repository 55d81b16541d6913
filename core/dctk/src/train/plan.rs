//! `RunPlan`: how a run is laid out in steps (total steps, gradient accumulation, evaluation,
//! checkpoint and epoch-end steps), derived from the spec and the data and recorded in the
//! cell's manifest. Pure arithmetic: no tensors, no files.
use std::collections::BTreeSet;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::spec::TrainSpec;

/// How a run is laid out in steps: derived from the spec and the data, recorded in
/// the manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunPlan {
    /// The unique-token budget one epoch passes over.
    pub unique_tokens: u64,
    /// Whole sequences of seq_len tokens in one epoch: unique_tokens / seq_len.
    pub sequences_per_epoch: u64,
    pub total_steps: u64,
    pub accumulation_steps: i64,
    pub tokens_per_step: u64,
    pub eval_steps: Vec<u64>,
    pub checkpoint_steps: Vec<u64>,
    /// Steps at which each whole epoch ends.
    pub epoch_end_steps: Vec<u64>,
}

impl RunPlan {
    /// (tokens per step, total steps): total_steps = floor(unique_tokens × epochs /
    /// (batch_size × seq_len)), at least one. Cheap: planning a sweep calls it per cell.
    pub fn steps(spec: &TrainSpec, unique_tokens: u64) -> Result<(u64, u64)> {
        let tokens_per_step = (spec.batch_size * spec.seq_len) as u64;
        let total_tokens = (unique_tokens as f64 * spec.epochs).floor() as u64;
        let total_steps = total_tokens / tokens_per_step;
        if total_steps == 0 {
            bail!(
                "unique_tokens × epochs gives {total_tokens} tokens, fewer than one batch of {} × {}: raise unique_tokens or epochs, or lower batch_size",
                spec.batch_size,
                spec.seq_len
            );
        }
        Ok((tokens_per_step, total_steps))
    }

    /// The whole plan: [`RunPlan::steps`], evaluation, checkpoint and epoch-end steps.
    pub fn new(spec: &TrainSpec, unique_tokens: u64) -> Result<RunPlan> {
        let (tokens_per_step, total_steps) = RunPlan::steps(spec, unique_tokens)?;
        let seqs = unique_tokens / spec.seq_len as u64;
        let steps_per_epoch = unique_tokens as f64 / tokens_per_step as f64;
        let at = |epochs: f64| ((epochs * steps_per_epoch).round() as u64).clamp(1, total_steps);
        let epoch_end_steps: Vec<u64> = (1..=spec.epochs.floor() as u64)
            .map(|e| at(e as f64))
            .filter(|&s| (s as f64) <= total_steps as f64)
            .collect();
        let mut evals: BTreeSet<u64> = BTreeSet::new();
        match spec.eval_every {
            Some(every) => evals.extend((1..=total_steps).filter(|s| s % every == 0)),
            None => {
                let per = spec.evals_per_epoch as f64;
                let n = (spec.epochs * per).ceil() as u64;
                evals.extend((1..=n).map(|k| at(k as f64 / per)));
            }
        }
        evals.extend(&epoch_end_steps);
        evals.insert(total_steps);
        let checkpoints: BTreeSet<u64> = match spec.checkpoint_every {
            Some(every) => (1..=total_steps).filter(|s| s % every == 0).chain([total_steps]).collect(),
            None => evals.clone(),
        };
        Ok(RunPlan {
            unique_tokens,
            sequences_per_epoch: seqs,
            total_steps,
            accumulation_steps: spec.batch_size / spec.micro_batch(),
            tokens_per_step,
            eval_steps: evals.into_iter().collect(),
            checkpoint_steps: checkpoints.into_iter().collect(),
            epoch_end_steps,
        })
    }

    pub fn epoch_at(&self, step: u64) -> f64 {
        (step * self.tokens_per_step) as f64 / self.unique_tokens as f64
    }
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
        let p = RunPlan::new(&spec(json!({})), 99_950).unwrap();
        assert_eq!(p.sequences_per_epoch, 999);
        assert_eq!(p.total_steps, 399); // floor(99,950·4 / (10·100))
        assert_eq!(p.epoch_end_steps, vec![100, 200, 300, 399]);
        assert!(p.eval_steps.contains(&50) && p.eval_steps.contains(&399));
        assert_eq!(p.checkpoint_steps, p.eval_steps);
        let p = RunPlan::new(&spec(json!({"eval_every": 100, "checkpoint_every": 150})), 99_950).unwrap();
        assert_eq!(p.eval_steps, vec![100, 200, 300, 399]);
        assert_eq!(p.checkpoint_steps, vec![150, 300, 399]);
        assert!((p.epoch_at(399) - 399_000.0 / 99_950.0).abs() < 1e-12);
    }

    #[test]
    fn plan_refuses_runs_shorter_than_one_batch() {
        let e = RunPlan::new(&spec(json!({"epochs": 0.001})), 100_000).unwrap_err().to_string();
        assert!(e.contains("fewer than one batch"), "{e}");
    }
}
