//! The training loop: many epochs over a fixed unique-token budget, with validation
//! during training, streamed metrics, checkpoints and exact resume.
//!
//! The trainer takes a spec, the run's data (an open corpus and the mixture to sample, see
//! [`crate::corpus`]) and a run directory; it knows nothing about scripts or files beyond its
//! own run directory. Batches come from `dctk_data::Sampler::next_batch`, whose state is
//! checkpointed with the weights; per-domain validation losses are logged at every
//! evaluation; the sampler's exact per-domain accounting goes into the result and is checked
//! against steps × batch_size × seq_len. One call of [`train`] either finishes the run,
//! resumes it from its checkpoint and finishes it, or reports divergence.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::checkpoint::{self, CheckpointState};
use super::model::{Gpt, GPT2_VOCAB};
use super::optim::{AdamW, AdamWConfig};
use super::spec::TrainSpec;
use crate::corpus::{describe, val_batches, RunData};
use dctk_data::{Batch, DataError, MixAccounting};
use crate::env;
use crate::plugin::regularizer::MicroBatch;
use crate::study::{write_ron_atomic, Status};

/// One validation measurement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EvalPoint {
    pub step: u64,
    /// Training tokens seen so far (steps × batch_size × seq_len).
    pub tokens: u64,
    /// Passes over the unique tokens so far.
    pub epoch: f64,
    /// Token-weighted mean over the domains' validation tokens.
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
    /// Epochs actually trained (whole batches only): train_tokens / unique_tokens.
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
}

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

    fn epoch_at(&self, step: u64) -> f64 {
        (step * self.tokens_per_step) as f64 / self.unique_tokens as f64
    }
}

/// Options that change how a run executes but not its numbers.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Print one JSON object per step and evaluation on stdout (`{"event": "step", ...}`):
    /// how a cell process reports progress to the `dctk run` that launched it.
    pub progress_json: bool,
    /// Stop (as if killed) after this many steps of this process: for tests and demos
    /// of resume. The run is left resumable, not finished.
    pub stop_after_steps: Option<u64>,
    /// Set (by Ctrl-C or `--fail-fast`) to stop: the run checkpoints where it is and
    /// returns [`StoppedEarly`], so no finished step is lost.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The run stopped before its end, on request (`--stop-after-steps`) or on
/// cancellation: it is left resumable, not failed.
#[derive(Debug)]
pub struct StoppedEarly {
    pub steps: u64,
    pub cancelled: bool,
}

impl std::fmt::Display for StoppedEarly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cancelled {
            write!(f, "cancelled after {} steps, checkpointed; rerun to resume", self.steps)
        } else {
            write!(f, "stopped after {} steps as requested (--stop-after-steps); rerun to resume", self.steps)
        }
    }
}

impl std::error::Error for StoppedEarly {}

/// Dropout seed of one micro-batch: a pure function of (seed, step, micro), so a
/// resumed run draws the same masks as an uninterrupted one.
fn step_seed(seed: u64, step: u64, micro: i64) -> i64 {
    let mut h = blake3::Hasher::new();
    h.update(b"dctk/step-rng");
    h.update(&seed.to_le_bytes());
    h.update(&step.to_le_bytes());
    h.update(&micro.to_le_bytes());
    (u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap()) >> 1) as i64
}

/// Resolved device and precision for a spec.
pub fn resolve_placement(spec: &TrainSpec) -> Result<(Device, Kind)> {
    let device = env::resolve_device(&spec.device).map_err(anyhow::Error::msg)?;
    let kind = match (spec.precision.as_str(), device) {
        ("bf16", _) => Kind::BFloat16,
        ("fp32", _) => Kind::Float,
        (_, Device::Cuda(_)) => Kind::BFloat16,
        _ => Kind::Float,
    };
    Ok((device, kind))
}

pub fn precision_name(kind: Kind) -> &'static str {
    if kind == Kind::BFloat16 {
        "bf16"
    } else {
        "fp32"
    }
}

/// A batch as tensors: inputs and targets [rows, T] and, without cross-document attention,
/// the block-diagonal causal mask [rows, 1, T, T].
struct BatchTensors {
    x: Tensor,
    y: Tensor,
    mask: Option<Tensor>,
    rows: i64,
}

