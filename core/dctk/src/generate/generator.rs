//! The [`Generator`] seam: text in, text out, from a dctk checkpoint in-process
//! ([`LocalGenerator`], `kind: "local"`) or from any OpenAI-compatible server
//! ([`super::client::OpenAiGenerator`], `kind: "openai"`). Studies generate through it
//! (`study/generate_cell.rs`), behind the request cache ([`super::request_cache`]).
use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

#[cfg(feature = "torch")]
use super::decode::GenRequest;
#[cfg(feature = "torch")]
use super::loaded::LoadedModel;
use super::sampling::SamplingParams;

/// One text prompt and how to continue it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextRequest {
    pub prompt: String,
    pub params: SamplingParams,
}

/// A generated text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextCompletion {
    pub text: String,
    /// "stop" or "length".
    pub finish_reason: String,
    /// Tokens generated, when the backend reports it.
    pub completion_tokens: Option<u64>,
}

/// A source of completions.
pub trait Generator: Send + Sync {
    /// What identifies the backend in request caches: `local:<weights blake3>` or
    /// `openai:<base_url>#<model>`.
    fn identity(&self) -> String;
    /// Completes every request; `on_done(i, result)` is called as each one finishes (in
    /// any order, from any thread), so a caller can persist it at once. Returns the results
    /// in request order.
    fn complete(&self, requests: &[TextRequest], on_done: &(dyn Fn(usize, &Result<TextCompletion>) + Sync)) -> Vec<Result<TextCompletion>>;
}

#[cfg(feature = "torch")]
/// A dctk run's checkpoint, in this process: requests are encoded with the run's
/// tokenizer and decoded `batch_size` at a time by [`LoadedModel::generate`].
pub struct LocalGenerator {
    /// Behind a lock: libtorch tensors may move between threads but not be shared.
    pub model: std::sync::Mutex<LoadedModel>,
    /// The model's identity, readable without the lock.
    weights_blake3: String,
    /// Prompts decoded together.
    pub batch_size: usize,
    /// Set by Ctrl-C / SIGTERM: batches not yet started fail as cancelled.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Prompts a local generator decodes together unless told otherwise.
pub const DEFAULT_LOCAL_BATCH: usize = 8;

#[cfg(feature = "torch")]
impl LocalGenerator {
    pub fn new(model: LoadedModel, batch_size: usize) -> LocalGenerator {
        let weights_blake3 = model.weights_blake3.clone();
        LocalGenerator { model: std::sync::Mutex::new(model), weights_blake3, batch_size: batch_size.max(1), cancel: None }
    }
}

#[cfg(feature = "torch")]
impl Generator for LocalGenerator {
    fn identity(&self) -> String {
        format!("local:{}", self.weights_blake3)
    }

    fn complete(&self, requests: &[TextRequest], on_done: &(dyn Fn(usize, &Result<TextCompletion>) + Sync)) -> Vec<Result<TextCompletion>> {
        let model = self.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = Vec::with_capacity(requests.len());
        for (b, batch) in requests.chunks(self.batch_size).enumerate() {
            let first = b * self.batch_size;
            if self.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
                for k in 0..batch.len() {
                    let result = Err(anyhow!("request {}: cancelled before it was decoded", first + k));
                    on_done(first + k, &result);
                    out.push(result);
                }
                continue;
            }
            let gen: Vec<GenRequest> = batch.iter().map(|r| GenRequest { prompt: model.encode(&r.prompt), params: r.params.clone() }).collect();
            match model.generate(&gen) {
                Ok(done) => {
                    for (k, c) in done.into_iter().enumerate() {
                        let result = Ok(TextCompletion { text: c.text, finish_reason: c.finish_reason.as_str().to_string(), completion_tokens: Some(c.tokens.len() as u64) });
                        on_done(first + k, &result);
                        out.push(result);
                    }
                }
                Err(e) => {
                    let message = format!("{e:#}");
                    for k in 0..batch.len() {
                        let result = Err(anyhow!("request {}: {}: {message}", first + k, model.run_dir.display()));
                        on_done(first + k, &result);
                        out.push(result);
                    }
                }
            }
        }
        out
    }
}
