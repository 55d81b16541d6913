//! What a run produces: its evaluation points ([`EvalPoint`]), its [`RunResult`] (also what
//! `train(#{...})` returns to a script), and the streamed metrics log `metrics.jsonl` it is
//! read back from ([`MetricsLog`], [`read_eval_curve`]).
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use dctk_data::MixAccounting;
use serde::{Deserialize, Serialize};

/// One validation measurement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EvalPoint {
    pub step: u64,
    /// Training tokens seen so far (steps × batch_size × seq_len).
    pub tokens: u64,
    /// Passes over the unique tokens so far.
    pub epoch: f64,
    /// Token-weighted mean over the validation tokens of the run's corpus's domains (the
    /// synthetic streams of `synthetic` are not evaluated).
    pub val_loss: f64,
    /// Validation loss of each domain.
    #[serde(default)]
    pub val_loss_by_domain: BTreeMap<String, f64>,
}

/// What a run produced. Also what `train(#{...})` returns to a script.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub run_id: String,
    pub run_dir: String,
    /// "done" or "diverged".
    pub status: String,
    pub device: String,
    pub precision: String,
    pub threads: i64,
    pub params: i64,
    pub non_embedding_params: i64,
    pub flops_per_token: f64,
    pub unique_tokens: u64,
    pub epochs: f64,
    /// Epochs actually trained (whole batches only): train_tokens / tokens of one epoch as
    /// served (documents + one separator each; see `train::plan`), = the sampler's
    /// `accounting.realized_epochs()`.
    pub epochs_realized: f64,
    pub steps: u64,
    pub tokens_per_step: u64,
    /// Training tokens processed: steps × batch_size × seq_len.
    pub train_tokens: u64,
    pub final_val_loss: f64,
    /// Validation loss of each domain at the last evaluation.
    pub final_val_loss_by_domain: BTreeMap<String, f64>,
    pub best_val_loss: f64,
    pub final_train_loss: f64,
    /// Validation loss at every evaluation, step 0 included.
    pub curve: Vec<EvalPoint>,
    /// Validation loss at the end of each whole epoch (epoch 1, 2, …).
    pub val_loss_by_epoch: Vec<EvalPoint>,
    /// Training throughput of this process (excludes evaluation and checkpoints).
    pub tokens_per_s: f64,
    pub wall_s: f64,
    /// The step this process resumed from, if it resumed.
    pub resumed_from_step: Option<u64>,
    /// Set when every domain reached its `epochs_limit` before the planned steps: the run
    /// stopped at this step.
    pub exhausted_at_step: Option<u64>,
    /// Exact data accounting: per domain its unique tokens, tokens served, realized epochs
    /// (tokens served / (unique tokens + one separator per document)), …; the domains' tokens
    /// served sum to steps × batch_size × seq_len.
    pub accounting: MixAccounting,
    /// Real versus synthetic tokens (see [`super::RealSyntheticAccounting`], whose fields
    /// these are): the real budgets' unique tokens summed.
    #[serde(default)]
    pub real_unique_tokens: u64,
    /// Training tokens served from the real domains; with `synthetic_tokens_seen` it sums
    /// to `train_tokens`.
    #[serde(default)]
    pub real_tokens_seen: u64,
    #[serde(default)]
    pub synthetic_tokens_seen: u64,
    /// Passes over the real budget as served.
    #[serde(default)]
    pub real_epochs: f64,
    /// Passes over the synthetic streams as served, in total and per stream.
    #[serde(default)]
    pub synthetic_epochs: f64,
    #[serde(default)]
    pub synthetic_epochs_by_stream: BTreeMap<String, f64>,
    /// The synthetic fraction of training tokens, asked (0 without synthetic streams) and served.
    #[serde(default)]
    pub mix_ratio: f64,
    #[serde(default)]
    pub mix_ratio_realized: f64,
    /// Kim et al. 2026's synthetic epochs (all training tokens / the streams' size) and
    /// real-token equivalent REAL·epochs + REAL·synth_epochs.
    #[serde(default)]
    pub synthetic_epochs_kim: f64,
    #[serde(default)]
    pub real_tokens_equivalent: f64,
    /// Why the run diverged, when it did.
    #[serde(default)]
    pub divergence: Option<Divergence>,
}

