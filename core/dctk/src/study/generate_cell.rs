//! Generation cells: a script's `generate(#{...})` → a cell whose output is a corpus domain
//! of generated text, planned, cached, locked and resumed like a training cell.
//!
//! The id is blake3 over the cell's named inputs: kind `generate`; the generator's identity
//! (for `local`, the source run's id, which fixes its weights, and the device kind; for
//! `openai`, its base URL and model); the source data (corpus tokenizer, the selected
//! domains' shard hashes); the template and its name; `n_per_doc`, `max_docs`, the
//! sampling settings (`max_tokens`, `temperature`, `top_p`, `top_k`, `stop`, `seed`); the
//! output's domain name and validation fraction; and the versions. Throughput settings
//! (`concurrency`, `timeout_s`, `max_retries`, `batch_size`) and the API key decide no
//! number and are left out.
//!
//! What the cell does ([`execute`]): for each selected domain, its first `max_docs`
//! *training* documents in budget order (never held-out ones: text generated from them
//! and trained on would leak the validation split), decoded with the corpus tokenizer,
//! are handed to the cell's *augmenter* ([`crate::generate::augment`]; `template` — the
//! `template` key, G = `n_per_doc` samples of one prompt — unless `augmenter` names a
//! built-in or a plugin). Its `plan` gives each document's requests; request j of a
//! document is asked with seed `(seed + h(domain, doc, j)) mod 2^53` (distinct per
//! request, reproducible, exact in any JSON parser). A document whose longest prompt would
//! not fit the model's context (`local`: `max_seq_len − max_tokens` of that request; or
//! `max_prompt_tokens` when set) is truncated (its beginning kept) and planned again, and
//! counted in `truncated_prompts`; when even the empty document does not fit, its requests
//! are skipped and counted in `skipped_prompts`. Every request of every document goes
//! through the request cache ([`crate::generate::request_cache`]) in one batched call, so a
//! rerun of a killed or failed cell sends only what was never answered; then `assemble`
//! makes each document's outputs. An augmenter that `shuffles_output` has the output
//! documents permuted (seeded by the cell's seed; each row records its unshuffled position).
//!
//! Output, in `runs/<id>/`:
//!
//! ```text
//! generated.jsonl         the generated documents, one JSON object per line (text + provenance)
//! corpus/                 a dctk-data corpus (token shards + manifest.ron) of one domain, kind
//!                         Synthetic { generator, source_domains }, with the source's tokenizer
//! corpus/documents.jsonl  per generated document, in corpus order: its source document
//!                         (domain, index in ingest order, content key), the augmenter,
//!                         the requests it was made from (`uses`, each with tag, seed and
//!                         finish reason), the augmenter's `meta`, truncation, tokens
//!                         (the corpus format has no per-document metadata: this sidecar)
//! result.ron              requests, cache hits, sent, failed, skipped, generated docs and
//!                         tokens, the augmenter's summed `augmenter_stats`, seconds
//! ```
use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use dctk_data::{Corpus, DomainInput, DomainKind, IngestConfig, Tokenizer};
use serde::{Deserialize, Serialize};

use super::inputs::CellInputs;
use super::{write_atomic, write_record, Status};
use crate::env::{self, Versions};
use crate::keys::unknown_key;
use crate::generate::augment::{self, AugAnswer, AugContext, AugDoc, AugRequest, Augmenter, Scorer, SourceText};
use crate::generate::client::{OpenAiGenerator, OpenAiSettings};
#[cfg(feature = "torch")]
use crate::generate::generator::LocalGenerator;
use crate::generate::generator::{Generator, TextRequest, DEFAULT_LOCAL_BATCH};
use crate::generate::request_cache::{request_cache_dir, CachedGenerator, RequestCache};
#[cfg(feature = "torch")]
use crate::generate::LoadedModel;
use crate::generate::SamplingParams;
use crate::train::ExecOptions;

pub use crate::generate::augment::template::DOCUMENT_PLACEHOLDER;

/// The generator of a cell, as planned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GeneratorSpec {
    /// A finished dctk run's checkpoint, in the cell's process.
    Local {
        run_id: String,
        /// The source run's directory on the planning machine.
        run_dir: String,
        /// `auto`, `cpu`, `cuda`, `cuda:N`.
        device: String,
        /// Prompts decoded together (decides no number).
        batch_size: usize,
    },
    /// An OpenAI-compatible server.
    OpenAi(OpenAiSettings),
}

/// A finished run a `local` generator names (the script passes its `Run` handle).
#[derive(Clone, Debug)]
pub struct SourceRun {
    pub id: String,
    pub dir: PathBuf,
}

const LOCAL_KEYS: &[&str] = &["kind", "run", "device", "batch_size"];
const OPENAI_KEYS: &[&str] = &["kind", "base_url", "model", "api_key_env", "concurrency", "timeout_s", "max_retries"];


