//! `MixSpec`: a mixture described as plain data (serde: from a Rhai map, into a run manifest),
//! and the one call that turns it into a [`Sampler`] over an open [`Corpus`]. This is the seam
//! the trainer uses; everything it needs for the run manifest comes back from
//! [`Sampler::accounting`].

use serde::{Deserialize, Serialize};

use crate::corpus::{Corpus, Subset};
use crate::error::{DataError, Result};
use crate::sampler::{
    Exhaustion, MixDomain, Packing, Proportions, Sampler, SamplerConfig, SchedulePoint,
};
use crate::val::ValBatches;

/// One domain of a mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixDomainSpec {
    pub name: String,
    /// Unique-token budget (a nested prefix of the domain's training split); `None` = all of it.
    #[serde(default)]
    pub unique_tokens: Option<u64>,
    /// Relative weight (any positive scale; normalised over the domains).
    pub weight: f64,
    #[serde(default)]
    pub exhaustion: Exhaustion,
}

/// A whole mixture: domains, optional schedule, shapes, seed, packing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixSpec {
    pub domains: Vec<MixDomainSpec>,
    /// Weights over steps (one per domain, in `domains` order), interpolated linearly; when
    /// set it replaces the constant `weight`s.
    #[serde(default)]
    pub schedule: Option<Vec<SchedulePoint>>,
    pub seq_len: usize,
    pub batch_size: usize,
    pub seed: u64,
    #[serde(default = "yes")]
    pub cross_doc_attention: bool,
}

fn yes() -> bool {
    true
}

impl Corpus {
    /// Build the sampler a [`MixSpec`] describes.
    pub fn sampler(&self, spec: &MixSpec) -> Result<Sampler> {
        if spec.domains.is_empty() {
            return Err(DataError::Config(
                "a mixture needs at least one domain".into(),
            ));
        }
        let mut subsets = Vec::new();
        for d in &spec.domains {
            let dom = self.domain(&d.name)?;
            subsets.push(match d.unique_tokens {
                Some(u) => dom.unique_subset(u)?,
                None => dom.train_subset(),
            });
        }
        sampler_over(spec, subsets)
    }

    /// Fixed validation batches of one domain (at most `max_batches`).
    pub fn val_batches(
        &self,
        domain: &str,
        seq_len: usize,
        batch_size: usize,
        max_batches: usize,
    ) -> Result<ValBatches> {
        Ok(ValBatches::new(
            self.domain(domain)?.val_subset(),
            seq_len,
            batch_size,
            max_batches,
            true,
        ))
    }
}

/// The sampler of `spec` over `subsets`, one per `spec.domains` entry and in its order: how a
/// mixture whose domains come from several corpora is built (a real corpus plus synthetic
/// streams mixed in at a fixed ratio, Kim et al. 2026, arXiv 2603.18534). Each subset's
/// `domain` is the name the mixture knows it by.
pub fn sampler_over(spec: &MixSpec, subsets: Vec<Subset>) -> Result<Sampler> {
    if subsets.len() != spec.domains.len() {
        return Err(DataError::Config(format!(
            "{} subsets for {} domains",
            subsets.len(),
            spec.domains.len()
        )));
    }
    let domains = subsets
        .into_iter()
        .zip(&spec.domains)
        .map(|(subset, d)| MixDomain {
            subset,
            exhaustion: d.exhaustion,
        })
        .collect();
    let proportions = match &spec.schedule {
        Some(points) => Proportions::Linear(points.clone()),
        None => Proportions::Constant(spec.domains.iter().map(|d| d.weight).collect()),
    };
    Sampler::new(
        domains,
        SamplerConfig {
            seq_len: spec.seq_len,
            batch_size: spec.batch_size,
            seed: spec.seed,
            proportions,
            packing: Packing {
                cross_doc_attention: spec.cross_doc_attention,
            },
        },
    )
}