/// Why a run was marked diverged: the first step whose training loss, regularizer auxiliary
/// loss or gradient norm was not finite, and what each was.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    /// The step (1-based: steps completed) whose numbers were not finite.
    pub step: u64,
    /// The first non-finite one: "train loss", "regularizer aux loss" or "grad norm".
    pub cause: String,
    pub train_loss: f64,
    pub aux_loss: Option<f64>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl Divergence {
    /// The divergence of step `step` with these numbers, if any is not finite.
    #[cfg(feature = "torch")]
    pub fn of(step: u64, outcome: &super::step::StepOutcome) -> Option<Divergence> {
        let cause = if !outcome.train_loss.is_finite() {
            "train loss"
        } else if outcome.aux_loss.is_some_and(|a| !a.is_finite()) {
            "regularizer aux loss"
        } else if !outcome.grad_norm.is_finite() {
            "grad norm"
        } else {
            return None;
        };
        Some(Divergence {
            step,
            cause: cause.into(),
            train_loss: outcome.train_loss,
            aux_loss: outcome.aux_loss,
            grad_norm: outcome.grad_norm,
        })
    }

    /// `train loss is NaN (train loss NaN, grad norm inf)`.
    pub fn describe(&self) -> String {
        let value = match self.cause.as_str() {
            "train loss" => self.train_loss,
            "regularizer aux loss" => self.aux_loss.unwrap_or(f64::NAN),
            _ => self.grad_norm,
        };
        let aux = self.aux_loss.map(|a| format!(", regularizer aux loss {a}")).unwrap_or_default();
        format!("{} is {value} (train loss {}{aux}, grad norm {})", self.cause, self.train_loss, self.grad_norm)
    }
}

/// Appends JSON lines to `metrics.jsonl`, flushing each so a killed run loses nothing
/// it reported.
pub struct MetricsLog {
    file: fs::File,
}

impl MetricsLog {
    /// Opens the log, first dropping every record past `keep_through_step` (records a
    /// killed process wrote after its last checkpoint), so the file matches the state.
    pub fn open(path: &Path, keep_through_step: Option<u64>) -> Result<MetricsLog> {
        let keep = keep_through_step.unwrap_or(0);
        if path.exists() {
            let text = fs::read_to_string(path)?;
            let kept: String = text
                .lines()
                .filter(|l| {
                    keep_through_step.is_some()
                        && serde_json::from_str::<serde_json::Value>(l)
                            .ok()
                            .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                            .is_some_and(|s| s <= keep)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            dctk_fs::write_atomic(path, kept.as_bytes())?;
        }
        let file = fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MetricsLog { file })
    }

    pub fn write(&mut self, record: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{record}")?;
        self.file.flush()?;
        Ok(())
    }
}

/// Reads the evaluation records of a run's `metrics.jsonl`.
pub fn read_eval_curve(run_dir: &Path) -> Result<Vec<EvalPoint>> {
    let path = run_dir.join("metrics.jsonl");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: bad JSON", path.display(), i + 1))?;
        if v.get("kind").and_then(|k| k.as_str()) == Some("eval") {
            points.push(serde_json::from_value(v).with_context(|| format!("{}:{}", path.display(), i + 1))?);
        }
    }
    Ok(points)
}


/// The last training loss logged in a run's `metrics.jsonl` (a run resumed at its very end
/// takes its final training loss from there).
pub fn last_train_loss(run_dir: &Path) -> Option<f64> {
    let text = fs::read_to_string(run_dir.join("metrics.jsonl")).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v.get("kind")?.as_str()? == "train").then(|| v.get("loss")?.as_f64())?
    })
}

impl RunResult {
    /// Copies the real-versus-synthetic accounting into the result's flat fields.
    pub fn with_real_synthetic(self, a: &super::RealSyntheticAccounting) -> RunResult {
        RunResult {
            real_unique_tokens: a.real_unique_tokens,
            real_tokens_seen: a.real_tokens_seen,
            synthetic_tokens_seen: a.synthetic_tokens_seen,
            real_epochs: a.real_epochs,
            synthetic_epochs: a.synthetic_epochs,
            synthetic_epochs_by_stream: a.synthetic_epochs_by_stream.clone(),
            mix_ratio: a.mix_ratio,
            mix_ratio_realized: a.mix_ratio_realized,
            synthetic_epochs_kim: a.synthetic_epochs_kim,
            real_tokens_equivalent: a.real_tokens_equivalent,
            ..self
        }
    }
}
