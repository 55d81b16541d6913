//! Generation: decoding from a dctk model (KV cache, greedy / temperature / top-k / top-p,
//! stop sequences, batched prompts, seeded sampling), teacher-forced scoring, and the
//! [`generator::Generator`] seam through which studies generate text, from a dctk
//! checkpoint in-process (`local`) or from any OpenAI-compatible server (`openai`).
//!
//! Read in this order: [`sampling`] (what a request asks for and how one token is chosen),
//! [`decode`] (batched incremental decoding and scoring over [`crate::train::Gpt`]'s KV-cache
//! forward), [`loaded`] (a run's checkpoint and tokenizer, ready to decode), [`chat`] (the
//! plain chat template of base models), [`generator`] (the trait and its two backends),
//! [`client`] (the OpenAI HTTP client), [`request_cache`] (every request/response, content
//! addressed), [`augment`] (the augmenter seam: documents → planned requests → synthetic
//! documents), [`latent`] (BoLT's `latent_thoughts` augmenter: chunking, training formats,
//! the E-step's importance resampling).
pub mod augment;
pub mod chat;
pub mod client;
#[cfg(feature = "torch")]
pub mod decode;
pub mod generator;
pub mod latent;
#[cfg(feature = "torch")]
pub mod loaded;
pub mod request_cache;
pub mod sampling;

#[cfg(feature = "torch")]
pub use decode::{Completion, DecodeOptions, FinishReason, Flow, GenRequest, TokenEvent};
#[cfg(feature = "torch")]
pub use loaded::LoadedModel;
pub use sampling::SamplingParams;
#[cfg(all(test, feature = "torch"))]
mod tests;
