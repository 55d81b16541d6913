//! The training loop, read top to bottom: set up (placement, model, optimizer, regularizers,
//! resume from the checkpoint), then per step a batch from the sampler, [`train_step`], the
//! metrics record, evaluation and checkpoint where the [`RunPlan`] says; at the end the
//! sampler's exact accounting is checked and the [`RunResult`] returned.
//!
//! The trainer takes a spec, the run's data (an open corpus and the mixture to sample, see
//! [`crate::corpus`]) and a run directory, and writes only its own artefacts there
//! (`metrics.jsonl`, `ckpt/`): the study layer that called it records the status and the
//! result. One call of [`train`] either finishes the run, resumes it from its checkpoint and
//! finishes it, or reports divergence.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tch::{nn, Kind, Tensor};

use super::checkpoint::{self, CheckpointMeta, CheckpointState};
use super::eval::evaluate;
use super::model::Gpt;
use super::optim::{AdamW, AdamWConfig};
use super::plan::epoch_tokens;
pub use super::plan::RunPlan;
use super::results::{last_train_loss, read_eval_curve, Divergence, MetricsLog, RunResult};
use super::spec::TrainSpec;
use super::step::{train_step, BatchTensors, StepSettings};
use crate::corpus::{describe, val_batches, RunData};
use crate::env;
use dctk_data::DataError;

pub use super::placement::{precision_name, resolve_placement, ExecOptions, StoppedEarly};

/// Trains (or resumes) the run in `run_dir`. The caller has written the manifest and holds
/// the cell's lock: temporary files a killed or failed process left (`ckpt.tmp/`, `.*.tmp-*`)
/// are removed before the run starts and again if it fails.
pub fn train(spec: &TrainSpec, data: &RunData, run_id: &str, run_dir: &Path, opts: &ExecOptions) -> Result<RunResult> {
    checkpoint::remove_debris(run_dir)?;
    let result = train_locked(spec, data, run_id, run_dir, opts);
    if result.is_err() {
        let _ = checkpoint::remove_debris(run_dir);
    }
    result
}

/// `init_from`: the source run's final weights into a fresh model (before step 0).
fn init_weights(vs: &nn::VarStore, init: &super::spec::InitFrom) -> Result<()> {
    let dir = Path::new(&init.dir);
    if !crate::study::cache::CellState::read(dir).is_finished() {
        bail!("key \"init_from\": run {} ({}) is not finished", init.run, dir.display());
    }
    let ckpt = checkpoint::find(dir).ok_or_else(|| anyhow::anyhow!("key \"init_from\": run {} ({}) has no checkpoint", init.run, dir.display()))?;
    let state = checkpoint::read_state(&ckpt)?;
    if state.run_id != init.run {
        bail!("key \"init_from\": {} holds run {}, this run was planned from run {}", dir.display(), state.run_id, init.run);
    }
    let model_file = ckpt.join("model.safetensors");
    checkpoint::copy_weights(&checkpoint::read_weights(&model_file)?, &model_file, vs)
        .map_err(|e| anyhow::anyhow!("key \"init_from\": the source model does not fit this run's model (same preset and vocabulary needed): {e:#}"))
}

