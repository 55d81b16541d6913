//! The model worker of `dctk serve`: ONE thread owns the [`LoadedModel`] (built inside that
//! thread, since libtorch tensors are not shared across threads) and decodes every request
//! waiting for it as one batch.
//!
//! Requests ([`Job`]s) arrive over a channel. The worker blocks for the first, then takes
//! every job already waiting, up to `max_batch` entries (one entry = one prompt × one
//! choice), and decodes them all in one [`LoadedModel::generate_with`] call; jobs that arrive
//! meanwhile wait for the next batch (batching at request granularity, in the spirit of
//! Orca's iteration-level scheduling, Yu et al. 2022, OSDI, without joining a running
//! batch). Each token goes to its job's own event channel as it is produced; a job whose
//! receiver is gone (the client disconnected) answers [`Flow::Cancel`] and is dropped from
//! the batch without disturbing the others.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};
use tch::Device;
use tokio::sync::mpsc::UnboundedSender;

use crate::generate::{Completion, DecodeOptions, FinishReason, Flow, GenRequest, LoadedModel, SamplingParams};
use dctk_data::Tokenizer;

/// One prompt × one choice, ready to decode.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Token ids (never empty: an empty prompt is sent as the end-of-text token, which is
    /// how every document starts in training).
    pub prompt: Vec<u32>,
    /// `max_tokens` already capped to the context.
    pub params: SamplingParams,
    /// Also score the prompt's own tokens (`echo` with `logprobs`).
    pub score_prompt: bool,
}

/// What the worker tells a job, entry by entry.
#[derive(Clone, Debug)]
pub enum Event {
    /// The log-probability of each prompt token after the first, given the ones before.
    PromptLogprobs { entry: usize, logprobs: Vec<f32> },
    /// Text produced: with the generated token that made it, or (`token` None) the text
    /// held back until the entry ended (end-of-text came while a stop sequence might still
    /// have been forming).
    Token { entry: usize, token: Option<u32>, logprob: Option<f32>, text_delta: String },
    /// The entry is complete.
    Done { entry: usize, completion: Completion },
    /// Decoding failed; no more events come.
    Failed(String),
}

/// One HTTP request's entries and where their events go.
pub struct Job {
    pub entries: Vec<Entry>,
    pub events: UnboundedSender<Event>,
}

/// What the HTTP side needs of the model, read once when the worker has loaded it.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub run_id: String,
    /// The cell's label in its study (also accepted as the model name), when it has one.
    pub label: Option<String>,
    /// The model's context: prompt + completion tokens.
    pub max_seq_len: usize,
    pub tokenizer: Tokenizer,
    pub eot_id: u32,
    /// Optimizer steps of the checkpoint served.
    pub step: u64,
    pub weights_blake3: String,
    pub device: String,
}

/// Counters `/health` reports.
#[derive(Debug, Default)]
pub struct Stats {
    /// `generate_with` calls (batches decoded).
    pub batches_run: AtomicU64,
    /// Entries decoded in those batches.
    pub entries_decoded: AtomicU64,
    /// Entries cancelled because their client went away.
    pub entries_cancelled: AtomicU64,
    /// Largest batch decoded (entries).
    pub largest_batch: AtomicU64,
}

/// The running worker: send it jobs; drop the sender to stop it.
pub struct Batcher {
    pub jobs: mpsc::Sender<Job>,
    pub stats: Arc<Stats>,
    pub info: ModelInfo,
    pub thread: JoinHandle<()>,
}

/// Starts the worker: it loads `run_dir` onto `device` (with `threads` intra-op threads if
/// given) and then serves jobs. Returns once the model is loaded, or with the load error.
pub fn spawn(run_dir: PathBuf, device: Device, threads: Option<usize>, max_batch: usize) -> Result<Batcher> {
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<ModelInfo>>();
    let stats = Arc::new(Stats::default());
    let worker_stats = stats.clone();
    let thread = std::thread::Builder::new()
        .name("dctk-serve-model".into())
        .spawn(move || {
            if let Some(t) = threads {
                tch::set_num_threads(t as i32);
            }
            let model = match LoadedModel::open(&run_dir, device) {
                Ok(m) => m,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(model_info(&model)));
            drop(ready_tx);
            serve_jobs(&model, &job_rx, max_batch.max(1), &worker_stats);
        })
        .context("starting the model worker thread")?;
    let info = match ready_rx.recv() {
        Ok(r) => r?,
        Err(_) => {
            let _ = thread.join();
            return Err(anyhow!("the model worker stopped while loading the model"));
        }
    };
    Ok(Batcher { jobs: job_tx, stats, info, thread })
}