impl GeneratorSpec {
    /// From the script's generator map (`run` already taken out as `source`). Errors name
    /// the key (`generator.base_url`).
    pub fn from_json(value: &serde_json::Value, source: Option<SourceRun>) -> Result<GeneratorSpec, String> {
        let map = value.as_object().ok_or("key \"generator\": expected a map #{ kind: \"local\", run: … } or #{ kind: \"openai\", base_url: …, model: … }")?;
        let kind = map.get("kind").and_then(|k| k.as_str()).ok_or("key \"generator.kind\": missing; \"local\" or \"openai\"")?;
        let known = match kind {
            "local" => LOCAL_KEYS,
            "openai" => OPENAI_KEYS,
            other => return Err(format!("key \"generator.kind\": \"{other}\" is not a generator kind; \"local\" or \"openai\"")),
        };
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(unknown_key("generator.", k, known));
        }
        match kind {
            "local" => {
                let run = source.ok_or("key \"generator.run\": a local generator needs the finished run to sample from (a `train` handle)")?;
                let device = match map.get("device") {
                    None => "auto".to_string(),
                    Some(v) => v.as_str().ok_or("key \"generator.device\": expected a string (auto, cpu, cuda, cuda:N)")?.to_string(),
                };
                env::resolve_device(&device).map_err(|e| format!("key \"generator.device\": {e}"))?;
                let batch_size = match map.get("batch_size") {
                    None => DEFAULT_LOCAL_BATCH,
                    Some(v) => v.as_u64().filter(|b| (1..=4096).contains(b)).ok_or("key \"generator.batch_size\": expected an integer in 1..=4096")? as usize,
                };
                Ok(GeneratorSpec::Local { run_id: run.id, run_dir: run.dir.display().to_string(), device, batch_size })
            }
            _ => {
                let mut m = map.clone();
                m.remove("kind");
                let settings: OpenAiSettings = serde_path_to_error::deserialize(serde_json::Value::Object(m)).map_err(|e| {
                    let inner = e.inner().to_string();
                    match inner.strip_prefix("missing field ") {
                        Some(f) => format!("key \"generator.{}\": missing (an openai generator needs base_url and model)", f.trim_matches('`')),
                        None => format!("key \"generator.{}\": {inner}", e.path()),
                    }
                })?;
                settings.validate().map_err(|e| e.replacen("key \"", "key \"generator.", 1))?;
                Ok(GeneratorSpec::OpenAi(settings))
            }
        }
    }

    /// The named inputs of the generator (what decides the numbers), under `generator.`.
    fn insert_inputs(&self, inputs: &mut CellInputs) {
        match self {
            GeneratorSpec::Local { run_id, device, .. } => {
                inputs.insert("generator.kind", "local");
                inputs.insert("generator.run", run_id);
                let kind = env::resolve_device(device).map(env::device_name).unwrap_or_else(|_| device.clone());
                inputs.insert("generator.device", kind.split(':').next().unwrap_or("cpu"));
            }
            GeneratorSpec::OpenAi(s) => {
                inputs.insert("generator.kind", "openai");
                inputs.insert("generator.base_url", s.base_url.trim().trim_end_matches('/'));
                inputs.insert("generator.model", &s.model);
            }
        }
    }
}

/// `generate(#{...})`'s settings other than `generator` (the manual of the function).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateSpec {
    /// The cell's label (default: `file:line` of the call).
    #[serde(default)]
    pub name: Option<String>,
    /// The documents to generate from: a corpus directory or raw `.jsonl` (as `train`'s
    /// `corpus`), or another `generate` handle. Default for a `local` generator: its run's corpus.
    #[serde(default)]
    pub corpus: Option<String>,
    /// Generate from this domain only (default: every domain of the corpus).
    #[serde(default)]
    pub domain: Option<String>,
    /// The prompt of the `template` augmenter: `{document}` is replaced by each source
    /// document. Required unless `augmenter` is given.
    #[serde(default)]
    pub template: Option<String>,
    /// The augmenter: `"rephrase"` or `#{ name: "rephrase", <settings> }` (a built-in or a
    /// plugin's name; see [`crate::generate::augment`]). Default: `template`.
    #[serde(default)]
    pub augmenter: Option<serde_json::Value>,
    /// Recorded with every generated document (with the template's blake3).
    #[serde(default = "default_template_name")]
    pub template_name: String,
    /// Requests per source document (G of the augmenters).
    #[serde(default = "one")]
    pub n_per_doc: usize,
    /// At most this many source documents per domain (default: all training documents).
    #[serde(default)]
    pub max_docs: Option<usize>,
    /// Generate from the documents of this unique-token budget only: per selected domain,
    /// the nested budget prefix a `train` with `unique_tokens` on that domain alone serves
    /// (its last document cut where the budget ends), so a synthetic stream derives only
    /// from the real documents its run sees (Kim et al. 2026's equal-real-tokens comparison).
    #[serde(default)]
    pub unique_tokens: Option<u64>,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    #[serde(default)]
    pub top_k: usize,
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub seed: u64,
    /// Prompts longer than this many tokens have their document truncated (`local`
    /// default: the model's `max_seq_len − max_tokens`; `openai`: measured with the source
    /// corpus's tokenizer, no limit unless given).
    #[serde(default)]
    pub max_prompt_tokens: Option<usize>,
    /// The generated domain's name.
    #[serde(default = "default_output_domain")]
    pub output_domain: String,
    /// Held-out fraction of the generated corpus (per document, by content, as ingest).
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
}

fn default_template_name() -> String {
    "template".into()
}
fn one() -> usize {
    1
}
fn default_max_tokens() -> usize {
    128
}
fn default_temperature() -> f64 {
    1.0
}
fn default_top_p() -> f64 {
    1.0
}
fn default_output_domain() -> String {
    "generated".into()
}
fn default_val_fraction() -> f64 {
    dctk_data::DEFAULT_VAL_FRACTION
}

/// Every key of `generate(#{...})`.
pub const GENERATE_KEYS: &[&str] = &[
    "generator", "name", "corpus", "domain", "template", "augmenter", "template_name", "n_per_doc", "max_docs", "unique_tokens", "max_tokens", "temperature", "top_p",
    "top_k", "stop", "seed", "max_prompt_tokens", "output_domain", "val_fraction",
];

