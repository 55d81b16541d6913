//! Ingest options as the CLI (`dctk data ingest`) and scripts (`ingest(#{...})`) write them:
//! the tokenizer choice, raw inputs as domains, a script's settings map, and the summary both
//! print or return. The ingest itself is `dctk-data`'s.
use std::path::{Path, PathBuf};

use dctk_data::{DomainInput, IngestConfig, TokenizerSpec};
use serde::Deserialize;

use super::describe;
use super::resolve::raw_inputs;

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
/// `out, tokenizer, vocab_size, special_tokens, docs, tokens, seconds, mb_per_s, tokens_per_s`, and per domain
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
        "special_tokens": m.special_tokens,
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
    #[serde(default = "default_val_fraction")]
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
    /// Strings that become single ids after the tokenizer's vocabulary (BoLT's latent
    /// delimiters; Ruan et al. 2025, arXiv 2503.18866).
    #[serde(default)]
    special_tokens: Vec<String>,
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
fn default_val_fraction() -> f64 {
    dctk_data::DEFAULT_VAL_FRACTION
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
        special_tokens: si.special_tokens,
        ..Default::default()
    };
    ingest_summary(&cfg)
}