fn model_info(model: &LoadedModel) -> ModelInfo {
    let label = std::fs::read_to_string(model.run_dir.join("manifest.ron"))
        .ok()
        .and_then(|t| ron::from_str::<crate::study::plan::Manifest>(&t).ok())
        .map(|m| m.label)
        .filter(|l| !l.is_empty());
    ModelInfo {
        run_id: model.run_id.clone(),
        label,
        max_seq_len: model.config.max_seq_len as usize,
        tokenizer: model.tokenizer.clone(),
        eot_id: model.eot_id,
        step: model.step,
        weights_blake3: model.weights_blake3.clone(),
        device: crate::env::device_name(model.device),
    }
}

/// The worker's loop: until every sender is gone, take a batch and decode it.
fn serve_jobs(model: &LoadedModel, jobs: &mpsc::Receiver<Job>, max_batch: usize, stats: &Stats) {
    // A job taken from the channel that did not fit in the last batch.
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(j) => j,
            None => match jobs.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        let mut entries = batch[0].entries.len();
        while entries < max_batch {
            match jobs.try_recv() {
                Ok(j) if entries + j.entries.len() > max_batch => {
                    carried = Some(j);
                    break;
                }
                Ok(j) => {
                    entries += j.entries.len();
                    batch.push(j);
                }
                Err(_) => break,
            }
        }
        batch.retain(|j| !j.events.is_closed());
        if batch.is_empty() {
            continue;
        }
        // A panic in decoding must not take the server down: the batch's jobs get the error.
        let outcome = catch_unwind(AssertUnwindSafe(|| run_batch(model, &batch, stats)));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("decoding failed: {e:#}")),
            Err(panic) => Some(format!("decoding failed: {}", panic_message(&panic))),
        };
        if let Some(message) = failure {
            eprintln!("dctk serve: {message}");
            for j in &batch {
                let _ = j.events.send(Event::Failed(message.clone()));
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic in the decoder".into()
    }
}

/// Decodes one batch: prompt scores first (teacher-forced, per entry), then every entry
/// with tokens to generate in one `generate_with` call.
fn run_batch(model: &LoadedModel, batch: &[Job], stats: &Stats) -> Result<()> {
    // (job, entry) of each GenRequest in the decode call.
    let mut owners: Vec<(usize, usize)> = Vec::new();
    let mut requests: Vec<GenRequest> = Vec::new();
    for (j, job) in batch.iter().enumerate() {
        // The HTTP side has checked every field; this guards the batch anyway, since one
        // request the engine refuses would fail every request decoded beside it.
        let refused = job.entries.iter().filter(|e| e.params.max_tokens > 0).find_map(|e| {
            model.check_request(&GenRequest { prompt: e.prompt.clone(), params: e.params.clone() }).err()
        });
        if let Some(message) = refused {
            let _ = job.events.send(Event::Failed(format!("the request was refused by the decoder: {message}")));
            continue;
        }
        for (e, entry) in job.entries.iter().enumerate() {
            if entry.score_prompt && entry.prompt.len() > 1 {
                let logprobs = model.score(&entry.prompt[..1], &entry.prompt[1..])?;
                let _ = job.events.send(Event::PromptLogprobs { entry: e, logprobs });
            }
            if entry.params.max_tokens == 0 {
                let completion = Completion { tokens: Vec::new(), text: String::new(), token_logprobs: Vec::new(), finish_reason: FinishReason::Length };
                let _ = job.events.send(Event::Done { entry: e, completion });
            } else {
                owners.push((j, e));
                requests.push(GenRequest { prompt: entry.prompt.clone(), params: entry.params.clone() });
            }
        }
    }
    if requests.is_empty() {
        return Ok(());
    }
    stats.batches_run.fetch_add(1, Ordering::Relaxed);
    stats.entries_decoded.fetch_add(requests.len() as u64, Ordering::Relaxed);
    stats.largest_batch.fetch_max(requests.len() as u64, Ordering::Relaxed);
    let mut cancelled = vec![false; requests.len()];
    let completions = model.generate_with(&requests, DecodeOptions::default(), &mut |ev| {
        let (j, e) = owners[ev.request];
        if ev.token.is_none() && ev.text_delta.is_empty() {
            return Flow::Continue;
        }
        let event = Event::Token { entry: e, token: ev.token, logprob: ev.logprob, text_delta: ev.text_delta.to_string() };
        if batch[j].events.send(event).is_err() {
            if !cancelled[ev.request] {
                cancelled[ev.request] = true;
                stats.entries_cancelled.fetch_add(1, Ordering::Relaxed);
            }
            Flow::Cancel
        } else {
            Flow::Continue
        }
    })?;
    for ((j, e), completion) in owners.into_iter().zip(completions) {
        let _ = batch[j].events.send(Event::Done { entry: e, completion });
    }
    Ok(())
}
