//! The [`Generator`] seam: text in, text out, from a dctk checkpoint in-process (`local`)
//! or from any OpenAI-compatible server (`openai`).
use anyhow::Result;
use serde::{Deserialize, Serialize};

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
