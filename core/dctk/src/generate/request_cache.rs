//! Every generation request and its response, content addressed: the key is blake3 over
//! the backend's identity (`local:<weights blake3>` or `openai:<base_url>#<model>`), the
//! prompt and the sampling settings (seed included), and each response is one small JSON
//! file `<dir>/<first 2 hex>/<key>.json`, written atomically the moment it arrives. A
//! killed generation loses nothing; a rerun asks nothing twice ([`CachedGenerator`]).
//!
//! The directory is `.dctk/requests/` beside the runs root (next to the data cache
//! `.dctk/corpora/`, see [`crate::corpus::corpus_cache_dir`]), shared by every study and
//! cell there: two cells asking the same question share the answer.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use super::generator::{Generator, TextCompletion, TextRequest};

/// Directory (beside the runs root) of the request cache.
pub const REQUEST_CACHE_DIR: &str = ".dctk/requests";

/// Where requests of cells under `runs_root` are cached: `<parent of runs_root>/.dctk/requests`.
pub fn request_cache_dir(runs_root: &Path) -> PathBuf {
    crate::corpus::beside_runs_root(runs_root, REQUEST_CACHE_DIR)
}

/// One cached exchange (the file's content).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CachedResponse {
    pub key: String,
    pub backend: String,
    pub request: TextRequest,
    pub completion: TextCompletion,
}

/// The request cache under one directory.
#[derive(Clone, Debug)]
pub struct RequestCache {
    pub dir: PathBuf,
}

impl RequestCache {
    pub fn new(dir: impl Into<PathBuf>) -> RequestCache {
        RequestCache { dir: dir.into() }
    }

    /// blake3 (hex) over the backend identity, the prompt and the sampling settings.
    pub fn key(backend: &str, request: &TextRequest) -> String {
        let params = serde_json::to_string(&request.params).expect("plain data");
        let mut h = blake3::Hasher::new();
        h.update(b"dctk/request/v1\0");
        for part in [backend, request.prompt.as_str(), params.as_str()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().to_hex().to_string()
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// The cached answer, if any. A file that does not parse, or that answers another
    /// question (a hash collision, a hand edit), is a miss: it is asked again and replaced.
    pub fn get(&self, backend: &str, request: &TextRequest) -> Option<TextCompletion> {
        let key = Self::key(backend, request);
        let bytes = std::fs::read(self.path(&key)).ok()?;
        let cached: CachedResponse = serde_json::from_slice(&bytes).ok()?;
        (cached.backend == backend && cached.request == *request).then_some(cached.completion)
    }

    /// Stores an answer atomically (a reader never sees half a file).
    pub fn put(&self, backend: &str, request: &TextRequest, completion: &TextCompletion) -> Result<()> {
        let key = Self::key(backend, request);
        let record = CachedResponse { key: key.clone(), backend: backend.to_string(), request: request.clone(), completion: completion.clone() };
        crate::study::write_atomic(&self.path(&key), &serde_json::to_vec(&record)?)
    }

    /// The cached responses' files (`<key>.json`; never a writer's temporary file), sorted.
    pub fn answer_files(&self) -> Vec<PathBuf> {
        let Ok(dirs) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut files: Vec<PathBuf> = dirs
            .flatten()
            .filter_map(|d| std::fs::read_dir(d.path()).ok())
            .flat_map(|files| files.flatten().map(|f| f.path()).filter(|p| p.extension().is_some_and(|e| e == "json")))
            .collect();
        files.sort();
        files
    }

    /// Cached responses on disk (the tests count them).
    pub fn count_files(&self) -> usize {
        self.answer_files().len()
    }
}

/// What a [`CachedGenerator`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    pub requests: u64,
    pub cache_hits: u64,
    /// Sent to the backend (the misses).
    pub sent: u64,
    pub failed: u64,
}

/// A generator answering from the cache and sending only the misses to `inner`, each
/// answer stored as soon as it arrives.
pub struct CachedGenerator<'a> {
    pub inner: &'a dyn Generator,
    pub cache: RequestCache,
}