impl BatchTensors {
    fn new(batch: &Batch, device: Device) -> BatchTensors {
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

    /// Rows `start .. start + n`.
    fn rows(&self, start: i64, n: i64) -> BatchTensors {
        BatchTensors {
            x: self.x.narrow(0, start, n),
            y: self.y.narrow(0, start, n).contiguous(),
            mask: self.mask.as_ref().map(|m| m.narrow(0, start, n)),
            rows: n,
        }
    }
}

/// Validation loss: per domain the mean over its fixed validation windows, and the
/// token-weighted mean over all domains.
fn evaluate(model: &Gpt, val: &[(String, Vec<BatchTensors>)]) -> (f64, BTreeMap<String, f64>) {
    let (mut total, mut count) = (0.0, 0i64);
    let mut by_domain = BTreeMap::new();
    tch::no_grad(|| {
        for (name, batches) in val {
            let (mut dt, mut dc) = (0.0, 0i64);
            for b in batches {
                let loss = Gpt::loss(&model.forward_masked(&b.x, b.mask.as_ref(), false), &b.y).double_value(&[]);
                dt += loss * b.rows as f64;
                dc += b.rows;
            }
            by_domain.insert(name.clone(), dt / dc as f64);
            total += dt;
            count += dc;
        }
    });
    (total / count as f64, by_domain)
}

/// Appends JSON lines to `metrics.jsonl`, flushing each so a killed run loses nothing
/// it reported.
struct MetricsLog {
    file: fs::File,
}

impl MetricsLog {
    /// Opens the log, first dropping every record past `keep_through_step` (records a
    /// killed process wrote after its last checkpoint), so the file matches the state.
    fn open(path: &Path, keep_through_step: Option<u64>) -> Result<MetricsLog> {
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
            crate::study::write_atomic(path, kept.as_bytes())?;
        }
        let file = fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MetricsLog { file })
    }

    fn write(&mut self, record: serde_json::Value) -> Result<()> {
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

/// Trains (or resumes) the run in `run_dir`. The caller has written the manifest.
pub fn train(spec: &TrainSpec, data: &RunData, run_id: &str, run_dir: &Path, opts: &ExecOptions) -> Result<RunResult> {
    let started = Instant::now();
    if let Some(t) = spec.threads {
        tch::set_num_threads(t);
    }
    let (device, kind) = resolve_placement(spec)?;
    let cfg = spec.model_config().map_err(anyhow::Error::msg)?;
    let plan = RunPlan::new(spec, spec.unique_tokens)?;
    let micro = spec.micro_batch();
    let fingerprint = &data.manifest.fingerprint;
    let mut sampler = data.corpus.sampler(&data.mix).map_err(|e| anyhow::anyhow!("data mixture: {}", describe(&e)))?;
    let val: Vec<(String, Vec<BatchTensors>)> = val_batches(data, micro as usize)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .map(|(name, batches)| (name, batches.iter().map(|b| BatchTensors::new(b, device)).collect()))
        .collect();

    tch::manual_seed(spec.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let model = Gpt::new(&vs, &cfg, spec.dropout);
    if kind != Kind::Float {
        vs.set_kind(kind);
    }
    // Regularizer plugins (MIR, z-loss, ...): loaded once, seeded from the run's seed;
    // any tokens they add (MIR's MASK) must fit in the padded vocabulary.
    let mut regs = crate::plugin::regularizer::load_regularizers(&spec.regularizers, spec.seed)?;
    regs.check_vocab(GPT2_VOCAB, cfg.vocab_size)?;
    let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut opt = AdamW::new(
        variables,
        AdamWConfig { beta1: spec.beta1, beta2: spec.beta2, eps: spec.adam_eps, weight_decay: spec.weight_decay },
    );

    // Resume from the latest checkpoint, if there is one for this run and this data.
    let mut start_step = 0u64;
    let mut resumed_from_step = None;
    if let Some(dir) = checkpoint::find(run_dir) {
        let state = checkpoint::read_state(&dir)?;
        if state.run_id != run_id || &state.data_fingerprint != fingerprint {
            bail!(
                "{}: checkpoint belongs to run {} with data {}, not this run ({run_id}); remove the directory to start over",
                dir.display(),
                state.run_id,
                &state.data_fingerprint[..16.min(state.data_fingerprint.len())]
            );
        }
        let Some(sampler_state) = state.sampler.clone() else {
            bail!("{}: checkpoint has no sampler state (written by an older dctk); remove the directory to start over", dir.display());
        };
        sampler.restore(sampler_state).map_err(|e| anyhow::anyhow!("{}/state.ron: {}", dir.display(), describe(&e)))?;
        if sampler.step() != state.step {
            bail!("{}/state.ron: sampler is at step {} but the model at step {}", dir.display(), sampler.step(), state.step);
        }
        checkpoint::load(&dir, &mut vs, &mut opt, &state)?;
        start_step = state.step;
        resumed_from_step = Some(state.step);
    }
    Status::Running.write(run_dir)?;
    let mut log = MetricsLog::open(&run_dir.join("metrics.jsonl"), resumed_from_step)?;
    let schedule = spec.schedule(plan.total_steps);
    let eval_steps: BTreeSet<u64> = plan.eval_steps.iter().copied().collect();
    let ckpt_steps: BTreeSet<u64> = plan.checkpoint_steps.iter().copied().collect();
    let eval_record = |log: &mut MetricsLog, model: &Gpt, step: u64| -> Result<f64> {
        let (val_loss, by_domain) = evaluate(model, &val);
        log.write(serde_json::json!({
            "kind": "eval", "step": step, "tokens": step * plan.tokens_per_step, "epoch": plan.epoch_at(step),
            "val_loss": val_loss, "val_loss_by_domain": by_domain,
        }))?;
        Ok(val_loss)
    };

    let bar = if opts.progress {
        let bar = ProgressBar::new(plan.total_steps);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ({elapsed}<{eta})")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(run_dir.file_name().unwrap().to_string_lossy().to_string());
        bar.set_position(start_step);
        bar
    } else {
        ProgressBar::hidden()
    };

    if start_step == 0 {
        eval_record(&mut log, &model, 0)?;
    }

    let (mut train_seconds, mut trained_tokens) = (0.0f64, 0u64);
    let mut final_train_loss = f64::NAN;
    let mut diverged = false;
    let mut exhausted_at_step = None;
    let mut step = start_step;
    let checkpoint_now = |step: u64, vs: &nn::VarStore, opt: &AdamW, sampler: &dctk_data::Sampler| -> Result<()> {
        let state = CheckpointState {
            step,
            adam_step: opt.step,
            run_id: run_id.to_string(),
            data_fingerprint: fingerprint.clone(),
            sampler: Some(sampler.state()),
        };
        checkpoint::save(run_dir, vs, opt, &state)
    };
    while step < plan.total_steps {
        if opts.stop_after_steps.is_some_and(|n| step - start_step >= n) {
            bar.abandon();
            return Err(StoppedEarly { steps: step - start_step, cancelled: false }.into());
        }
        if opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            // Keep every finished step: checkpoint here unless this step just was.
            if step > start_step && !ckpt_steps.contains(&step) {
                checkpoint_now(step, &vs, &opt, &sampler)?;
            }
            bar.abandon();
            return Err(StoppedEarly { steps: step - start_step, cancelled: true }.into());
        }
        let t0 = Instant::now();
        let batch = match sampler.next_batch() {
            Ok(b) => b,
            Err(DataError::Exhausted { .. }) => {
                // Every domain reached its epochs_limit: the run ends here, evaluated and saved.
                exhausted_at_step = Some(step);
                bar.println(format!("run {run_id}: every domain reached its epochs_limit at step {step}: stopping"));
                if step > 0 && !eval_steps.contains(&step) {
                    eval_record(&mut log, &model, step)?;
                }
                if step > 0 && !ckpt_steps.contains(&step) {
                    checkpoint_now(step, &vs, &opt, &sampler)?;
                }
                break;
            }
            Err(e) => bail!("data sampler at step {step}: {}", describe(&e)),
        };
        let tensors = BatchTensors::new(&batch, device);
        let lr = schedule.lr(step);
        opt.zero_grad();
        let mut loss_sum = 0.0;
        let mut reg_metrics: BTreeMap<String, f64> = BTreeMap::new();
        for m in 0..plan.accumulation_steps {
            let mb = tensors.rows(m * micro, micro);
            tch::manual_seed(step_seed(spec.seed, step, m));
            let (x, y) = if regs.is_empty() {
                (mb.x.shallow_clone(), mb.y.shallow_clone())
            } else {
                regs.transform_batch(step, m as u64, GPT2_VOCAB, &mb.x, &mb.y)?
            };
            let logits = model.forward_masked(&x, mb.mask.as_ref(), true);
            let loss = Gpt::loss(&logits, &y);
            loss_sum += loss.double_value(&[]);
            // The regularizers' terms (MIR: λ·CE of a second forward on masked inputs
            // against the same targets) join the loss before backward.
            let total = if regs.is_empty() {
                loss
            } else {
                let mb_view = MicroBatch { step, micro: m as u64, base_vocab: GPT2_VOCAB, inputs: &x, targets: &y, logits: Some(&logits) };
                let aux = regs.aux_loss(&mb_view, &mut |ids| model.forward_masked(ids, mb.mask.as_ref(), true))?;
                for (k, v) in aux.metrics {
                    *reg_metrics.entry(k).or_default() += v / plan.accumulation_steps as f64;
                }
                match aux.loss {
                    Some(a) => loss + a,
                    None => loss,
                }
            };
            (&total / plan.accumulation_steps as f64).backward();
        }
        let grad_norm = opt.clip_grad_norm(spec.grad_clip);
        opt.step(lr);
        step += 1;
        let train_loss = loss_sum / plan.accumulation_steps as f64;
        final_train_loss = train_loss;
        let dt = t0.elapsed().as_secs_f64();
        train_seconds += dt;
        trained_tokens += plan.tokens_per_step;
        let epoch = plan.epoch_at(step);
        let mut record = serde_json::json!({
            "kind": "train", "step": step, "tokens": step * plan.tokens_per_step, "epoch": epoch,
            "loss": train_loss, "lr": lr, "grad_norm": grad_norm,
            "tokens_per_s": plan.tokens_per_step as f64 / dt,
        });
        for (k, v) in reg_metrics {
            record[k] = serde_json::json!(v);
        }
        log.write(record)?;
        bar.set_position(step);
        bar.set_message(format!("loss {train_loss:.3} lr {lr:.2e} {:.0} tok/s", trained_tokens as f64 / train_seconds));
        if opts.progress_json {
            report(&serde_json::json!({
                "event": "step", "step": step, "total_steps": plan.total_steps, "loss": train_loss,
                "tokens_per_s": trained_tokens as f64 / train_seconds,
            }));
        }
        if !train_loss.is_finite() || !grad_norm.is_finite() {
            diverged = true;
            bar.println(format!("run {run_id}: loss became {train_loss} at step {step}: marking the run diverged"));
            break;
        }
        if eval_steps.contains(&step) {
            let val_loss = eval_record(&mut log, &model, step)?;
            bar.println(format!("  step {step:>6}  epoch {epoch:>6.2}  val_loss {val_loss:.4}"));
            if opts.progress_json {
                report(&serde_json::json!({"event": "eval", "step": step, "epoch": epoch, "val_loss": val_loss}));
            }
        }
        if ckpt_steps.contains(&step) {
            checkpoint_now(step, &vs, &opt, &sampler)?;
        }
    }
    bar.finish_and_clear();

    // Exact accounting: every served token belongs to exactly one domain.
    let accounting = sampler.accounting();
    let want = step * plan.tokens_per_step;
    let by_domain: u64 = accounting.domains.iter().map(|d| d.tokens_served).sum();
    if accounting.steps != step || accounting.tokens_served != want || by_domain != want {
        bail!(
            "run {run_id}: data accounting is off: {} steps, {} tokens served ({by_domain} by domain), but {step} steps × {} × {} = {want}",
            accounting.steps,
            accounting.tokens_served,
            spec.batch_size,
            spec.seq_len
        );
    }

    let curve = read_eval_curve(run_dir)?;
    if final_train_loss.is_nan() && !diverged {
        // Resumed at the very end: take the last logged training loss.
        final_train_loss = last_train_loss(run_dir).unwrap_or(f64::NAN);
    }
    let last = if diverged { None } else { curve.last() };
    let final_val_loss = last.map_or(f64::NAN, |p| p.val_loss);
    let final_val_loss_by_domain = last.map(|p| p.val_loss_by_domain.clone()).unwrap_or_default();
    let best_val_loss = curve.iter().map(|p| p.val_loss).fold(f64::INFINITY, f64::min);
    let val_loss_by_epoch = curve.iter().filter(|p| plan.epoch_end_steps.contains(&p.step)).cloned().collect();
    let train_tokens = step * plan.tokens_per_step;
    let status = if diverged { Status::Diverged } else { Status::Done };
    let result = RunResult {
        run_id: run_id.to_string(),
        run_dir: run_dir.display().to_string(),
        status: status.as_str().into(),
        device: env::device_name(device),
        precision: precision_name(kind).into(),
        threads: tch::get_num_threads() as i64,
        params: cfg.total_params(),
        non_embedding_params: cfg.non_embedding_params(),
        flops_per_token: cfg.flops_per_token(spec.seq_len),
        unique_tokens: spec.unique_tokens,
        epochs: spec.epochs,
        epochs_realized: train_tokens as f64 / spec.unique_tokens as f64,
        steps: step,
        tokens_per_step: plan.tokens_per_step,
        train_tokens,
        final_val_loss,
        final_val_loss_by_domain,
        best_val_loss,
        final_train_loss,
        curve,
        val_loss_by_epoch,
        tokens_per_s: if train_seconds > 0.0 { trained_tokens as f64 / train_seconds } else { 0.0 },
        wall_s: started.elapsed().as_secs_f64(),
        resumed_from_step,
        exhausted_at_step,
        accounting,
    };
    write_ron_atomic(&run_dir.join("result.ron"), &result)?;
    status.write(run_dir)?;
    Ok(result)
}

/// One progress record on stdout for the `dctk run` that launched this cell process.
fn report(record: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{record}");
    let _ = out.flush();
}

fn last_train_loss(run_dir: &Path) -> Option<f64> {
    let text = fs::read_to_string(run_dir.join("metrics.jsonl")).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v.get("kind")?.as_str()? == "train").then(|| v.get("loss")?.as_f64())?
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

    /// Headroom of the data path: tokens/s the trainer's loader (sampler + tensors + mask)
    /// serves, divided by tokens/s the CPU trainer consumes (forward, backward, AdamW), for the
    /// tiny and 72m presets. Numbers go to bench/data/RESULTS.md.
    #[test]
    #[ignore = "benchmark: cargo test --release -p dctk -- --ignored --nocapture loader_headroom"]
    fn loader_headroom() {
        use crate::corpus::{plan_data, resolve_corpus, AutoIngest, CorpusCache, DataSpec};
        let root = std::env::temp_dir().join(format!("dctk-headroom-{}", std::process::id()));
        let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/corpora");
        let auto = AutoIngest { text_field: "text".into(), val_fraction: 0.05 };
        let resolved = resolve_corpus(&raw, &root.join("runs"), &auto, false).unwrap();
        let corpus = CorpusCache::default().open(&resolved.dir).unwrap();
        tch::set_num_threads(std::env::var("DCTK_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2));
        let shapes: &[(&str, i64, i64, u64)] = &[("tiny", 256, 16, 6), ("72m", 512, 4, 2)];
        for &(preset, seq_len, batch, steps) in shapes {
            for cross in [true, false] {
                let spec = TrainSpec::from_json(json!({
                    "corpus": "x", "model": preset, "unique_tokens": 1_000_000, "epochs": 1,
                    "seq_len": seq_len, "batch_size": batch, "cross_doc_attention": cross,
                }))
                .unwrap();
                let data = plan_data(&DataSpec::from_train(&spec, &raw).unwrap(), corpus.clone(), &resolved).unwrap();
                let mut sampler = data.corpus.sampler(&data.mix).unwrap();
                let tokens_per_step = (batch * seq_len) as f64;
                let t0 = Instant::now();
                let mut n = 0u64;
                while t0.elapsed().as_secs_f64() < 2.0 {
                    let b = sampler.next_batch().unwrap();
                    let t = BatchTensors::new(&b, Device::Cpu);
                    assert_eq!(t.rows, batch);
                    n += 1;
                }
                let loader = n as f64 * tokens_per_step / t0.elapsed().as_secs_f64();
                // The trainer: one warm-up step, then `steps` timed steps.
                let cfg = spec.model_config().unwrap();
                tch::manual_seed(0);
                let vs = nn::VarStore::new(Device::Cpu);
                let model = Gpt::new(&vs, &cfg, 0.0);
                let mut opt = AdamW::new(
                    vs.variables().into_iter().collect(),
                    AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 },
                );
                let mut timed = 0.0;
                for i in 0..=steps {
                    let b = sampler.next_batch().unwrap();
                    let t1 = Instant::now();
                    let t = BatchTensors::new(&b, Device::Cpu);
                    opt.zero_grad();
                    Gpt::loss(&model.forward_masked(&t.x, t.mask.as_ref(), true), &t.y).backward();
                    opt.clip_grad_norm(1.0);
                    opt.step(1e-3);
                    if i > 0 {
                        timed += t1.elapsed().as_secs_f64();
                    }
                }
                let trainer = steps as f64 * tokens_per_step / timed;
                println!(
                    "{{\"preset\":\"{preset}\",\"seq_len\":{seq_len},\"batch\":{batch},\"cross_doc_attention\":{cross},\"threads\":{},\"loader_tokens_per_s\":{loader:.0},\"trainer_tokens_per_s\":{trainer:.1},\"headroom\":{:.0}}}",
                    tch::get_num_threads(),
                    loader / trainer
                );
                assert!(loader / trainer >= 20.0, "{preset}: loader headroom below 20×");
            }
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn step_seeds_differ() {
        assert_ne!(step_seed(0, 1, 0), step_seed(0, 2, 0));
        assert_ne!(step_seed(0, 1, 0), step_seed(0, 1, 1));
        assert!(step_seed(5, 9, 0) >= 0);
    }
}
