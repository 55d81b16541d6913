//! The thin glue between `dctk-data` (the data pipeline: ingest, shards, budgets, mixtures,
//! exact accounting) and the trainer. It owns three decisions and nothing else:
//!
//! * **Where a run's corpus comes from** ([`resolve_corpus`]): an ingested corpus directory
//!   (it has `manifest.ron`) is used as is; raw input (a `.jsonl` file, or a directory of
//!   `.jsonl` files, one domain per file stem) is ingested with GPT-2 into a content-addressed
//!   cache `.dctk/corpora/<id>/` next to the runs root (`runs/` → `./.dctk/corpora/`; beside,
//!   not inside, so the runs root holds only runs), where `<id>` hashes the input files'
//!   contents, the tokenizer and the ingest settings. `dctk-data` writes it atomically; it is
//!   reused when present.
//! * **What a spec asks of that corpus** ([`plan_data`]): which domains, each one's unique-token
//!   budget (the spec's total split by weight unless a domain names its own), weights or a
//!   proportion schedule, epoch limits, and the fixed per-domain validation batches.
//! * **How errors read**: every message names the file, line, domain or spec key at fault.
//!
//! The trainer sees a [`RunData`]: an open [`Corpus`], the [`MixSpec`] to build its
//! [`dctk_data::Sampler`] from, and a [`DataManifest`] (recorded in the run manifest; its
//! `fingerprint` enters the run id).
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dctk_data::{
    Batch, Corpus, DataError, DomainInput, Exhaustion, IngestConfig, MixDomainSpec, MixSpec, SchedulePoint,
    TokenizerSpec, ValBatches,
};
use serde::{Deserialize, Serialize};

use crate::train::TrainSpec;

mod cache;
pub use cache::DataCache;

/// Directory (beside the runs root) of the automatically ingested corpora.
pub const CORPUS_CACHE_DIR: &str = ".dctk/corpora";

/// Where raw input is ingested for runs under `runs_root`: `<parent of runs_root>/.dctk/corpora`.
pub fn corpus_cache_dir(runs_root: &Path) -> PathBuf {
    let parent = runs_root.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parent.join(CORPUS_CACHE_DIR)
}

/// Settings of an automatic ingest of raw input; they enter the cache id.
#[derive(Clone, Debug, Serialize)]
pub struct AutoIngest {
    pub text_field: String,
    pub val_fraction: f64,
}

/// A corpus ready to use: its directory and whether dctk ingested it from raw input.
#[derive(Clone, Debug)]
pub struct ResolvedCorpus {
    pub dir: PathBuf,
    /// The raw input, when the corpus was ingested automatically from it.
    pub ingested_from: Option<PathBuf>,
}

/// The `.jsonl` files of raw input, each with its domain name (the file stem).
fn raw_inputs(input: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let meta = fs::metadata(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let files: Vec<PathBuf> = if meta.is_file() {
        vec![input.to_path_buf()]
    } else {
        let mut files: Vec<PathBuf> = fs::read_dir(input)
            .map_err(|e| format!("{}: {e}", input.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!(
                "{}: neither an ingested corpus (no manifest.ron) nor raw input (no .jsonl files)",
                input.display()
            ));
        }
        files
    };
    files
        .into_iter()
        .map(|f| {
            let stem = f.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            if stem.is_empty() || !stem.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
                return Err(format!("{}: the file stem is the domain name and must be [A-Za-z0-9_.-]+", f.display()));
            }
            Ok((stem, f))
        })
        .collect()
}

/// Rewrites a data-pipeline error into dctk's wording where the two differ.
pub fn describe(e: &DataError) -> String {
    match e {
        DataError::MissingField { path, line, field } => {
            format!("{}:{line}: missing string field \"{field}\"", path.display())
        }
        other => other.to_string(),
    }
}

