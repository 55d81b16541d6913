//! `DataSpec`: exactly the settings that decide a run's data, as plain serde data, built from a
//! [`TrainSpec`] by one function ([`DataSpec::from_train`]). It is what [`super::plan_data`]
//! takes and, serialized, the key of [`super::DataCache`]: a setting that decides the data
//! cannot be forgotten in the key, and a setting that does not (lr, weight decay, the model)
//! cannot split it.
//!
//! It has three parts because they change at different rates in a study: the `source` (which
//! corpus, and how raw input is ingested), the `selection` (domains, budgets, weights,
//! validation, shapes: the expensive part to plan) and the `order_seed` (the per-epoch data
//! order only). A seed sweep re-plans nothing but the order.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::AutoIngest;
use crate::train::spec::{DomainChoice, MixPoint};
use crate::train::TrainSpec;

/// Where a run's corpus comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorpusSource {
    /// The corpus as the study named it, resolved against the script (and sandbox): an
    /// ingested corpus directory, or raw input.
    pub path: PathBuf,
    /// How raw input is ingested (unused for an ingested corpus).
    pub ingest: AutoIngest,
}

/// What a run takes from its corpus (see the [`TrainSpec`] fields of the same names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub domains: Option<BTreeMap<String, DomainChoice>>,
    pub unique_tokens: u64,
    pub schedule_mix: Option<Vec<MixPoint>>,
    pub val_tokens: u64,
    pub seq_len: usize,
    pub batch_size: usize,
    pub cross_doc_attention: bool,
}

/// Everything that decides a run's data (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub source: CorpusSource,
    pub selection: Selection,
    /// Seeds the per-epoch document order ([`TrainSpec::seed`]; it also seeds initialisation
    /// and dropout, which are not the data's).
    pub order_seed: u64,
}

impl DataSpec {
    /// The data settings of `spec`, whose `corpus` the caller resolved to `corpus`.
    pub fn from_train(spec: &TrainSpec, corpus: &Path) -> Result<DataSpec, String> {
        let positive = |key: &str, v: i64| {
            usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| format!("key \"{key}\" must be at least 1, got {v}"))
        };
        Ok(DataSpec {
            source: CorpusSource {
                path: corpus.to_path_buf(),
                ingest: AutoIngest { text_field: spec.text_field.clone(), val_fraction: spec.val_fraction },
            },
            selection: Selection {
                domains: spec.domains.clone(),
                unique_tokens: spec.unique_tokens,
                schedule_mix: spec.schedule_mix.clone(),
                val_tokens: spec.val_tokens,
                seq_len: positive("seq_len", spec.seq_len)?,
                batch_size: positive("batch_size", spec.batch_size)?,
                cross_doc_attention: spec.cross_doc_attention,
            },
            order_seed: spec.seed,
        })
    }

    /// Validation rows (of `seq_len + 1` ids) per domain: as many windows as `val_tokens` holds.
    pub fn val_rows(&self) -> u64 {
        self.selection.val_rows()
    }
}

impl Selection {
    /// Validation rows (of `seq_len + 1` ids) per domain: as many windows as `val_tokens` holds.
    pub fn val_rows(&self) -> u64 {
        (self.val_tokens.saturating_sub(1) / self.seq_len as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> TrainSpec {
        let mut base = json!({"corpus": "c", "unique_tokens": 10_000, "epochs": 1});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        TrainSpec::from_json(base).unwrap()
    }

    #[test]
    fn settings_that_do_not_decide_the_data_leave_the_data_spec_unchanged() {
        let base = DataSpec::from_train(&spec(json!({})), Path::new("c")).unwrap();
        for other in [json!({"lr": 1e-4}), json!({"weight_decay": 0.5}), json!({"model": "micro"}), json!({"epochs": 3}), json!({"dropout": 0.1})] {
            assert_eq!(DataSpec::from_train(&spec(other.clone()), Path::new("c")).unwrap(), base, "{other}");
        }
        let seeded = DataSpec::from_train(&spec(json!({"seed": 7})), Path::new("c")).unwrap();
        assert_eq!(seeded.selection, base.selection, "the seed changes the data order only");
        assert_eq!(seeded.order_seed, 7);
        for data in [json!({"val_tokens": 2048}), json!({"seq_len": 128}), json!({"batch_size": 4}), json!({"cross_doc_attention": false}), json!({"val_fraction": 0.2})] {
            assert_ne!(DataSpec::from_train(&spec(data.clone()), Path::new("c")).unwrap(), base, "{data}");
        }
    }
}