fn train_locked(spec: &TrainSpec, data: &RunData, run_id: &str, run_dir: &Path, opts: &ExecOptions) -> Result<RunResult> {
    let started = Instant::now();
    if let Some(t) = spec.threads {
        tch::set_num_threads(t);
    }
    let (device, kind) = resolve_placement(spec)?;
    // Regularizer plugins (MIR, z-loss, ...): loaded once, seeded from the run's seed. Their
    // extra tokens (MIR's MASK) get real ids right after the corpus tokenizer's.
    let mut regs = crate::plugin::regularizer::load_regularizers(&spec.regularizers, spec.seed)?;
    // The corpus's special tokens (BoLT's latent delimiters) come first, so plugin ids start
    // after them.
    let vocab = super::plan::run_vocab(data, &regs.extra_tokens());
    let cfg = spec.model_config(&vocab).map_err(anyhow::Error::msg)?;
    regs.check_vocab(vocab.text_ids(), cfg.vocab_size)?;
    let plan = RunPlan::new(spec, spec.unique_tokens, epoch_tokens(data)?, vocab.clone())?;
    let micro = spec.micro_batch();
    let fingerprint = &data.manifest.fingerprint;
    let mut sampler = data.sampler().map_err(anyhow::Error::msg)?;
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
    // Before the optimizer is built (in bf16 it keeps fp32 master copies of the weights);
    // a resumed run loads its own checkpoint below instead.
    if let (None, Some(init)) = (checkpoint::find(run_dir), &spec.init_from) {
        init_weights(&vs, init)?;
    }
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
    let mut log = MetricsLog::open(&run_dir.join("metrics.jsonl"), resumed_from_step)?;
    let schedule = spec.schedule(plan.total_steps);
    let eval_steps: BTreeSet<u64> = plan.eval_steps.iter().copied().collect();
    let ckpt_steps: BTreeSet<u64> = plan.checkpoint_steps.iter().copied().collect();
    let step_settings = StepSettings {
        seed: spec.seed,
        micro_batch: micro,
        accumulation_steps: plan.accumulation_steps,
        grad_clip: spec.grad_clip,
        base_vocab: vocab.text_ids(),
    };
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
    let mut divergence: Option<Divergence> = None;
    let mut exhausted_at_step = None;
    let mut step = start_step;
    let ckpt_meta = CheckpointMeta { run_id: run_id.to_string(), model_config: cfg.clone(), vocab: vocab.clone() };
    let checkpoint_now = |step: u64, vs: &nn::VarStore, opt: &AdamW, sampler: &dctk_data::Sampler| -> Result<()> {
        let state = CheckpointState {
            step,
            adam_step: opt.step,
            run_id: run_id.to_string(),
            data_fingerprint: fingerprint.clone(),
            sampler: Some(sampler.state()),
        };
        checkpoint::save(run_dir, vs, opt, &state, &ckpt_meta)
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
                say(&bar, &format!("run {run_id}: every domain reached its epochs_limit at step {step}: stopping"));
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
        let outcome = train_step(&model, &mut opt, &mut regs, &tensors, step, lr, &step_settings)?.read();
        step += 1;
        let (train_loss, grad_norm) = (outcome.train_loss, outcome.grad_norm);
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
        for (k, v) in &outcome.metrics {
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
        if let Some(d) = Divergence::of(step, &outcome) {
            say(&bar, &format!("run {run_id}: diverged at step {step}: {}; marking the run diverged", d.describe()));
            divergence = Some(d);
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
    let diverged = divergence.is_some();
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
    let result = RunResult {
        run_id: run_id.to_string(),
        run_dir: run_dir.display().to_string(),
        status: if diverged { "diverged" } else { "done" }.into(),
        device: env::device_name(device),
        precision: precision_name(kind).into(),
        threads: tch::get_num_threads() as i64,
        params: cfg.total_params(),
        non_embedding_params: cfg.non_embedding_params(),
        flops_per_token: cfg.flops_per_token(spec.seq_len),
        unique_tokens: spec.unique_tokens,
        epochs: spec.epochs,
        epochs_realized: plan.epoch_at(step),
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
        accounting: accounting.clone(),
        real_unique_tokens: 0,
        real_tokens_seen: 0,
        synthetic_tokens_seen: 0,
        real_epochs: 0.0,
        synthetic_epochs: 0.0,
        synthetic_epochs_by_stream: BTreeMap::new(),
        mix_ratio: 0.0,
        mix_ratio_realized: 0.0,
        synthetic_epochs_kim: 0.0,
        real_tokens_equivalent: 0.0,
        divergence,
    };
    Ok(result.with_real_synthetic(&super::RealSyntheticAccounting::of(&accounting, spec.mix_ratio)))
}

/// A message for the user: above the progress bar, or on stderr (the cell's log.txt) when
/// there is no bar.
fn say(bar: &ProgressBar, msg: &str) {
    if bar.is_hidden() {
        eprintln!("{msg}");
    } else {
        bar.println(msg);
    }
}

/// One progress record on stdout for the `dctk run` that launched this cell process.
fn report(record: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{record}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::model::{VocabLayout, GPT2_VOCAB};
    use serde_json::json;

    /// Headroom of the data path: tokens/s the trainer's loader (sampler + tensors + mask)
    /// serves, divided by tokens/s the CPU trainer consumes (forward, backward, AdamW), for the
    /// tiny and 72m presets. Numbers go to bench/data/RESULTS.md.
    #[test]
    #[ignore = "benchmark: cargo test --release -p dctk -- --ignored --nocapture loader_headroom"]
    fn loader_headroom() {
        use crate::corpus::{plan_data, resolve_corpus, AutoIngest, CorpusCache};
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
                let data = plan_data(&spec.data_spec(&raw, &[]).unwrap(), corpus.clone(), &resolved, &[]).unwrap();
                let mut sampler = data.sampler().unwrap();
                let tokens_per_step = (batch * seq_len) as f64;
                let t0 = Instant::now();
                let mut n = 0u64;
                while t0.elapsed().as_secs_f64() < 2.0 {
                    let b = sampler.next_batch().unwrap();
                    let t = BatchTensors::new(&b, tch::Device::Cpu);
                    assert_eq!(t.rows, batch);
                    n += 1;
                }
                let loader = n as f64 * tokens_per_step / t0.elapsed().as_secs_f64();
                // The trainer: one warm-up step, then `steps` timed steps.
                let cfg = spec.model_config(&VocabLayout::new(GPT2_VOCAB, &[])).unwrap();
                tch::manual_seed(0);
                let vs = nn::VarStore::new(tch::Device::Cpu);
                let model = Gpt::new(&vs, &cfg, 0.0);
                let mut opt = AdamW::new(
                    vs.variables().into_iter().collect(),
                    AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 },
                );
                let mut regs = crate::plugin::regularizer::load_regularizers(&[], 0).unwrap();
                let settings = StepSettings { seed: 0, micro_batch: batch, accumulation_steps: 1, grad_clip: 1.0, base_vocab: GPT2_VOCAB };
                let mut timed = 0.0;
                for i in 0..=steps {
                    let b = sampler.next_batch().unwrap();
                    let t1 = Instant::now();
                    let t = BatchTensors::new(&b, tch::Device::Cpu);
                    train_step(&model, &mut opt, &mut regs, &t, i, 1e-3, &settings).unwrap().read();
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
}