impl GenerateSpec {
    /// From the script's map without `generator`; errors name the key.
    pub fn from_json(value: serde_json::Value) -> Result<GenerateSpec, String> {
        let spec: GenerateSpec = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if let Some(rest) = inner.strip_prefix("unknown field ") {
                let key = rest.split(',').next().unwrap_or(rest).trim_matches('`');
                return unknown_key("", key, GENERATE_KEYS);
            }
            if let Some(f) = inner.strip_prefix("missing field ") {
                return format!("missing required key \"{}\"", f.trim_matches('`'));
            }
            format!("key \"{path}\": {inner}")
        })?;
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), String> {
        match (&self.template, &self.augmenter) {
            (Some(_), Some(_)) => return Err("key \"template\": give either a \"template\" or an \"augmenter\" (an augmenter's prompts are its settings, e.g. augmenter: #{ name: \"rephrase\", templates: #{ qa: \"…{document}…\" } })".into()),
            (None, None) => return Err("missing required key \"template\" (a prompt with {document}) or \"augmenter\" (\"rephrase\", \"megadoc_stitch\", \"megadoc_simple\", \"megadoc_stretch\", \"latent_thoughts\", or a plugin's name)".into()),
            (Some(t), None) => {
                augment::template::TemplateAugmenter::new(t.clone(), self.template_name.clone(), self.n_per_doc)?;
            }
            (None, Some(a)) => {
                augment::parse_spec(a)?;
            }
        }
        if self.n_per_doc == 0 {
            return Err("key \"n_per_doc\": must be at least 1".into());
        }
        if self.unique_tokens == Some(0) {
            return Err("key \"unique_tokens\": must be at least 1 (leave it out for every document)".into());
        }
        if self.max_docs == Some(0) {
            return Err("key \"max_docs\": must be at least 1 (leave it out for every document)".into());
        }
        if self.max_tokens == 0 {
            return Err("key \"max_tokens\": must be at least 1".into());
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!("key \"temperature\": {} must be ≥ 0 (0 = greedy)", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("key \"top_p\": {} must be in (0, 1]", self.top_p));
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err("key \"stop\": a stop sequence may not be empty".into());
        }
        if self.output_domain.is_empty() || !self.output_domain.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return Err(format!("key \"output_domain\": \"{}\" must be [A-Za-z0-9_.-]+", self.output_domain));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(format!("key \"val_fraction\": {} must be in [0, 1)", self.val_fraction));
        }
        Ok(())
    }

    /// The sampling settings of request `seed`.
    fn params(&self, seed: u64) -> SamplingParams {
        SamplingParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            stop: self.stop.clone(),
            seed,
            ignore_eot: false,
        }
    }

    /// The cell's augmenter: `template` unless `augmenter` is set; a name that is no
    /// built-in loads the plugin of that name. `tokenizer` is the source corpus's (the
    /// token geometry of `megadoc_stretch`). Errors name the key.
    pub fn augmenter(&self, tokenizer: &Tokenizer) -> Result<Box<dyn Augmenter>> {
        let Some(value) = &self.augmenter else {
            let template = self.template.clone().unwrap_or_default();
            let a = augment::template::TemplateAugmenter::new(template, self.template_name.clone(), self.n_per_doc).map_err(anyhow::Error::msg)?;
            return Ok(Box::new(a));
        };
        let (name, settings) = augment::parse_spec(value).map_err(anyhow::Error::msg)?;
        let ctx = AugContext { n_per_doc: self.n_per_doc, splitter: augment::token_splitter(tokenizer.clone()) };
        match augment::builtin(&name, &settings, &ctx) {
            Some(made) => made.map_err(anyhow::Error::msg),
            None => {
                let a = crate::plugin::augmenter::PluginAugmenter::load(&name, &serde_json::Value::Object(settings)).map_err(|e| anyhow!("key \"augmenter\": {e:#}"))?;
                Ok(Box::new(a))
            }
        }
    }
}