/// Finds or builds the corpus for `input` (see the module docs). `progress` prints a line
/// when an ingest starts.
pub fn resolve_corpus(input: &Path, runs_root: &Path, auto: &AutoIngest, progress: bool) -> Result<ResolvedCorpus, String> {
    if input.join("manifest.ron").is_file() {
        return Ok(ResolvedCorpus { dir: input.to_path_buf(), ingested_from: None });
    }
    let files = raw_inputs(input)?;
    let mut h = blake3::Hasher::new();
    h.update(b"dctk/auto-ingest/v1\0");
    h.update(serde_json::to_string(auto).expect("plain data").as_bytes());
    h.update(b"\0gpt2\0");
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    for (name, path) in &files {
        let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(blake3::hash(&bytes).as_bytes());
    }
    let id = h.finalize().to_hex()[..16].to_string();
    let dir = corpus_cache_dir(runs_root).join(id);
    if !dir.join("manifest.ron").is_file() {
        if progress {
            eprintln!("ingesting {} ({} domains, GPT-2) into {}", input.display(), files.len(), dir.display());
        }
        fs::create_dir_all(dir.parent().unwrap()).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cfg = IngestConfig {
            out: dir.clone(),
            domains: files
                .iter()
                .map(|(name, path)| {
                    let mut d = DomainInput::new(name.clone(), vec![path.clone()]);
                    d.input.text_field = auto.text_field.clone();
                    d.val_fraction = auto.val_fraction;
                    d
                })
                .collect(),
            tokenizer: TokenizerSpec::Gpt2,
            ..Default::default()
        };
        match dctk_data::ingest(&cfg) {
            Ok(_) => {}
            // Another process finished the same ingest first: same bytes, use it.
            Err(DataError::OutputExists { .. }) if dir.join("manifest.ron").is_file() => {}
            Err(e) => return Err(describe(&e)),
        }
    }
    Ok(ResolvedCorpus { dir, ingested_from: Some(input.to_path_buf()) })
}

/// Opened corpora of one process, by directory: a sweep opens (and verifies) its corpus once.
#[derive(Clone, Default)]
pub struct CorpusCache {
    inner: Arc<Mutex<HashMap<PathBuf, Arc<Corpus>>>>,
}

impl CorpusCache {
    pub fn open(&self, dir: &Path) -> Result<Arc<Corpus>, String> {
        if let Some(c) = self.inner.lock().unwrap().get(dir) {
            return Ok(c.clone());
        }
        let corpus = Arc::new(Corpus::open(dir).map_err(|e| describe(&e))?);
        self.inner.lock().unwrap().insert(dir.to_path_buf(), corpus.clone());
        Ok(corpus)
    }
}

/// One selected domain as the run uses it (recorded in the run manifest).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DomainPlan {
    pub name: String,
    /// Relative weight (normalised over the selected domains).
    pub weight: f64,
    /// This domain's unique-token budget (a nested prefix of its training split).
    pub unique_tokens: u64,
    /// Serve at most this many epochs of the budget, then leave the mixture.
    pub epochs_limit: Option<u32>,
    /// Training tokens the domain has in the corpus.
    pub available_train_tokens: u64,
    /// Validation target tokens scored per evaluation.
    pub val_tokens: u64,
    /// blake3 of the subset's spans and tokenizer (see `dctk_data::Subset`).
    pub subset_fingerprint: String,
}

/// Where a run's data came from and how it is split (written to the run manifest).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DataManifest {
    /// The ingested corpus directory the run reads.
    pub corpus_dir: String,
    /// The raw input it was ingested from, when dctk ingested it automatically.
    pub ingested_from: Option<String>,
    /// Tokenizer kind and content hash.
    pub tokenizer: String,
    pub vocab_size: u32,
    pub domains: Vec<DomainPlan>,
    /// Proportion schedule (weights per domain, in `domains` order), if any.
    pub schedule: Option<Vec<SchedulePoint>>,
    pub cross_doc_attention: bool,
    /// blake3 over the tokenizer, the selected shards' hashes, the subsets and the validation
    /// settings: the run's data identity.
    pub fingerprint: String,
}

/// Everything the trainer needs from the data side.
pub struct RunData {
    pub corpus: Arc<Corpus>,
    pub mix: MixSpec,
    pub manifest: DataManifest,
}

