//! Where a run's corpus comes from: an ingested corpus directory (it has `manifest.ron`) is
//! used as is; raw input (a `.jsonl` file, or a directory of `.jsonl` files, one domain per
//! file stem) is ingested with GPT-2 into a content-addressed cache `.dctk/corpora/<id>/` next
//! to the runs root (`runs/` → `./.dctk/corpora/`; beside, not inside, so the runs root holds
//! only runs), where `<id>` hashes the input files' contents, the tokenizer and the ingest
//! settings. `dctk-data` writes it atomically; it is reused when present. Also the per-process
//! cache of opened (verified) corpora.
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dctk_data::{Corpus, DataError, DomainInput, IngestConfig, TokenizerSpec};
use serde::{Deserialize, Serialize};

use super::describe;

/// Directory (beside the runs root) of the automatically ingested corpora.
pub const CORPUS_CACHE_DIR: &str = ".dctk/corpora";

/// `<parent of runs_root>/<rel>`: where the caches of the cells under `runs_root` live
/// (`.dctk/corpora`, the request cache `.dctk/requests`), shared by every study there.
pub fn beside_runs_root(runs_root: &Path, rel: &str) -> PathBuf {
    let parent = runs_root.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parent.join(rel)
}

/// Where raw input is ingested for runs under `runs_root`: `<parent of runs_root>/.dctk/corpora`.
pub fn corpus_cache_dir(runs_root: &Path) -> PathBuf {
    beside_runs_root(runs_root, CORPUS_CACHE_DIR)
}

/// Settings of an automatic ingest of raw input; they enter the cache id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
pub(super) fn raw_inputs(input: &Path) -> Result<Vec<(String, PathBuf)>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