/// The source data's identity: the tokenizer and each selected domain's shards and split.
pub fn source_fingerprint(corpus: &Corpus, domains: &[String]) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update(b"dctk/generate-source/v1\0");
    h.update(corpus.manifest.tokenizer.hash.as_bytes());
    for name in domains {
        let d = corpus.domain(name).map_err(|e| anyhow!("{}", crate::corpus::describe(&e)))?;
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(&d.manifest.val_ppm.to_le_bytes());
        for s in &d.manifest.shards {
            h.update(s.tokens_blake3.as_bytes());
            h.update(s.index_blake3.as_bytes());
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// The domains a spec selects, checked against the corpus.
pub fn select_domains(corpus: &Corpus, domain: Option<&str>) -> Result<Vec<String>, String> {
    let names: Vec<String> = corpus.domain_names().iter().map(|s| s.to_string()).collect();
    match domain {
        None => Ok(names),
        Some(d) if names.iter().any(|n| n == d) => Ok(vec![d.to_string()]),
        Some(d) => Err(format!("key \"domain\": unknown domain \"{d}\"; the corpus has: {}", names.join(", "))),
    }
}

/// One source document: its domain, where it is, its index in the domain's ingest order,
/// and its ids.
struct SourceDoc {
    domain: String,
    doc: dctk_data::DocRef,
    index: usize,
    ids: Vec<u32>,
}

/// Source documents (per domain: its training documents in budget order, at most
/// `max_docs`), without their ids unless `with_ids`.
fn source_docs(corpus: &Corpus, domains: &[String], max_docs: Option<usize>, unique_tokens: Option<u64>, with_ids: bool) -> Result<Vec<SourceDoc>> {
    let mut out = Vec::new();
    for name in domains {
        let d = corpus.domain(name).map_err(|e| anyhow!("{}", crate::corpus::describe(&e)))?;
        // The index of each document in ingest order: how `documents.jsonl` names it.
        let position: std::collections::HashMap<(u32, u64), usize> = d.docs().iter().enumerate().map(|(i, r)| ((r.shard, r.start), i)).collect();
        let train: Vec<dctk_data::DocRef> = d.train_docs().into_iter().filter(|r| r.tokens > 0).collect();
        // The training split as served (one span per document, in the same order), or the
        // nested budget prefix `train` serves for this many unique tokens (its last document
        // cut where the budget ends).
        let subset = match unique_tokens {
            Some(budget) => Some(d.unique_subset(budget).map_err(|e| anyhow!("key \"unique_tokens\": {}", crate::corpus::describe(&e)))?),
            None if with_ids => Some(d.train_subset()),
            None => None,
        };
        if let Some(s) = &subset {
            if s.spans.len() > train.len() || (unique_tokens.is_none() && s.spans.len() != train.len()) {
                bail!("domain \"{name}\": a document longer than 2^32 tokens cannot be a generation source");
            }
        }
        let count = subset.as_ref().map_or(train.len(), |s| s.spans.len());
        for (k, r) in train.into_iter().enumerate().take(count.min(max_docs.unwrap_or(usize::MAX))) {
            let ids = if with_ids { subset.as_ref().map(|s| s.span_ids(k)).unwrap_or_default() } else { Vec::new() };
            out.push(SourceDoc { domain: name.clone(), doc: r, index: position[&(r.shard, r.start)], ids });
        }
    }
    Ok(out)
}

/// A planned generation cell.
pub struct GenerateCell {
    pub id: String,
    pub label: String,
    pub dir: PathBuf,
    pub spec: GenerateSpec,
    pub generator: GeneratorSpec,
    /// The source corpus directory (ingested).
    pub corpus_dir: PathBuf,
    pub domains: Vec<String>,
    pub source_fingerprint: String,
    pub tokenizer: String,
    /// Source documents × n_per_doc: exact for the built-in augmenters (G requests per
    /// document, before prompts that cannot fit are skipped); an estimate for a plugin,
    /// whose count is known when the cell plans its documents.
    pub requests: u64,
    pub inputs: CellInputs,
}

/// Everything a cell process needs (`runs/<id>/manifest.ron`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GenerateManifest {
    /// Always "generate": what `dctk cell exec` dispatches on.
    pub kind: String,
    pub run_id: String,
    pub label: String,
    pub spec: GenerateSpec,
    pub generator: GeneratorSpec,
    pub corpus_dir: String,
    pub domains: Vec<String>,
    pub source_fingerprint: String,
    pub requests: u64,
    pub versions: Versions,
    pub inputs: CellInputs,
}

/// What a generation cell produced (`result.ron`; what a `generate` handle reads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerateResult {
    pub run_id: String,
    pub run_dir: String,
    /// "done".
    pub status: String,
    /// The generated corpus directory (what `train(#{corpus: handle})` reads).
    pub corpus: String,
    /// Its one domain.
    pub domain: String,
    /// The backend identity of the request cache (`local:<weights>`, `openai:<url>#<model>`).
    pub generator: String,
    pub requests: u64,
    pub cache_hits: u64,
    pub sent: u64,
    pub failed: u64,
    /// Prompts too long even with an empty document (not asked).
    pub skipped_prompts: u64,
    /// Prompts whose document was truncated to fit.
    pub truncated_prompts: u64,
    pub generated_docs: u64,
    /// Generated tokens, in the corpus tokenizer's ids.
    pub generated_tokens: u64,
    /// Of those, in the training and the held-out split (`unique_tokens` and
    /// `val_tokens` of a `train` on this corpus are bounded by them).
    pub train_tokens: u64,
    pub val_tokens: u64,
    /// The augmenter's name (`template`, `rephrase`, a plugin's).
    #[serde(default)]
    pub augmenter: String,
    /// Each output document's `AugDoc.stats`, summed over the cell.
    #[serde(default)]
    pub augmenter_stats: BTreeMap<String, f64>,
    /// Whether the output documents were permuted (`shuffles_output`).
    #[serde(default)]
    pub shuffled: bool,
    pub seconds: f64,
}

impl GenerateCell {
    pub fn manifest(&self) -> GenerateManifest {
        GenerateManifest {
            kind: "generate".into(),
            run_id: self.id.clone(),
            label: self.label.clone(),
            spec: self.spec.clone(),
            generator: self.generator.clone(),
            corpus_dir: self.corpus_dir.display().to_string(),
            domains: self.domains.clone(),
            source_fingerprint: self.source_fingerprint.clone(),
            requests: self.requests,
            versions: env::versions(),
            inputs: self.inputs.clone(),
        }
    }

    /// Cached answers of this cell's requests, when it is cheap to tell (an `openai`
    /// generator, whose cache identity is known without loading weights), for `dctk plan`.
    pub fn cached_requests(&self, runs_root: &Path) -> Option<u64> {
        let GeneratorSpec::OpenAi(settings) = &self.generator else { return None };
        let corpus = Corpus::open_with(&self.corpus_dir, dctk_data::OpenOptions { verify_hashes: false }).ok()?;
        let tokenizer = corpus.tokenizer().ok()?;
        let cache = RequestCache::new(request_cache_dir(runs_root));
        let augmenter = self.spec.augmenter(&tokenizer).ok()?;
        // The prompts as the cell process builds them (an openai limit counts in the source's tokens).
        let count = |text: &str| tokenizer.encode(text).len();
        let limit = self.spec.max_prompt_tokens.map(|m| PromptLimit { context: None, given: Some(m), count: &count });
        let plan = plan_requests(&self.spec, &*augmenter, &corpus, &tokenizer, &self.domains, limit.as_ref(), &self.label).ok()?;
        let identity = settings.identity();
        Some(plan.requests.iter().filter(|r| cache.get(&identity, r).is_some()).count() as u64)
    }
}

/// The named inputs of a generation cell (see the module doc). `augmenter` is the
/// augmenter's [`Augmenter::identity`].
pub fn named_inputs(spec: &GenerateSpec, generator: &GeneratorSpec, augmenter: &serde_json::Value, source_fingerprint: &str, tokenizer: &str, domains: &[String], versions: &Versions) -> Result<CellInputs> {
    let mut inputs = CellInputs::default();
    inputs.insert("kind", "generate");
    generator.insert_inputs(&mut inputs);
    inputs.insert("data.fingerprint", source_fingerprint);
    inputs.insert("data.tokenizer", tokenizer);
    inputs.insert("data.domains", domains.join(","));
    inputs.insert_json("augmenter", augmenter);
    let mut id_spec = serde_json::to_value(spec)?;
    if let Some(m) = id_spec.as_object_mut() {
        // The label and the corpus path decide no number (the data is identified by content);
        // the template and the augmenter's settings are in the augmenter's identity.
        for key in ["name", "corpus", "domain", "template", "template_name", "augmenter"] {
            m.remove(key);
        }
    }
    inputs.insert_json("spec", &id_spec);
    inputs.insert("version.dctk", &versions.dctk);
    inputs.insert("version.build", &versions.build);
    if matches!(generator, GeneratorSpec::Local { .. }) {
        inputs.insert("version.tch", &versions.tch);
        inputs.insert("version.libtorch", &versions.libtorch);
    }
    Ok(inputs)
}