/// Splits `total` into integer parts proportional to `weights` (largest remainder; ties to
/// the earlier entry), so the parts sum to exactly `total`.
pub fn split_by_weight(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut left = total - parts.iter().sum::<u64>().min(total);
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

/// Resolves a spec against an open corpus: domains, budgets, weights, schedule, fingerprint.
pub fn plan_data(spec: &TrainSpec, corpus: Arc<Corpus>, resolved: &ResolvedCorpus) -> Result<RunData, String> {
    let available: Vec<String> = corpus.domain_names().iter().map(|s| s.to_string()).collect();
    let known = || available.join(", ");
    // Selected domains in name order (a Rhai map's order), with their settings.
    let selected: Vec<(String, crate::train::spec::DomainChoice)> = match &spec.domains {
        None => available.iter().map(|n| (n.clone(), Default::default())).collect(),
        Some(map) => {
            let mut v = Vec::new();
            for (name, choice) in map {
                if !available.contains(name) {
                    return Err(format!("key \"domains\": unknown domain \"{name}\"; the corpus has: {}", known()));
                }
                v.push((name.clone(), choice.clone()));
            }
            v
        }
    };
    if selected.is_empty() {
        return Err(format!("key \"domains\": select at least one domain; the corpus has: {}", known()));
    }
    // Budgets: explicit ones first, the rest of `unique_tokens` split by weight.
    let explicit: u64 = selected.iter().filter_map(|(_, c)| c.unique_tokens).sum();
    let implicit: Vec<usize> = (0..selected.len()).filter(|&i| selected[i].1.unique_tokens.is_none()).collect();
    if explicit > spec.unique_tokens || (implicit.is_empty() && explicit != spec.unique_tokens) {
        return Err(format!(
            "key \"unique_tokens\" ({}) must equal the sum of the domains' own unique_tokens ({explicit}) plus the share of the domains without one",
            spec.unique_tokens
        ));
    }
    let shares = split_by_weight(
        spec.unique_tokens - explicit,
        &implicit.iter().map(|&i| selected[i].1.weight()).collect::<Vec<_>>(),
    );
    let mut budgets: Vec<u64> = selected.iter().map(|(_, c)| c.unique_tokens.unwrap_or(0)).collect();
    for (&i, s) in implicit.iter().zip(shares) {
        budgets[i] = s;
    }

    // The model's vocabulary is laid out from this corpus's tokenizer (train::VocabLayout).
    let mut h = blake3::Hasher::new();
    h.update(b"dctk/run-data/v1\0");
    h.update(corpus.manifest.tokenizer.hash.as_bytes());
    h.update(&spec.val_tokens.to_le_bytes());
    let mut domains = Vec::new();
    let mut mix_domains = Vec::new();
    for ((name, choice), &budget) in selected.iter().zip(&budgets) {
        let dom = corpus.domain(name).map_err(|e| describe(&e))?;
        if budget == 0 {
            return Err(format!(
                "key \"domains\": domain \"{name}\" gets 0 unique tokens (raise unique_tokens or its weight, or drop it)"
            ));
        }
        let subset = dom.unique_subset(budget).map_err(|e| format!("key \"unique_tokens\": {}", describe(&e)))?;
        let val = dom.val_subset();
        let val_rows_available = ValBatches::new(val, spec.seq_len as usize, 1, usize::MAX, true).total_target_tokens();
        let val_target_tokens = val_rows(spec) * spec.seq_len as u64;
        if val_rows_available < val_target_tokens {
            let hint = if resolved.ingested_from.is_some() {
                "raise val_fraction or lower val_tokens"
            } else {
                "lower val_tokens, or re-ingest with a larger --val-fraction"
            };
            return Err(format!(
                "key \"val_tokens\" ({}): domain \"{name}\" of {} has only {} held-out tokens ({val_rows_available} scorable at seq_len {}); {hint}",
                spec.val_tokens,
                corpus.dir.display(),
                dom.val_tokens(),
                spec.seq_len,
            ));
        }
        h.update(name.as_bytes());
        h.update(&[0]);
        for s in &dom.manifest.shards {
            h.update(s.tokens_blake3.as_bytes());
            h.update(s.index_blake3.as_bytes());
        }
        h.update(subset.fingerprint.as_bytes());
        domains.push(DomainPlan {
            name: name.clone(),
            weight: choice.weight(),
            unique_tokens: budget,
            epochs_limit: choice.epochs_limit,
            available_train_tokens: dom.train_tokens(),
            val_tokens: val_target_tokens,
            subset_fingerprint: subset.fingerprint.clone(),
        });
        mix_domains.push(MixDomainSpec {
            name: name.clone(),
            unique_tokens: Some(budget),
            weight: choice.weight(),
            exhaustion: match choice.epochs_limit {
                Some(k) => Exhaustion::StopAfterEpochs(k),
                None => Exhaustion::Repeat,
            },
        });
    }
    let schedule = match &spec.schedule_mix {
        None => None,
        Some(points) => {
            let mut out = Vec::new();
            for (i, p) in points.iter().enumerate() {
                for k in p.weights.keys() {
                    if !selected.iter().any(|(n, _)| n == k) {
                        return Err(format!(
                            "key \"schedule_mix\"[{i}].weights: \"{k}\" is not a selected domain; selected: {}",
                            selected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
                let weights = selected
                    .iter()
                    .map(|(n, _)| {
                        p.weights.get(n).copied().ok_or_else(|| {
                            format!("key \"schedule_mix\"[{i}].weights: no weight for domain \"{n}\" (give every selected domain one)")
                        })
                    })
                    .collect::<Result<Vec<f64>, String>>()?;
                out.push(SchedulePoint { step: p.step, weights });
            }
            Some(out)
        }
    };
    let mix = MixSpec {
        domains: mix_domains,
        schedule: schedule.clone(),
        seq_len: spec.seq_len as usize,
        batch_size: spec.batch_size as usize,
        seed: spec.seed,
        cross_doc_attention: spec.cross_doc_attention,
    };
    // Build a sampler once now, so configuration errors surface before a run directory exists.
    corpus.sampler(&mix).map_err(|e| format!("data mixture: {}", describe(&e)))?;
    h.update(ron::to_string(&mix).map_err(|e| e.to_string())?.as_bytes());
    let info = &corpus.manifest.tokenizer;
    let manifest = DataManifest {
        corpus_dir: resolved.dir.display().to_string(),
        ingested_from: resolved.ingested_from.as_ref().map(|p| p.display().to_string()),
        tokenizer: format!("{} ({})", info.kind, &info.hash[..16.min(info.hash.len())]),
        vocab_size: info.vocab_size,
        domains,
        schedule,
        cross_doc_attention: spec.cross_doc_attention,
        fingerprint: h.finalize().to_hex().to_string(),
    };
    Ok(RunData { corpus, mix, manifest })
}

/// Validation rows (of `seq_len + 1` ids) per domain: as many windows as `val_tokens` holds.
pub fn val_rows(spec: &TrainSpec) -> u64 {
    (spec.val_tokens.saturating_sub(1) / spec.seq_len as u64).max(1)
}

/// The fixed validation batches of every selected domain, at most `rows_per_batch` rows each,
/// exactly [`val_rows`] rows per domain: (domain name, batches).
pub fn val_batches(data: &RunData, spec: &TrainSpec, rows_per_batch: usize) -> Result<Vec<(String, Vec<Batch>)>, String> {
    let rows = val_rows(spec) as usize;
    let mut out = Vec::new();
    for d in &data.manifest.domains {
        let dom = data.corpus.domain(&d.name).map_err(|e| describe(&e))?;
        let max_batches = rows.div_ceil(rows_per_batch);
        let mut left = rows;
        let mut batches = Vec::new();
        for mut b in ValBatches::new(dom.val_subset(), spec.seq_len as usize, rows_per_batch, max_batches, spec.cross_doc_attention) {
            let n = b.batch_size.min(left);
            b.tokens.truncate(n * (b.seq_len + 1));
            b.doc_starts.truncate(n);
            b.domain.truncate(n);
            b.batch_size = n;
            left -= n;
            batches.push(b);
            if left == 0 {
                break;
            }
        }
        if left != 0 {
            return Err(format!("domain \"{}\": validation split too small for val_tokens = {}", d.name, spec.val_tokens));
        }
        out.push((d.name.clone(), batches));
    }
    Ok(out)
}

/// Parses a tokenizer choice as the CLI and scripts write it: `gpt2`, `bpe:VOCAB` (train a
/// byte-level BPE of VOCAB ids on the inputs), or the path of a Hugging Face `tokenizer.json`
/// (with `eot` naming its separator token, if it has one).
pub fn tokenizer_spec(text: &str, eot: Option<String>) -> Result<TokenizerSpec, String> {
    if text == "gpt2" {
        return Ok(TokenizerSpec::Gpt2);
    }
    if let Some(v) = text.strip_prefix("bpe:") {
        let vocab_size = v.parse::<u32>().map_err(|_| format!("tokenizer \"{text}\": expected bpe:VOCAB with a whole number"))?;
        return Ok(TokenizerSpec::TrainBpe { vocab_size, domains: None });
    }
    if !Path::new(text).is_file() {
        return Err(format!("tokenizer \"{text}\": not \"gpt2\", \"bpe:VOCAB\" or an existing tokenizer.json file"));
    }
    Ok(TokenizerSpec::HfFile { path: PathBuf::from(text), eot_token: eot })
}

/// Raw inputs named on a command line or in a script: a file is one domain named by its stem; a
/// directory holds one domain per `.jsonl` file (as for `train`'s `corpus`).
pub fn input_domains(inputs: &[PathBuf]) -> Result<Vec<DomainInput>, String> {
    let mut out = Vec::new();
    for input in inputs {
        for (name, path) in raw_inputs(input)? {
            out.push(DomainInput::new(name, vec![path]));
        }
    }
    Ok(out)
}

/// Ingests and returns a summary (what `dctk data ingest` prints and `ingest(#{...})` returns):
/// `out, tokenizer, vocab_size, docs, tokens, seconds, mb_per_s, tokens_per_s`, and per domain
/// `name, docs, tokens, train_docs, train_tokens, val_docs, val_tokens, dropped_duplicates,
/// dropped_empty, shards`.
pub fn ingest_summary(cfg: &IngestConfig) -> Result<serde_json::Value, String> {
    let names: Vec<&str> = cfg.domains.iter().map(|d| d.name.as_str()).collect();
    if names.is_empty() {
        return Err("ingest: no inputs (give files or directories, or --domain NAME=PATH)".into());
    }
    if let Some(dup) = names.iter().enumerate().find_map(|(i, n)| names[..i].contains(n).then_some(*n)) {
        return Err(format!("ingest: domain \"{dup}\" is given twice (two files with the same stem? use --domain NAME=PATH)"));
    }
    let (m, stats) = dctk_data::ingest_with_stats(cfg).map_err(|e| describe(&e))?;
    let domains: Vec<serde_json::Value> = m
        .domains
        .iter()
        .map(|d| {
            serde_json::json!({
                "name": d.name, "docs": d.docs, "tokens": d.tokens,
                "train_docs": d.train_docs, "train_tokens": d.train_tokens,
                "val_docs": d.val_docs, "val_tokens": d.val_tokens,
                "dropped_duplicates": d.dropped_duplicates, "dropped_empty": d.dropped_empty,
                "shards": d.shards.len(),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "out": cfg.out.display().to_string(),
        "tokenizer": m.tokenizer.kind, "tokenizer_hash": m.tokenizer.hash, "vocab_size": m.tokenizer.vocab_size,
        "docs": stats.docs, "tokens": m.total_tokens(),
        "seconds": stats.seconds, "mb_per_s": stats.mb_per_s, "tokens_per_s": stats.tokens_per_s,
        "domains": domains,
    }))
}

/// The settings of a script's `ingest(#{...})`, the same as `dctk data ingest`'s flags.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptIngest {
    /// Corpus directory to write (relative to the script).
    out: PathBuf,
    /// Files (one domain each, named by the stem) or directories of `.jsonl` files.
    #[serde(default)]
    inputs: Vec<PathBuf>,
    /// Named domains: `[#{name: "code", paths: ["a.jsonl", "more/"]}]`.
    #[serde(default)]
    domains: Vec<ScriptDomain>,
    #[serde(default = "text")]
    text_field: String,
    #[serde(default = "one_percent")]
    val_fraction: f64,
    /// `"gpt2"`, a `tokenizer.json` path, or `"bpe:VOCAB"`.
    #[serde(default = "gpt2")]
    tokenizer: String,
    #[serde(default)]
    eot: Option<String>,
    #[serde(default)]
    dedup: bool,
    #[serde(default = "one")]
    min_chars: usize,
    #[serde(default)]
    threads: usize,
    #[serde(default)]
    overwrite: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptDomain {
    name: String,
    paths: Vec<PathBuf>,
}

fn text() -> String {
    "text".into()
}
fn one_percent() -> f64 {
    0.01
}
fn gpt2() -> String {
    "gpt2".into()
}
fn one() -> usize {
    1
}

/// `ingest(#{...})` of a script whose relative paths are relative to `base_dir`: parses the
/// map (errors name the key), ingests, and returns [`ingest_summary`].
/// `ingest(#{...})` from a study; `resolve(path, what)` places (and sandboxes) every path.
pub fn ingest_from_script(settings: serde_json::Value, resolve: &dyn Fn(&str, &str) -> Result<PathBuf, String>) -> Result<serde_json::Value, String> {
    let si: ScriptIngest = serde_path_to_error::deserialize(settings).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path.is_empty() || path == "." {
            inner
        } else {
            format!("key \"{path}\": {inner}")
        }
    })?;
    if !(0.0..1.0).contains(&si.val_fraction) {
        return Err(format!("key \"val_fraction\" must be in [0, 1), got {}", si.val_fraction));
    }
    let abs = |p: &Path, what: &str| resolve(&p.display().to_string(), what);
    let inputs: Vec<PathBuf> = si.inputs.iter().map(|p| abs(p, "key \"inputs\"")).collect::<Result<_, _>>()?;
    let mut domains = input_domains(&inputs)?;
    for d in &si.domains {
        let paths = d.paths.iter().map(|p| abs(p, "key \"domains\"")).collect::<Result<_, _>>()?;
        domains.push(DomainInput::new(d.name.clone(), paths));
    }
    for d in &mut domains {
        d.input.text_field = si.text_field.clone();
        d.val_fraction = si.val_fraction;
    }
    let tok = if si.tokenizer == "gpt2" || si.tokenizer.starts_with("bpe:") {
        si.tokenizer.clone()
    } else {
        abs(Path::new(&si.tokenizer), "key \"tokenizer\"")?.display().to_string()
    };
    let tokenizer = tokenizer_spec(&tok, si.eot.clone()).map_err(|e| format!("key \"tokenizer\": {e}"))?;
    let cfg = IngestConfig {
        out: abs(&si.out, "key \"out\"")?,
        domains,
        tokenizer,
        dedup: si.dedup,
        min_chars: si.min_chars,
        threads: si.threads,
        overwrite: si.overwrite,
        progress: false,
        ..Default::default()
    };
    ingest_summary(&cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_weight_sums_exactly_and_follows_weights() {
        assert_eq!(split_by_weight(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        assert_eq!(split_by_weight(100, &[3.0, 1.0]), vec![75, 25]);
        let p = split_by_weight(250_000, &[1.0; 7]);
        assert_eq!(p.iter().sum::<u64>(), 250_000);
        assert!(p.iter().all(|&x| x == 35_714 || x == 35_715), "{p:?}");
        assert_eq!(split_by_weight(0, &[1.0, 2.0]), vec![0, 0]);
    }

    #[test]
    fn raw_input_domains_are_file_stems_and_missing_paths_are_named() {
        let dir = std::env::temp_dir().join(format!("dctk-glue-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("b.jsonl"), "{}\n").unwrap();
        fs::write(dir.join("a.jsonl"), "{}\n").unwrap();
        fs::write(dir.join("notes.txt"), "x").unwrap();
        let got = raw_inputs(&dir).unwrap();
        assert_eq!(got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
        let e = raw_inputs(&dir.join("nope.jsonl")).unwrap_err();
        assert!(e.contains("nope.jsonl: No such file"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
