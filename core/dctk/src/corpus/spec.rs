//! `DataSpec`: exactly the settings that decide a run's data, as plain serde data, built from a
//! run's settings by one function (`TrainSpec::data_spec` in `train/spec.rs`). It is what [`super::plan_data`]
//! takes and, serialized, the key of [`super::DataCache`]: a setting that decides the data
//! cannot be forgotten in the key, and a setting that does not (lr, weight decay, the model)
//! cannot split it.
//!
//! It has three parts because they change at different rates in a study: the `source` (which
//! corpus, and how raw input is ingested), the `selection` (domains, budgets, weights,
//! validation, shapes: the expensive part to plan) and the `order_seed` (the per-epoch data
//! order only). A seed sweep re-plans nothing but the order.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::AutoIngest;

/// One domain's settings in a run's `domains` (`TrainSpec::domains`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainChoice {
    /// Relative share of training sequences (default 1).
    #[serde(default)]
    pub weight: Option<f64>,
    /// This domain's own unique-token budget (otherwise a weighted share of `unique_tokens`).
    #[serde(default)]
    pub unique_tokens: Option<u64>,
    /// Serve at most this many epochs of the domain's budget.
    #[serde(default)]
    pub epochs_limit: Option<u32>,
}

impl DomainChoice {
    pub fn weight(&self) -> f64 {
        self.weight.unwrap_or(1.0)
    }
}

/// A point of `schedule_mix`: the weights per domain name from `step` on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixPoint {
    pub step: u64,
    pub weights: BTreeMap<String, f64>,
}

/// Where a run's corpus comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorpusSource {
    /// The corpus as the study named it, resolved against the script (and sandbox): an
    /// ingested corpus directory, or raw input.
    pub path: PathBuf,
    /// How raw input is ingested (unused for an ingested corpus).
    pub ingest: AutoIngest,
}

/// What a run takes from its corpus (see the `TrainSpec` fields of the same names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub domains: Option<BTreeMap<String, DomainChoice>>,
    pub unique_tokens: u64,
    pub schedule_mix: Option<Vec<MixPoint>>,
    pub val_tokens: u64,
    pub seq_len: usize,
    pub batch_size: usize,
    pub cross_doc_attention: bool,
    /// The fraction of training tokens drawn from the synthetic streams (`None`: no
    /// synthetic streams; see `TrainSpec::mix_ratio`).
    #[serde(default)]
    pub mix_ratio: Option<f64>,
    /// The unique-token budget over the synthetic streams' domains without their own
    /// (`None`: all their training tokens; see `TrainSpec::synthetic_unique_tokens`).
    #[serde(default)]
    pub synthetic_unique_tokens: Option<u64>,
}

/// Everything that decides a run's data (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub source: CorpusSource,
    /// The synthetic streams' corpora, in the order given (`TrainSpec::synthetic`).
    #[serde(default)]
    pub synthetic: Vec<CorpusSource>,
    pub selection: Selection,
    /// Seeds the per-epoch document order (`TrainSpec::seed`; it also seeds initialisation
    /// and dropout, which are not the data's).
    pub order_seed: u64,
}

impl DataSpec {
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