/// Plans the cell: `corpus` is the resolved source corpus (ingested) and its directory.
/// The augmenter is made here too (a malformed template or unknown plugin fails the plan).
pub fn prepare_generate(spec: &GenerateSpec, generator: GeneratorSpec, label: &str, corpus: &Corpus, runs_root: &Path) -> Result<GenerateCell> {
    let domains = select_domains(corpus, spec.domain.as_deref()).map_err(anyhow::Error::msg)?;
    let fingerprint = source_fingerprint(corpus, &domains)?;
    let docs = source_docs(corpus, &domains, spec.max_docs, spec.unique_tokens, false)?;
    if docs.is_empty() {
        bail!("key \"corpus\": {} has no training documents in {} to generate from", corpus.dir.display(), domains.join(", "));
    }
    let source_tokenizer = corpus.tokenizer().map_err(|e| anyhow!("{}: {}", corpus.dir.display(), crate::corpus::describe(&e)))?;
    let augmenter = spec.augmenter(&source_tokenizer)?;
    let info = &corpus.manifest.tokenizer;
    let tokenizer = format!("{} ({})", info.kind, &info.hash[..16.min(info.hash.len())]);
    let inputs = named_inputs(spec, &generator, &augmenter.identity(), &fingerprint, &tokenizer, &domains, &env::versions())?;
    let id = inputs.id();
    Ok(GenerateCell {
        dir: super::run_dir(runs_root, &id),
        id,
        label: label.to_string(),
        spec: spec.clone(),
        generator,
        corpus_dir: corpus.dir.clone(),
        domains,
        source_fingerprint: fingerprint,
        tokenizer,
        requests: (docs.len() * spec.n_per_doc) as u64,
        inputs,
    })
}

/// Writes the cell's manifest (before it first runs).
pub fn materialize(cell: &GenerateCell) -> Result<()> {
    fs::create_dir_all(&cell.dir).with_context(|| format!("creating {}", cell.dir.display()))?;
    if !cell.dir.join("manifest.ron").exists() {
        write_record(&cell.dir.join("manifest.ron"), &cell.manifest())?;
    }
    Ok(())
}

/// One source document as planned: where it came from, its (possibly truncated) text and
/// its requests (`first..first + requests.len()` in the cell's request list).
struct DocPlan {
    domain: String,
    /// Index of the source document in its domain's ingest order.
    index: usize,
    key: u64,
    text: String,
    truncated: bool,
    first: usize,
    requests: Vec<AugRequest>,
}

impl DocPlan {
    fn source(&self) -> SourceText<'_> {
        SourceText { domain: &self.domain, index: self.index, key: self.key, text: &self.text }
    }
}

/// Every request of the cell, in order (domain, document, request), with the documents.
struct CellPlan {
    docs: Vec<DocPlan>,
    requests: Vec<TextRequest>,
    /// Requests not asked because even the empty document's prompts exceed the limit.
    skipped: u64,
}

/// The request seed of request `j` of a document: `(seed + h(domain, doc, j)) mod 2^53`.
fn request_seed(seed: u64, domain: &str, doc_key: u64, doc_index: usize, sample: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"dctk/generate-seed/v1\0");
    h.update(domain.as_bytes());
    h.update(&[0]);
    h.update(&doc_key.to_le_bytes());
    h.update(&(doc_index as u64).to_le_bytes());
    h.update(&(sample as u64).to_le_bytes());
    let hash = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    seed.wrapping_add(hash) & ((1u64 << 53) - 1)
}

/// How many tokens a prompt may have: `local` — the model's context less the request's
/// completion, capped by `max_prompt_tokens`; `openai` — `max_prompt_tokens`.
struct PromptLimit<'a> {
    /// The model's `max_seq_len` (local generators).
    context: Option<usize>,
    given: Option<usize>,
    count: &'a dyn Fn(&str) -> usize,
}

impl PromptLimit<'_> {
    fn max_prompt_tokens(&self, max_tokens: usize) -> usize {
        match (self.context, self.given) {
            (Some(c), g) => g.map_or(c.saturating_sub(max_tokens), |g| g.min(c.saturating_sub(max_tokens))),
            (None, Some(g)) => g,
            (None, None) => usize::MAX,
        }
    }
}

/// "augmenter `rephrase`: document quotes#3 (key …) of cell gen (id)": who failed where.
fn at_document(augmenter: &dyn Augmenter, domain: &str, index: usize, key: u64, cell: &str) -> String {
    format!("augmenter `{}`: document {domain}#{index} (domain \"{domain}\", index {index}, key {key:016x}) in cell {cell}", augmenter.name())
}

/// Runs an augmenter call, turning an error or a panic into an error naming the document and cell.
fn guarded<T>(what: impl Fn() -> String, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(anyhow!("{}: {e:#}", what())),
        Err(p) => Err(anyhow!("{}: panicked: {}", what(), dctk_plugin_sdk::guest::panic_message(&*p))),
    }
}

