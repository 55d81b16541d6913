//! The augmenter seam: how a `generate` cell turns source documents into synthetic ones.
//!
//! An augmenter never calls a generator itself. For each source document it *plans* the
//! generations it needs ([`Augmenter::plan`]: prompts, with optional per-request overrides of
//! the cell's sampling settings); the cell sends every planned request of every document
//! through the request cache in large batches (so a killed cell resumes without asking
//! anything twice, and local decoding batches across documents); then the augmenter
//! *assembles* the document's outputs from the answers ([`Augmenter::assemble`]), optionally
//! scoring texts with the generator's model ([`Scorer`], local generators only: the BoLT
//! E-step's importance weights).
//!
//! Built-in augmenters and plugin augmenters (C ABI, `dctk_plugin_sdk::Augmenter`) implement
//! the same trait; the cell cannot tell them apart. Everything that decides an augmenter's
//! output is in [`Augmenter::identity`], which enters the cell id.
//!
//! An augmenter's output documents may contain *special tokens* ([`Augmenter::special_tokens`],
//! e.g. BoLT's `<|START_OF_LATENT|>`): literal strings that the output corpus's tokenizer maps
//! to single ids after the base vocabulary, never to their characters.
use std::collections::BTreeMap;

use anyhow::Result;

/// One source document, as the cell hands it to an augmenter.
#[derive(Clone, Debug)]
pub struct SourceText<'a> {
    /// The domain it comes from.
    pub domain: &'a str,
    /// Its index in the domain's ingest order.
    pub index: usize,
    /// Its content key (as ingest computed it; stable across machines).
    pub key: u64,
    /// The text (decoded from the corpus with its tokenizer, possibly truncated to fit).
    pub text: &'a str,
}

/// One generation an augmenter asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct AugRequest {
    /// The whole prompt, as sent.
    pub prompt: String,
    /// Overrides of the cell's settings for this request (None: the cell's value).
    pub max_tokens: Option<usize>,
    pub temperature: Option<f64>,
    /// Replaces the cell's stop sequences when set.
    pub stop: Option<Vec<String>>,
    /// What this request is, recorded in provenance (`style=qa`, `piece=2`, `chunk=3,k=1`).
    pub tag: String,
}

impl AugRequest {
    /// A request with the cell's sampling settings.
    pub fn new(prompt: impl Into<String>, tag: impl Into<String>) -> AugRequest {
        AugRequest { prompt: prompt.into(), max_tokens: None, temperature: None, stop: None, tag: tag.into() }
    }
}

/// The answer to one [`AugRequest`].
#[derive(Clone, Debug)]
pub struct AugAnswer<'a> {
    pub text: &'a str,
    /// "stop" or "length".
    pub finish_reason: &'a str,
}

/// One output document.
#[derive(Clone, Debug, PartialEq)]
pub struct AugDoc {
    /// The text; may contain the augmenter's special tokens.
    pub text: String,
    /// Which of the document's requests (indices into `plan`'s list) it was made from.
    pub uses: Vec<usize>,
    /// Augmenter-specific provenance recorded with the document (piece boundaries, chunks…).
    pub meta: serde_json::Value,
    /// Numbers the cell *sums* over all output documents into its result's
    /// `augmenter_stats` (e.g. `elbo_sum`, `chunks`): the study reads means from them.
    pub stats: BTreeMap<String, f64>,
}

impl AugDoc {
    pub fn new(text: String, uses: Vec<usize>) -> AugDoc {
        AugDoc { text, uses, meta: serde_json::Value::Null, stats: BTreeMap::new() }
    }
}

/// Teacher-forced scoring with the generator's model: for each `(context, continuation)`,
/// Σ log p(continuation tokens | context), in nats, in the model's own tokenization
/// (special tokens as single ids).
pub trait Scorer {
    fn score(&self, items: &[(String, String)]) -> Result<Vec<f64>>;
}

/// A document → synthetic documents transformation (see the module doc).
pub trait Augmenter: Send + Sync {
    /// Its name as scripts write it (`rephrase`, a plugin's name).
    fn name(&self) -> &str;

    /// Everything that decides its output besides the source documents and the cell's
    /// sampling settings: settings, prompt templates, a plugin's file blake3. Enters the
    /// cell id.
    fn identity(&self) -> serde_json::Value;

    /// The generations document `doc` needs, in order. Must be a pure function of the
    /// document and the settings (a resumed cell plans the same requests and finds them
    /// in the request cache). An empty list is allowed (the document contributes only
    /// what `assemble` makes without answers).
    fn plan(&self, doc: &SourceText) -> Result<Vec<AugRequest>>;

    /// The output documents of `doc`, from the answers to its planned requests (same order
    /// and length as `plan` returned). `scorer` is the generator's model when it can score
    /// (a local generator), else None.
    fn assemble(&self, doc: &SourceText, answers: &[AugAnswer], scorer: Option<&dyn Scorer>) -> Result<Vec<AugDoc>>;

    /// Whether the cell shuffles the output documents across the whole cell (seeded by the
    /// cell's seed), e.g. Kim et al.'s "simple" control of stitched megadocs.
    fn shuffles_output(&self) -> bool {
        false
    }

    /// Literal strings in the output that the output corpus's tokenizer must map to single
    /// ids appended after the base vocabulary, in this order.
    fn special_tokens(&self) -> Vec<String> {
        Vec::new()
    }
}
