//! Batched incremental decoding with the KV cache, and teacher-forced scoring.
use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::sampling::SamplingParams;

/// One prompt (token ids) and how to continue it.
#[derive(Clone, Debug)]
pub struct GenRequest {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
}

/// Why a completion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// End-of-text or a stop sequence.
    Stop,
    /// `max_tokens`, or the model's context (`max_seq_len`) is full.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A finished completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The generated tokens (a final end-of-text token is not included; tokens of a stop
    /// sequence are).
    pub tokens: Vec<u32>,
    /// The generated text, cut before the stop sequence that ended it.
    pub text: String,
    /// Natural log-probability of each generated token under the model's distribution
    /// (temperature 1, no truncation), as OpenAI's `logprobs` reports.
    pub token_logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
}

/// One generated token, as it is produced (for streaming).
#[derive(Clone, Debug)]
pub struct TokenEvent<'a> {
    /// Index of the request in the batch.
    pub request: usize,
    pub token: u32,
    pub logprob: f32,
    /// New text to show (empty while a stop sequence or a multi-byte character may still
    /// be forming).
    pub text_delta: &'a str,
}

/// What a streaming callback wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop this request (its client went away); the others go on.
    Cancel,
}

/// How to decode (not what: that is [`SamplingParams`]).
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// Use the KV cache (true) or recompute the whole prefix each step (false: the
    /// reference the cache is tested and benchmarked against).
    pub kv_cache: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions { kv_cache: true }
    }
}

#[allow(unused)]
fn _todo() -> Result<()> {
    todo!()
}