/// Plans every document of the cell through `augmenter` (see the module doc).
fn plan_requests(spec: &GenerateSpec, augmenter: &dyn Augmenter, corpus: &Corpus, tokenizer: &Tokenizer, domains: &[String], limit: Option<&PromptLimit>, cell: &str) -> Result<CellPlan> {
    let docs = source_docs(corpus, domains, spec.max_docs, spec.unique_tokens, true)?;
    let mut plan = CellPlan { docs: Vec::new(), requests: Vec::new(), skipped: 0 };
    for SourceDoc { domain, doc, index, ids } in docs {
        let what = || at_document(augmenter, &domain, index, doc.key, cell);
        let mut keep = ids.len();
        let mut text = tokenizer.decode(&ids)?;
        let mut truncated = false;
        let requests = loop {
            let src = SourceText { domain: &domain, index, key: doc.key, text: &text };
            let requests = guarded(what, || augmenter.plan(&src))?;
            let excess = limit.map_or(0, |l| {
                requests.iter().map(|r| (l.count)(&r.prompt).saturating_sub(l.max_prompt_tokens(r.max_tokens.unwrap_or(spec.max_tokens) + r.reserve_tokens))).max().unwrap_or(0)
            });
            if excess == 0 {
                break Some(requests);
            }
            if keep == 0 {
                plan.skipped += requests.len() as u64;
                break None;
            }
            // Cut by the excess (tokenizers may differ; repeat until it fits).
            keep = keep.saturating_sub(excess.max(1));
            text = tokenizer.decode(&ids[..keep])?;
            truncated = true;
        };
        let Some(requests) = requests else { continue };
        let first = plan.requests.len();
        for (j, r) in requests.iter().enumerate() {
            let mut params = spec.params(request_seed(spec.seed, &domain, doc.key, index, j));
            if let Some(m) = r.max_tokens {
                params.max_tokens = m;
            }
            if let Some(t) = r.temperature {
                params.temperature = t;
            }
            if let Some(stop) = &r.stop {
                params.stop = stop.clone();
            }
            plan.requests.push(TextRequest { prompt: r.prompt.clone(), params });
        }
        plan.docs.push(DocPlan { domain, index, key: doc.key, text, truncated, first, requests });
    }
    Ok(plan)
}

#[cfg(feature = "torch")]
/// Teacher-forced scoring with a local generator's model (its [`Scorer`] impl:
/// Σ log p(continuation | context) in nats, both sides in the model's tokenizer).
pub struct LocalScorer<'a>(pub &'a LocalGenerator);

#[cfg(feature = "torch")]
impl Scorer for LocalScorer<'_> {
    fn score(&self, items: &[(String, String)]) -> Result<Vec<f64>> {
        let model = self.0.model.lock().unwrap_or_else(|p| p.into_inner());
        Scorer::score(&*model, items)
    }
}

/// Ingests the generated documents into the output corpus, the augmenter's special tokens
/// (BoLT's delimiters) as single ids after the source tokenizer's.
fn ingest_output(cfg: &IngestConfig, tokenizer: &Tokenizer, special_tokens: &[String]) -> Result<dctk_data::CorpusManifest> {
    let cfg = IngestConfig { special_tokens: special_tokens.to_vec(), ..cfg.clone() };
    let (manifest, _) = dctk_data::ingest_with_tokenizer(&cfg, tokenizer).map_err(|e| anyhow!("writing the generated corpus {}: {}", cfg.out.display(), crate::corpus::describe(&e)))?;
    Ok(manifest)
}

/// The seeded permutation of `n` output documents (`shuffles_output`): position k of the
/// output holds document `perm[k]` of the unshuffled order.
fn output_permutation(seed: u64, n: usize) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut h = blake3::Hasher::new();
    h.update(b"dctk/generate-shuffle/v1\0");
    h.update(&seed.to_le_bytes());
    let mut rng = rand_chacha::ChaCha8Rng::from_seed(*h.finalize().as_bytes());
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng);
    perm
}

/// One output document and the document it came from.
struct OutDoc {
    doc: usize,
    out: AugDoc,
}

