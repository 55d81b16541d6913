//! Resolved and opened corpora and planned data, cached within one process: a sweep over
//! epochs or weight decay resolves, ingests, verifies and plans its corpus once per data
//! setting.
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::{plan_data, resolve_corpus, AutoIngest, CorpusCache, ResolvedCorpus, RunData};
use crate::train::TrainSpec;

/// The per-process cache of resolved corpora and planned data.
#[derive(Clone, Default)]
pub struct DataCache {
    resolved: Arc<Mutex<HashMap<String, ResolvedCorpus>>>,
    planned: Arc<Mutex<HashMap<String, Arc<RunData>>>>,
    corpora: CorpusCache,
}

impl DataCache {
    pub fn get(&self, spec: &TrainSpec, corpus: &Path, runs_root: &Path, progress: bool) -> Result<Arc<RunData>> {
        let auto = AutoIngest { text_field: spec.text_field.clone(), val_fraction: spec.val_fraction };
        let key = format!("{}|{}|{}|{}", corpus.display(), runs_root.display(), auto.text_field, auto.val_fraction);
        let cached = self.resolved.lock().unwrap().get(&key).cloned();
        let resolved = match cached {
            Some(r) => r,
            None => {
                let r = resolve_corpus(corpus, runs_root, &auto, progress).map_err(anyhow::Error::msg)?;
                self.resolved.lock().unwrap().insert(key.clone(), r.clone());
                r
            }
        };
        // Exactly the settings `plan_data` reads: a sweep over lr or weight decay plans once.
        let data_key = format!(
            "{key}|{}",
            serde_json::json!([
                spec.domains, spec.unique_tokens, spec.model, spec.val_tokens, spec.seq_len,
                spec.schedule_mix, spec.cross_doc_attention, spec.batch_size, spec.seed
            ])
        );
        if let Some(d) = self.planned.lock().unwrap().get(&data_key) {
            return Ok(d.clone());
        }
        let opened = self.corpora.open(&resolved.dir).map_err(anyhow::Error::msg)?;
        let data = Arc::new(plan_data(spec, opened, &resolved).map_err(anyhow::Error::msg)?);
        self.planned.lock().unwrap().insert(data_key, data.clone());
        Ok(data)
    }
}