impl CachedGenerator<'_> {
    /// Completes `requests` (results in request order) and says what came from where.
    /// `on_done(i, result)` sees every result, hits included, in any order.
    pub fn complete_counted(
        &self,
        requests: &[TextRequest],
        on_done: &(dyn Fn(usize, &Result<TextCompletion>) + Sync),
    ) -> (Vec<Result<TextCompletion>>, CacheStats) {
        let backend = self.inner.identity();
        let mut out: Vec<Option<Result<TextCompletion>>> = Vec::with_capacity(requests.len());
        let mut misses = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            match self.cache.get(&backend, r) {
                Some(c) => {
                    let hit = Ok(c);
                    on_done(i, &hit);
                    out.push(Some(hit));
                }
                None => {
                    misses.push(i);
                    out.push(None);
                }
            }
        }
        let to_send: Vec<TextRequest> = misses.iter().map(|&i| requests[i].clone()).collect();
        let failed = AtomicU64::new(0);
        let store = |j: usize, result: &Result<TextCompletion>| {
            let i = misses[j];
            match result {
                Ok(c) => {
                    if let Err(e) = self.cache.put(&backend, &requests[i], c) {
                        // The answer is still used; only its persistence failed (say so).
                        eprintln!("warning: caching the answer to request {i}: {e:#}");
                    }
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            on_done(i, result);
        };
        let answers = if to_send.is_empty() { Vec::new() } else { self.inner.complete(&to_send, &store) };
        for (j, a) in answers.into_iter().enumerate() {
            out[misses[j]] = Some(a);
        }
        let stats = CacheStats {
            requests: requests.len() as u64,
            cache_hits: (requests.len() - misses.len()) as u64,
            sent: misses.len() as u64,
            failed: failed.load(Ordering::Relaxed),
        };
        let results = out.into_iter().map(|r| r.unwrap_or_else(|| Err(anyhow!("the backend returned no answer")))).collect();
        (results, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::SamplingParams;
    use std::sync::Mutex;

    /// A deterministic backend that counts what it is asked (the cache is what is tested).
    struct Echo(Mutex<Vec<String>>);

    impl Generator for Echo {
        fn identity(&self) -> String {
            "test:echo".into()
        }
        fn complete(&self, requests: &[TextRequest], on_done: &(dyn Fn(usize, &Result<TextCompletion>) + Sync)) -> Vec<Result<TextCompletion>> {
            requests
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    self.0.lock().unwrap().push(r.prompt.clone());
                    let c = if r.prompt == "fail" { Err(anyhow!("no")) } else { Ok(TextCompletion { text: r.prompt.to_uppercase(), finish_reason: "stop".into(), completion_tokens: Some(1) }) };
                    on_done(i, &c);
                    c
                })
                .collect()
        }
    }

    #[test]
    fn a_rerun_asks_only_what_was_not_answered() {
        let dir = std::env::temp_dir().join(format!("dctk-request-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let req = |p: &str, seed: u64| TextRequest { prompt: p.into(), params: SamplingParams { seed, ..Default::default() } };
        let echo = Echo(Mutex::new(Vec::new()));
        let g = CachedGenerator { inner: &echo, cache: RequestCache::new(&dir) };
        let first = [req("a", 1), req("fail", 1), req("a", 2)];
        let (r, s) = g.complete_counted(&first, &|_, _| {});
        assert_eq!(s, CacheStats { requests: 3, cache_hits: 0, sent: 3, failed: 1 });
        assert_eq!(r[0].as_ref().unwrap().text, "A");
        assert!(r[1].is_err());
        assert_eq!(g.cache.count_files(), 2, "one file per answer, none for the failure");
        echo.0.lock().unwrap().clear();
        let (r, s) = g.complete_counted(&[req("a", 2), req("fail", 1), req("b", 1), req("a", 1)], &|_, _| {});
        assert_eq!(s, CacheStats { requests: 4, cache_hits: 2, sent: 2, failed: 1 });
        assert_eq!(*echo.0.lock().unwrap(), vec!["fail".to_string(), "b".to_string()], "only the misses are sent");
        assert_eq!(r[3].as_ref().unwrap().text, "A");
        assert_ne!(RequestCache::key("x", &req("a", 1)), RequestCache::key("y", &req("a", 1)), "the backend is in the key");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