#[cfg(feature = "torch")]
/// Executes a generation cell whose lock the caller holds (see the module doc).
pub fn execute(dir: &Path, manifest: &GenerateManifest, opts: &ExecOptions) -> Result<GenerateResult> {
    let t0 = Instant::now();
    let runs_root = dir.parent().unwrap_or(Path::new("."));
    let corpus_dir = PathBuf::from(&manifest.corpus_dir);
    let corpus = Corpus::open(&corpus_dir).map_err(|e| anyhow!("{}: {}", corpus_dir.display(), crate::corpus::describe(&e)))?;
    let fingerprint = source_fingerprint(&corpus, &manifest.domains)?;
    if fingerprint != manifest.source_fingerprint {
        bail!("{}: the source data changed since this cell was planned; rerun the study to plan it again", corpus_dir.display());
    }
    let tokenizer = corpus.tokenizer().map_err(|e| anyhow!("{}: {}", corpus_dir.display(), crate::corpus::describe(&e)))?;
    Status::Running.write(dir)?;
    let spec = &manifest.spec;
    let cell = format!("{} ({})", manifest.label, manifest.run_id);
    let augmenter = spec.augmenter(&tokenizer).with_context(|| format!("cell {cell}"))?;

    let (mut local, mut openai) = (None, None);
    match &manifest.generator {
        GeneratorSpec::Local { run_id, run_dir, device, batch_size } => {
            let run_dir = PathBuf::from(run_dir);
            if !super::cache::CellState::read(&run_dir).is_finished() {
                bail!("generator run {run_id} ({}) is not finished", run_dir.display());
            }
            let device = env::resolve_device(device).map_err(|e| anyhow!("generator key \"device\": {e}"))?;
            let model = LoadedModel::open(&run_dir, device)?;
            if model.run_id != *run_id {
                bail!("{}: holds run {}, the cell was planned from run {run_id}", run_dir.display(), model.run_id);
            }
            let mut g = LocalGenerator::new(model, *batch_size);
            g.cancel = opts.cancel.clone();
            local = Some(g);
        }
        GeneratorSpec::OpenAi(settings) => openai = Some(OpenAiGenerator::new(settings.clone(), opts.cancel.clone())?),
    }
    let generator: &dyn Generator = match (&local, &openai) {
        (Some(l), _) => l,
        (None, Some(o)) => o,
        (None, None) => unreachable!("one of the two is set above"),
    };
    // Prompt limit: local — the model's context less the completion (in its own tokens).
    let local_model = local.as_ref().map(|l| {
        let m = l.model.lock().unwrap_or_else(|p| p.into_inner());
        (m.tokenizer.clone(), m.config.max_seq_len as usize)
    });
    let count_model = |text: &str| local_model.as_ref().map_or(0, |(t, _)| t.encode(text).len());
    let count_source = |text: &str| tokenizer.encode(text).len();
    let limit: Option<PromptLimit> = match (&local_model, spec.max_prompt_tokens) {
        (Some((_, max_seq_len)), given) => Some(PromptLimit { context: Some(*max_seq_len), given, count: &count_model }),
        (None, Some(given)) => Some(PromptLimit { context: None, given: Some(given), count: &count_source }),
        (None, None) => None,
    };
    let plan = plan_requests(spec, &*augmenter, &corpus, &tokenizer, &manifest.domains, limit.as_ref(), &cell)?;
    let requests = &plan.requests;

    let cache = RequestCache::new(request_cache_dir(runs_root));
    let cached = CachedGenerator { inner: generator, cache };
    let done = std::sync::atomic::AtomicU64::new(0);
    let total = requests.len();
    let report = |_: usize, _: &Result<crate::generate::generator::TextCompletion>| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if opts.progress_json {
            println!("{}", serde_json::json!({"event": "requests", "done": n, "total": total}));
        }
    };
    let (answers, stats) = cached.complete_counted(requests, &report);
    if stats.failed > 0 {
        if opts.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
            return Err(crate::train::trainer::StoppedEarly { steps: (total as u64) - stats.failed, cancelled: true }.into());
        }
        let (k, first) = answers.iter().enumerate().find_map(|(k, a)| a.as_ref().err().map(|e| (k, format!("{e:#}")))).unwrap_or_default();
        let at = plan.docs.iter().find(|d| (d.first..d.first + d.requests.len()).contains(&k)).map(|d| format!(" (document {}#{}, request {})", d.domain, d.index, k - d.first)).unwrap_or_default();
        bail!(
            "{} of {} request(s) failed; the {} answered are cached, so a rerun (`dctk run --rerun-failed`) sends only the failed ones. First error{at}: {first}",
            stats.failed,
            stats.requests,
            stats.requests - stats.failed
        );
    }

    // Each document's outputs from its answers.
    let scorer = local.as_ref().map(LocalScorer);
    let mut outs: Vec<OutDoc> = Vec::new();
    for (d, doc) in plan.docs.iter().enumerate() {
        let what = || at_document(&*augmenter, &doc.domain, doc.index, doc.key, &cell);
        let answered: Vec<AugAnswer> = answers[doc.first..doc.first + doc.requests.len()]
            .iter()
            .map(|a| {
                let c = a.as_ref().expect("failures returned above");
                AugAnswer { text: &c.text, finish_reason: &c.finish_reason }
            })
            .collect();
        let made = guarded(what, || augmenter.assemble(&doc.source(), &answered, scorer.as_ref().map(|s| s as &dyn Scorer)))?;
        if made.is_empty() {
            bail!("{}: returned no documents (an augmenter makes at least one document from each source document)", what());
        }
        if let Some(u) = made.iter().flat_map(|m| &m.uses).find(|&&u| u >= doc.requests.len()) {
            bail!("{}: an output document uses request {u}, but {} were planned", what(), doc.requests.len());
        }
        outs.extend(made.into_iter().map(|out| OutDoc { doc: d, out }));
    }
    let shuffled = augmenter.shuffles_output();
    let order: Vec<usize> = if shuffled { output_permutation(spec.seed, outs.len()) } else { (0..outs.len()).collect() };

    // The generated documents with their provenance, then the corpus made of them.
    let identity = generator.identity();
    let name = augmenter.name().to_string();
    let mut augmenter_stats: BTreeMap<String, f64> = BTreeMap::new();
    let mut lines = String::new();
    let mut sidecar = String::new();
    for (k, &u) in order.iter().enumerate() {
        let OutDoc { doc, out } = &outs[u];
        let p = &plan.docs[*doc];
        for (s, v) in &out.stats {
            *augmenter_stats.entry(s.clone()).or_default() += v;
        }
        let source = serde_json::json!({"domain": p.domain, "index": p.index, "key": format!("{:016x}", p.key)});
        let used: Vec<serde_json::Value> = out
            .uses
            .iter()
            .map(|&j| {
                let c = answers[p.first + j].as_ref().expect("failures returned above");
                serde_json::json!({"request": j, "tag": p.requests[j].tag, "seed": requests[p.first + j].params.seed, "finish_reason": c.finish_reason})
            })
            .collect();
        let tokens = tokenizer.encode(&out.text).len();
        lines.push_str(&serde_json::json!({"text": out.text, "source": source, "augmenter": name, "uses": used, "meta": out.meta}).to_string());
        lines.push('\n');
        sidecar.push_str(
            &serde_json::json!({"doc": k, "source": source, "augmenter": name, "uses": used, "meta": out.meta, "unshuffled": u,
                "truncated_prompt": p.truncated, "tokens": tokens})
            .to_string(),
        );
        sidecar.push('\n');
    }
    let generated = dir.join("generated.jsonl");
    write_atomic(&generated, lines.as_bytes())?;
    let out = dir.join("corpus");
    let source_domains = manifest.domains.clone();
    let mut domain = DomainInput::new(spec.output_domain.clone(), vec![generated.clone()]);
    domain.kind = DomainKind::Synthetic { generator: identity.clone(), source_domains };
    domain.val_fraction = spec.val_fraction;
    // min_chars 0 keeps an empty completion as an (empty) document, so the corpus order
    // stays aligned with documents.jsonl.
    let cfg = IngestConfig { out: out.clone(), domains: vec![domain], min_chars: 0, threads: 1, overwrite: true, ..Default::default() };
    let corpus_manifest = ingest_output(&cfg, &tokenizer, &augmenter.special_tokens())?;
    let docs = corpus_manifest.domains[0].docs;
    if docs != outs.len() as u64 {
        bail!("{}: the generated corpus holds {docs} documents, {} were generated", out.display(), outs.len());
    }
    write_atomic(&out.join("documents.jsonl"), sidecar.as_bytes())?;
    Ok(GenerateResult {
        run_id: manifest.run_id.clone(),
        run_dir: dir.display().to_string(),
        status: "done".into(),
        corpus: out.display().to_string(),
        domain: spec.output_domain.clone(),
        generator: identity,
        requests: stats.requests,
        cache_hits: stats.cache_hits,
        sent: stats.sent,
        failed: stats.failed,
        skipped_prompts: plan.skipped,
        truncated_prompts: plan.docs.iter().filter(|p| p.truncated).count() as u64,
        generated_docs: docs,
        generated_tokens: corpus_manifest.domains[0].tokens,
        train_tokens: corpus_manifest.domains[0].train_tokens,
        val_tokens: corpus_manifest.domains[0].val_tokens,
        augmenter: name,
        augmenter_stats,
        shuffled,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_errors_name_the_key() {
        let e = GenerateSpec::from_json(json!({"template": "no placeholder", "template_name": "rephrase"})).unwrap_err();
        assert!(e.contains("key \"template\"") && e.contains("\"rephrase\"") && e.contains("{document}"), "{e}");
        let e = GenerateSpec::from_json(json!({"template": "{document}", "n_per_dc": 2})).unwrap_err();
        assert!(e.contains("unknown key \"n_per_dc\" (did you mean \"n_per_doc\"?)"), "{e}");
        let e = GenerateSpec::from_json(json!({"template": "{document}", "augmenter": "rephrase"})).unwrap_err();
        assert!(e.contains("either a \"template\" or an \"augmenter\""), "{e}");
        let e = GenerateSpec::from_json(json!({"n_per_doc": 2})).unwrap_err();
        assert!(e.contains("\"template\"") && e.contains("\"augmenter\""), "{e}");
        let e = GenerateSpec::from_json(json!({"augmenter": {"styles": ["qa"]}})).unwrap_err();
        assert!(e.contains("augmenter.name"), "{e}");
        let e = GeneratorSpec::from_json(&json!({"kind": "openai", "base_url": "http://h/v1", "modle": "m"}), None).unwrap_err();
        assert!(e.contains("unknown key \"generator.modle\" (did you mean \"generator.model\"?)"), "{e}");
        let e = GeneratorSpec::from_json(&json!({"kind": "vllm"}), None).unwrap_err();
        assert!(e.contains("key \"generator.kind\": \"vllm\""), "{e}");
        let e = GeneratorSpec::from_json(&json!({"kind": "openai", "base_url": "http://h/v1"}), None).unwrap_err();
        assert!(e.contains("key \"generator.model\": missing"), "{e}");
        let e = GeneratorSpec::from_json(&json!({"kind": "local"}), None).unwrap_err();
        assert!(e.contains("key \"generator.run\""), "{e}");
    }

    #[test]
    fn request_seeds_are_distinct_and_reproducible() {
        let a = request_seed(7, "web", 42, 0, 0);
        assert_eq!(a, request_seed(7, "web", 42, 0, 0));
        assert_ne!(a, request_seed(7, "web", 42, 0, 1));
        assert_ne!(a, request_seed(7, "web", 43, 1, 0));
        assert_ne!(a, request_seed(8, "web", 42, 0, 0));
        assert!(a < 1 << 53);
    }

    #[test]
    fn throughput_settings_do_not_change_the_id() {
        let spec = GenerateSpec::from_json(json!({"template": "Rephrase: {document}", "max_tokens": 8})).unwrap();
        let g = |concurrency: usize| GeneratorSpec::OpenAi(OpenAiSettings { base_url: "http://h/v1".into(), model: "m".into(), api_key_env: None, concurrency, timeout_s: 600.0, max_retries: 5 });
        let v = env::versions();
        let t = Tokenizer::gpt2().unwrap();
        let id = |g: &GeneratorSpec, s: &GenerateSpec| named_inputs(s, g, &s.augmenter(&t).unwrap().identity(), "f", "t", &["web".into()], &v).unwrap().id();
        assert_eq!(id(&g(8), &spec), id(&g(32), &spec));
        let hotter = GenerateSpec { temperature: 0.7, ..spec.clone() };
        assert_ne!(id(&g(8), &spec), id(&g(8), &hotter));
        // The augmenter's identity decides the id: its name and its settings.
        let aug = |a: serde_json::Value| GenerateSpec::from_json(json!({"augmenter": a, "max_tokens": 8})).unwrap();
        let (stitch, simple) = (aug(json!("megadoc_stitch")), aug(json!("megadoc_simple")));
        assert_ne!(id(&g(8), &stitch), id(&g(8), &simple));
        assert_ne!(id(&g(8), &stitch), id(&g(8), &aug(json!({"name": "megadoc_stitch", "separator": "\n"}))));
        assert_ne!(id(&g(8), &stitch), id(&g(8), &spec));
    }

    #[test]
    fn a_manifest_with_an_augmenter_round_trips_through_ron() {
        let spec = GenerateSpec::from_json(json!({"augmenter": {"name": "rephrase", "styles": ["qa", "easy"], "templates": {"qa": "Q {document}"}}, "n_per_doc": 3})).unwrap();
        let text = ron::to_string(&spec).unwrap();
        let back: GenerateSpec = ron::from_str(&text).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn the_output_permutation_is_seeded() {
        let p = output_permutation(3, 50);
        assert_eq!(p, output_permutation(3, 50));
        assert_ne!(p, output_permutation(4, 50));
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(p, sorted);
    }
}
