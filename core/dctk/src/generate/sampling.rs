//! What a generation request asks for ([`SamplingParams`]) and how one next token is
//! chosen from a row of logits: greedy at temperature 0, else softmax(logits / T) cut to
//! the top-k tokens and to the smallest set whose probability reaches top-p (Holtzman et al.
//! 2020, "The Curious Case of Neural Text Degeneration", nucleus sampling), drawn with the
//! request's own seeded generator, so a request's tokens do not depend on what else is in
//! its batch.
use serde::{Deserialize, Serialize};

/// Sampling settings of one request. The defaults are OpenAI's (temperature 1, top-p 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0 = greedy (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches top_p; 1 = off.
    pub top_p: f64,
    /// Stop before the first occurrence of any of these strings in the generated text.
    pub stop: Vec<String>,
    /// Seeds the request's own generator.
    pub seed: u64,
    /// Go on past the end-of-text token (default: stop there).
    pub ignore_eot: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { max_tokens: 16, temperature: 1.0, top_k: 0, top_p: 1.0, stop: Vec::new(), seed: 0, ignore_eot: false }
    }
}

impl SamplingParams {
    /// Checks the settings; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        todo!()
    }
}
