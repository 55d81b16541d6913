//! Resolved and opened corpora and planned data, cached within one process and keyed by the
//! serialized [`DataSpec`] (plus the runs root, which places automatic ingests): a sweep over
//! lr, epochs or weight decay resolves, ingests, verifies and plans its corpus once per data
//! setting, and a seed sweep plans its selection once and only re-seeds the data order.
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::{plan_selection, resolve_corpus, CorpusCache, CorpusSource, DataSpec, PlannedSelection, ResolvedCorpus, RunData, SyntheticSource};

/// The per-process cache of resolved corpora and planned data.
#[derive(Clone, Default)]
pub struct DataCache {
    resolved: Arc<Mutex<HashMap<String, ResolvedCorpus>>>,
    selections: Arc<Mutex<HashMap<String, Arc<PlannedSelection>>>>,
    planned: Arc<Mutex<HashMap<String, Arc<RunData>>>>,
    corpora: CorpusCache,
}

/// A cache key: the runs root and plain data, serialized.
fn key(runs_root: &Path, parts: impl serde::Serialize) -> String {
    serde_json::to_string(&(runs_root, parts)).expect("plain data")
}

impl DataCache {
    /// The planned data of `spec`.
    pub fn plan(&self, spec: &DataSpec, runs_root: &Path, progress: bool) -> Result<Arc<RunData>> {
        let data_key = key(runs_root, spec);
        if let Some(d) = self.planned.lock().unwrap().get(&data_key) {
            return Ok(d.clone());
        }
        let selection_key = key(runs_root, (&spec.source, &spec.synthetic, &spec.selection));
        let cached = self.selections.lock().unwrap().get(&selection_key).cloned();
        let selection = match cached {
            Some(s) => s,
            None => {
                let resolved = self.resolve(&spec.source, runs_root, progress)?;
                let opened = self.corpora.open(&resolved.dir).map_err(anyhow::Error::msg)?;
                let mut synthetic = Vec::new();
                for (i, source) in spec.synthetic.iter().enumerate() {
                    let resolved = self.resolve(source, runs_root, progress).map_err(|e| anyhow::anyhow!("key \"synthetic\"[{i}]: {e:#}"))?;
                    let corpus = self.corpora.open(&resolved.dir).map_err(|e| anyhow::anyhow!("key \"synthetic\"[{i}]: {e}"))?;
                    synthetic.push(SyntheticSource { corpus, resolved });
                }
                let s = Arc::new(plan_selection(&spec.selection, opened, &resolved, &synthetic).map_err(anyhow::Error::msg)?);
                self.selections.lock().unwrap().insert(selection_key, s.clone());
                s
            }
        };
        let data = Arc::new(selection.with_order_seed(spec, spec.order_seed).map_err(anyhow::Error::msg)?);
        self.planned.lock().unwrap().insert(data_key, data.clone());
        Ok(data)
    }

    /// The corpus at `path` (an ingested corpus, or raw input ingested as `train` would
    /// with the default settings), opened and verified once per process.
    pub fn open_corpus(&self, path: &Path, runs_root: &Path) -> Result<Arc<dctk_data::Corpus>> {
        let auto = super::AutoIngest { text_field: "text".into(), val_fraction: dctk_data::DEFAULT_VAL_FRACTION };
        let spec = super::CorpusSource { path: path.to_path_buf(), ingest: auto };
        let source_key = key(runs_root, &spec);
        let cached = self.resolved.lock().unwrap().get(&source_key).cloned();
        let resolved = match cached {
            Some(r) => r,
            None => {
                let r = resolve_corpus(path, runs_root, &spec.ingest, false).map_err(anyhow::Error::msg)?;
                self.resolved.lock().unwrap().insert(source_key, r.clone());
                r
            }
        };
        self.corpora.open(&resolved.dir).map_err(anyhow::Error::msg)
    }

    fn resolve(&self, source: &CorpusSource, runs_root: &Path, progress: bool) -> Result<ResolvedCorpus> {
        let source_key = key(runs_root, source);
        if let Some(r) = self.resolved.lock().unwrap().get(&source_key) {
            return Ok(r.clone());
        }
        let r = resolve_corpus(&source.path, runs_root, &source.ingest, progress).map_err(anyhow::Error::msg)?;
        self.resolved.lock().unwrap().insert(source_key, r.clone());
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{AutoIngest, CorpusSource, Selection};
    use crate::corpus::plan_data;

    #[test]
    fn a_seed_sweep_plans_its_selection_once_with_the_fingerprints_of_a_full_plan() {
        let root = std::env::temp_dir().join(format!("dctk-data-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let docs: String = (0..400).map(|i| format!("{{\"text\": \"document {i} says {} things\"}}\n", i * 7)).collect();
        std::fs::write(root.join("web.jsonl"), docs).unwrap();
        let runs = root.join("runs");
        let spec = |seed: u64| {
            DataSpec {
                source: CorpusSource { path: root.join("web.jsonl"), ingest: AutoIngest { text_field: "text".into(), val_fraction: 0.2 } },
                selection: Selection {
                    domains: None,
                    unique_tokens: 1_000,
                    schedule_mix: None,
                    val_tokens: 17,
                    seq_len: 16,
                    batch_size: 2,
                    cross_doc_attention: true,
                    mix_ratio: None,
                    synthetic_unique_tokens: None,
                },
                synthetic: Vec::new(),
                order_seed: seed,
            }
        };
        let cache = DataCache::default();
        let planned: Vec<Arc<RunData>> = (0..5).map(|seed| cache.plan(&spec(seed), &runs, false).unwrap()).collect();
        assert_eq!(cache.selections.lock().unwrap().len(), 1, "one selection for five seeds");
        assert_eq!(cache.resolved.lock().unwrap().len(), 1);
        for (seed, data) in planned.iter().enumerate() {
            let resolved = resolve_corpus(&root.join("web.jsonl"), &runs, &spec(0).source.ingest, false).unwrap();
            let full = plan_data(&spec(seed as u64), data.corpus.clone(), &resolved, &[]).unwrap();
            assert_eq!(full.manifest, data.manifest, "seed {seed}");
            assert_eq!(full.mix, data.mix, "seed {seed}");
            assert_eq!(data.mix.seed, seed as u64);
        }
        assert_ne!(planned[0].manifest.fingerprint, planned[1].manifest.fingerprint, "the order seed is part of the data identity");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
