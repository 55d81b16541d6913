//! The one place a run's corpora are merged: the real corpus (`corpus`) and the synthetic
//! streams (`synthetic: [...]`, generated corpora or any ingested corpus) become one list of
//! named domains, each with the corpus it is read from. Everything that must hold across the
//! corpora of a run is checked here (one tokenizer; distinct domain names), so that what a
//! later corpus feature adds (extra token ids after the base vocabulary, say) has one
//! function to extend.
//!
//! A synthetic stream is a domain of its own, with its own budget and epochs, so real and
//! synthetic tokens are always accounted separately (Kim et al. 2026, arXiv 2603.18534: a
//! synthetic stream mixed into real data at `mix_ratio`).
use std::sync::Arc;

use dctk_data::{Corpus, DomainKind, Subset};

use super::{describe, ResolvedCorpus};

/// A synthetic stream's corpus as the run names it, opened.
#[derive(Clone)]
pub struct SyntheticSource {
    pub corpus: Arc<Corpus>,
    pub resolved: ResolvedCorpus,
}

/// One domain a run may use, with the corpus it is read from.
#[derive(Clone)]
pub struct RunDomainSource {
    /// The name the run knows it by (a synthetic domain whose name is taken gets `name.2`, …).
    pub name: String,
    pub corpus: Arc<Corpus>,
    /// Its name in its own corpus.
    pub source_domain: String,
    /// `Synthetic` for every domain of a synthetic stream (a corpus given under `synthetic`
    /// whose manifest says `Real` is synthetic in this run: the run was told so); the real
    /// corpus's domains keep their manifest's kind (a generated corpus given as `corpus` is
    /// trained and evaluated as the run's own data, its tokens counted as synthetic).
    pub kind: DomainKind,
    /// From a corpus given under `synthetic` (mixed at `mix_ratio`, never evaluated).
    pub stream: bool,
}

impl RunDomainSource {

    /// The first `unique_tokens` training tokens of the domain (its nested budget prefix),
    /// named and kinded as the run knows it.
    pub fn subset(&self, unique_tokens: u64) -> Result<Subset, String> {
        let dom = self.corpus.domain(&self.source_domain).map_err(|e| describe(&e))?;
        let mut subset = dom.unique_subset(unique_tokens).map_err(|e| describe(&e))?;
        subset.domain = self.name.clone();
        subset.kind = self.kind.clone();
        Ok(subset)
    }

    pub fn train_tokens(&self) -> u64 {
        self.corpus.domain(&self.source_domain).map(|d| d.train_tokens()).unwrap_or(0)
    }
}

/// The domains of a run: the real corpus's, in its order, then each synthetic stream's, in
/// the order given. Errors: a synthetic corpus whose tokenizer differs from the real corpus's
/// (the message names both corpora and both tokenizers). A synthetic domain whose name is
/// already taken (by a real domain or an earlier stream) is renamed deterministically to
/// `name.2`, `name.3`, … (the first free suffix), so two generated corpora with the default
/// domain `generated` become `generated` and `generated.2`.
/// `real_name` is how the messages name the real corpus (its raw input, if dctk ingested it).
pub fn merge_corpora(real: &Arc<Corpus>, real_name: &str, synthetic: &[SyntheticSource]) -> Result<Vec<RunDomainSource>, String> {
    let mut out: Vec<RunDomainSource> = real
        .domains()
        .iter()
        .map(|d| RunDomainSource { name: d.name.clone(), corpus: real.clone(), source_domain: d.name.clone(), kind: d.kind.clone(), stream: false })
        .collect();
    let tok = &real.manifest.tokenizer;
    for (i, s) in synthetic.iter().enumerate() {
        let other = &s.corpus.manifest.tokenizer;
        if other.hash != tok.hash {
            return Err(format!(
                "key \"synthetic\"[{i}]: corpus {} uses tokenizer {} ({}), but corpus {} uses {} ({}); all of a run's corpora must share one tokenizer",
                s.resolved.ingested_from.as_deref().unwrap_or(&s.corpus.dir).display(),
                other.kind,
                &other.hash[..16.min(other.hash.len())],
                real_name,
                tok.kind,
                &tok.hash[..16.min(tok.hash.len())],
            ));
        }
        for d in s.corpus.domains() {
            let mut name = d.name.clone();
            let mut k = 2;
            while out.iter().any(|o| o.name == name) {
                name = format!("{}.{k}", d.name);
                k += 1;
            }
            let kind = match &d.kind {
                DomainKind::Synthetic { .. } => d.kind.clone(),
                DomainKind::Real => DomainKind::Synthetic {
                    generator: format!("given as synthetic: {}", s.corpus.dir.display()),
                    source_domains: Vec::new(),
                },
            };
            out.push(RunDomainSource { name, corpus: s.corpus.clone(), source_domain: d.name.clone(), kind, stream: true });
        }
    }
    Ok(out)
}

/// The run's special tokens (BoLT's latent delimiters, Ruan et al. 2025, arXiv 2503.18866):
/// each corpus numbers its own after the shared base vocabulary (`vocab_size + i`), so the
/// run can use the longest list only if every corpus's list is a prefix of it (then every
/// id means the same string in every corpus). A plain real corpus (none) mixed with a
/// thought-augmented stream gives the stream's four. The error names the corpora.
pub fn merged_special_tokens(real: &Corpus, synthetic: &[SyntheticSource]) -> Result<Vec<String>, String> {
    let mut longest: (&[String], String) = (&real.manifest.special_tokens, real.dir.display().to_string());
    for (i, s) in synthetic.iter().enumerate() {
        let theirs = &s.corpus.manifest.special_tokens;
        let (short, long) = if theirs.len() > longest.0.len() { (longest.0, theirs.as_slice()) } else { (theirs.as_slice(), longest.0) };
        if long[..short.len()] != *short {
            return Err(format!(
                "key \"synthetic\"[{i}]: corpus {} has special tokens [{}] but corpus {} has [{}]; a run's corpora must number their special tokens alike (one list a prefix of the other)",
                s.corpus.dir.display(),
                theirs.join(", "),
                longest.1,
                longest.0.join(", ")
            ));
        }
        if theirs.len() > longest.0.len() {
            longest = (theirs, s.corpus.dir.display().to_string());
        }
    }
    Ok(longest.0.to_vec())
}
