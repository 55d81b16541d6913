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
//!
//! Built-ins, one file each: [`template`] (one prompt template, the `generate` default),
//! [`rephrase`] (WRAP styles), [`megadoc`] (`megadoc_stitch`, `megadoc_simple`,
//! `megadoc_stretch`). [`builtin`] makes one from a script's `augmenter` settings; a name that
//! is no built-in is a plugin (`crate::plugin::augmenter`).
use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;

pub mod megadoc;
pub mod rephrase;
pub mod template;

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
    /// Context tokens to keep free beyond the completion when the cell fits the prompt to a
    /// local model's context: room for what `assemble` later scores around the answer (the
    /// BoLT E-step scores the answer re-encoded, which may take a few more tokens).
    pub reserve_tokens: usize,
}

impl AugRequest {
    /// A request with the cell's sampling settings.
    pub fn new(prompt: impl Into<String>, tag: impl Into<String>) -> AugRequest {
        AugRequest { prompt: prompt.into(), max_tokens: None, temperature: None, stop: None, tag: tag.into(), reserve_tokens: 0 }
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

/// Splits a text into `n` pieces of (as nearly as the tokenization allows) equal token
/// counts, in the source corpus's tokenizer; the pieces are substrings that join back to
/// the text exactly. Handed to augmenters that need token geometry (`megadoc_stretch`).
pub type TokenSplitter = Arc<dyn Fn(&str, usize) -> Vec<String> + Send + Sync>;

/// What a built-in augmenter is constructed with besides its settings.
#[derive(Clone)]
pub struct AugContext {
    /// The cell's `n_per_doc` (G, generations per document).
    pub n_per_doc: usize,
    /// The source corpus tokenizer's splitter.
    pub splitter: TokenSplitter,
}

/// The built-in augmenters' names (anything else is looked up as a plugin).
pub const BUILTINS: &[&str] = &["template", "rephrase", "megadoc_stitch", "megadoc_simple", "megadoc_stretch", "latent_thoughts"];

/// The script's `augmenter` value: `"name"` or `#{ name: "name", <settings> }` → (name,
/// settings). Errors name the key.
pub fn parse_spec(value: &serde_json::Value) -> Result<(String, serde_json::Map<String, serde_json::Value>), String> {
    match value {
        serde_json::Value::String(name) if !name.is_empty() => Ok((name.clone(), serde_json::Map::new())),
        serde_json::Value::Object(m) => {
            let mut m = m.clone();
            let name = match m.remove("name") {
                Some(serde_json::Value::String(n)) if !n.is_empty() => n,
                Some(other) => return Err(format!("key \"augmenter.name\": expected a non-empty string, got {other}")),
                None => return Err("key \"augmenter.name\": missing; #{ name: \"rephrase\", … } (built-ins: template, rephrase, megadoc_stitch, megadoc_simple, megadoc_stretch, latent_thoughts, or a plugin's name)".into()),
            };
            Ok((name, m))
        }
        other => Err(format!("key \"augmenter\": expected a name (\"rephrase\") or a map #{{ name: \"rephrase\", … }}, got {other}")),
    }
}

/// The built-in augmenter `name` with `settings`, or None when `name` is no built-in.
/// Errors name the key (`augmenter.templates.qa`).
pub fn builtin(name: &str, settings: &serde_json::Map<String, serde_json::Value>, ctx: &AugContext) -> Option<Result<Box<dyn Augmenter>, String>> {
    let made: Result<Box<dyn Augmenter>, String> = match name {
        "template" => template::TemplateAugmenter::from_settings(settings, ctx.n_per_doc).map(|a| Box::new(a) as Box<dyn Augmenter>),
        "rephrase" => rephrase::Rephrase::from_settings(settings, ctx.n_per_doc, &[]).map(|a| Box::new(a) as Box<dyn Augmenter>),
        "megadoc_stitch" => megadoc::MegadocStitch::from_settings(settings, ctx.n_per_doc).map(|a| Box::new(a) as Box<dyn Augmenter>),
        "megadoc_simple" => megadoc::MegadocSimple::from_settings(settings, ctx.n_per_doc).map(|a| Box::new(a) as Box<dyn Augmenter>),
        "megadoc_stretch" => megadoc::MegadocStretch::from_settings(settings, ctx.n_per_doc, ctx.splitter.clone()).map(|a| Box::new(a) as Box<dyn Augmenter>),
        "latent_thoughts" => crate::generate::latent::LatentThoughts::from_json(&serde_json::Value::Object(settings.clone())).map(|a| Box::new(a) as Box<dyn Augmenter>),
        _ => return None,
    };
    Some(made)
}

/// Fills `{name}` placeholders of `template` in one pass (text substituted for one
/// placeholder is never searched for another).
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    'outer: while !rest.is_empty() {
        if rest.starts_with('{') {
            for (key, value) in values {
                if let Some(after) = rest.strip_prefix(key) {
                    out.push_str(value);
                    rest = after;
                    continue 'outer;
                }
            }
        }
        let c = rest.chars().next().expect("non-empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A string setting (`augmenter.<key>`), or `default`.
pub(crate) fn string_setting(settings: &serde_json::Map<String, serde_json::Value>, key: &str, default: &str) -> Result<String, String> {
    match settings.get(key) {
        None => Ok(default.to_string()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("key \"augmenter.{key}\": expected a string, got {other}")),
    }
}

/// Refuses keys outside `known` (the message suggests the likely one).
pub(crate) fn check_keys(settings: &serde_json::Map<String, serde_json::Value>, known: &[&str]) -> Result<(), String> {
    match settings.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(crate::keys::unknown_key("augmenter.", k, known)),
        None => Ok(()),
    }
}

/// Splits `text` into `n` pieces of equal token counts under `tokenizer` (see
/// [`TokenSplitter`]): the ids are cut at multiples of len/n and each cut is mapped back to
/// the longest decoded prefix that is a prefix of the text on a character boundary, so the
/// pieces are exact substrings even where a token holds part of a multi-byte character.
pub fn split_equal_tokens(tokenizer: &dctk_data::Tokenizer, text: &str, n: usize) -> Vec<String> {
    let n = n.max(1);
    let ids = tokenizer.encode(text);
    let mut cuts = Vec::with_capacity(n + 1);
    cuts.push(0usize);
    for k in 1..n {
        let target = k * ids.len() / n;
        let prev = *cuts.last().expect("non-empty");
        // Back off a few tokens when the prefix ends inside a character (a lossy decode).
        let mut at = None;
        for c in (target.saturating_sub(4)..=target).rev() {
            if let Ok(prefix) = tokenizer.decode(&ids[..c]) {
                if text.starts_with(&prefix) && text.is_char_boundary(prefix.len()) {
                    at = Some(prefix.len());
                    break;
                }
            }
        }
        // A tokenizer whose decode does not reproduce the text (normalizing): cut by characters.
        let at = at.unwrap_or_else(|| {
            let chars: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            chars[(k * (chars.len() - 1)) / n]
        });
        cuts.push(at.max(prev));
    }
    cuts.push(text.len());
    cuts.windows(2).map(|w| text[w[0]..w[1]].to_string()).collect()
}

/// A [`TokenSplitter`] over `tokenizer`.
pub fn token_splitter(tokenizer: dctk_data::Tokenizer) -> TokenSplitter {
    Arc::new(move |text: &str, n: usize| split_equal_tokens(&tokenizer, text, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_each_placeholder_once() {
        assert_eq!(render("A {prefix} B {suffix} C", &[("{prefix}", "x {suffix} y"), ("{suffix}", "z")]), "A x {suffix} y B z C");
        assert_eq!(render("é{document}ü", &[("{document}", "d")]), "édü");
    }

    #[test]
    fn pieces_have_equal_tokens_and_join_back() {
        let t = dctk_data::Tokenizer::gpt2().unwrap();
        let text = "The quick brown fox jumps over the lazy dog. Ünïcödé ✓ text, and some more words to split here.";
        for n in [1, 2, 3, 5, 8] {
            let pieces = split_equal_tokens(&t, text, n);
            assert_eq!(pieces.len(), n);
            assert_eq!(pieces.concat(), text);
            let counts: Vec<usize> = pieces.iter().map(|p| t.encode(p).len()).collect();
            let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
            assert!(hi - lo <= 3, "{n}: {counts:?}");
        }
        assert_eq!(split_equal_tokens(&t, "", 3), vec!["", "", ""]);
    }

    #[test]
    fn augmenter_values_parse_and_errors_name_the_key() {
        assert_eq!(parse_spec(&serde_json::json!("rephrase")).unwrap().0, "rephrase");
        let (n, s) = parse_spec(&serde_json::json!({"name": "megadoc_stitch", "separator": "|"})).unwrap();
        assert_eq!((n.as_str(), s["separator"].as_str()), ("megadoc_stitch", Some("|")));
        assert!(parse_spec(&serde_json::json!({"styles": []})).unwrap_err().contains("augmenter.name"));
        assert!(parse_spec(&serde_json::json!(3)).unwrap_err().contains("key \"augmenter\""));
    }
}
