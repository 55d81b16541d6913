//! The host's side of the data: the thin glue between `dctk-data` (the data pipeline: ingest,
//! shards, budgets, mixtures, exact accounting) and the trainer. One file per job:
//!
//! * [`resolve`]: **where a run's corpus comes from** ([`resolve_corpus`]): an ingested corpus
//!   directory as is, or raw `.jsonl` input ingested into a content-addressed cache beside the
//!   runs root; and the per-process cache of opened corpora.
//! * [`spec`]: **what decides a run's data** ([`DataSpec`]), built from a `TrainSpec` by one
//!   function.
//! * [`plan`]: **what a spec asks of that corpus** ([`plan_data`]): which domains, each one's
//!   unique-token budget, weights or a proportion schedule, epoch limits, the fixed per-domain
//!   validation batches and the data fingerprint.
//! * [`merge`]: **the one place a run's corpora are merged** ([`merge_corpora`]): the real
//!   corpus and the synthetic streams (`synthetic: [...]`) as one list of named domains, one
//!   tokenizer checked across them, taken names made distinct.
//! * [`cache`]: planned data within one process, keyed by the serialized [`DataSpec`].
//! * [`ingest`]: ingest options as the CLI and scripts write them.
//! * [`stats`]: token counts and the entropy proxies per domain (`dctk data stats`), and
//!   mixtures made from them.
//!
//! Every message names the file, line, domain or spec key at fault ([`describe`] rewords the
//! pipeline's errors where dctk's wording differs).
//!
//! The trainer sees a [`RunData`]: an open [`dctk_data::Corpus`], the [`dctk_data::MixSpec`]
//! to build its [`dctk_data::Sampler`] from, and a [`DataManifest`] (recorded in the run
//! manifest; its `fingerprint` enters the run id).
use std::path::{Path, PathBuf};

use dctk_data::DataError;

pub mod cache;
pub mod ingest;
pub mod merge;
pub mod plan;
pub mod resolve;
pub mod spec;
pub mod stats;

pub use cache::DataCache;
pub use ingest::{ingest_from_script, ingest_summary, input_domains, tokenizer_spec};
pub use merge::{merge_corpora, RunDomainSource, SyntheticSource};
pub use plan::{plan_data, plan_selection, split_by_weight, val_batches, DataManifest, DomainPlan, PlannedSelection, RunData};
pub use resolve::{beside_runs_root, corpus_cache_dir, resolve_corpus, AutoIngest, CorpusCache, ResolvedCorpus, CORPUS_CACHE_DIR};
pub use spec::{CorpusSource, DataSpec, DomainChoice, MixPoint, Selection};
pub use stats::{corpus_stats, mixture_of, DomainStats};

/// Rewrites a data-pipeline error into dctk's wording where the two differ.
pub fn describe(e: &DataError) -> String {
    match e {
        DataError::MissingField { path, line, field } => {
            format!("{}:{line}: missing string field \"{field}\"", path.display())
        }
        other => other.to_string(),
    }
}

/// The run's corpus directory. A corpus dctk ingested lives in the cache beside the runs root
/// (`<runs root>/../.dctk/corpora/<entry>`), recorded by the path it had from the directory
/// the study ran in; from anywhere else, the same entry is found beside this run's runs root.
pub fn locate_corpus(run_dir: &Path, recorded: &str) -> PathBuf {
    let as_recorded = PathBuf::from(recorded);
    if as_recorded.is_absolute() || as_recorded.join(dctk_data::manifest::MANIFEST_FILE).exists() {
        return as_recorded;
    }
    let runs_root = run_dir.parent().unwrap_or(Path::new("."));
    match (recorded.contains(crate::corpus::CORPUS_CACHE_DIR), as_recorded.file_name()) {
        (true, Some(entry)) => {
            let beside = crate::corpus::corpus_cache_dir(runs_root).join(entry);
            if beside.exists() {
                beside
            } else {
                as_recorded
            }
        }
        _ => as_recorded,
    }
}
