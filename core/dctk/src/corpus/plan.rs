//! What a [`DataSpec`] asks of an open corpus ([`plan_data`]): which domains, each one's
//! unique-token budget (the spec's total split by weight unless a domain names its own),
//! weights or a proportion schedule, epoch limits, the fixed per-domain validation batches, and
//! the data fingerprint that enters the run id; with `synthetic` streams (merged with the
//! corpus by [`merge_corpora`]), their domains, budgets and `mix_ratio` weights too.
//!
//! Planning has two stages so that a seed sweep plans its data once: [`plan_selection`] does
//! the work (subsets, validation checks, a trial sampler) for a [`Selection`], and
//! [`PlannedSelection::with_order_seed`] adds the data-order seed, which changes only the
//! mixture's seed and the fingerprint's last input.
use std::sync::Arc;

use dctk_data::{sampler_over, Batch, Corpus, DomainKind, Exhaustion, MixDomainSpec, MixSpec, Sampler, SchedulePoint, ValBatches};
use serde::{Deserialize, Serialize};

use super::merge::{merge_corpora, merged_special_tokens, RunDomainSource, SyntheticSource};
use super::{describe, DataSpec, ResolvedCorpus, Selection};

/// One selected domain as the run uses it (recorded in the run manifest).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DomainPlan {
    pub name: String,
    /// Relative weight (normalised over the selected domains).
    pub weight: f64,
    /// This domain's unique-token budget (a nested prefix of its training split).
    pub unique_tokens: u64,
    /// Serve at most this many epochs of the budget, then leave the mixture.
    pub epochs_limit: Option<u32>,
    /// Training tokens the domain has in the corpus.
    pub available_train_tokens: u64,
    /// Validation target tokens scored per evaluation.
    pub val_tokens: u64,
    /// blake3 of the subset's spans and tokenizer (see `dctk_data::Subset`).
    pub subset_fingerprint: String,
    /// `Real`, or `Synthetic` for a synthetic stream's domain (trained on, never evaluated).
    #[serde(default)]
    pub kind: DomainKind,
    /// A synthetic stream's domain (`synthetic`): mixed at `mix_ratio`, never evaluated.
    #[serde(default)]
    pub stream: bool,
    /// The corpus a synthetic stream's domain is read from (`None`: the run's corpus).
    #[serde(default)]
    pub corpus_dir: Option<String>,
    /// Its name in that corpus, when the run renamed it (a name already taken).
    #[serde(default)]
    pub source_domain: Option<String>,
}

/// Where a run's data came from and how it is split (written to the run manifest).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DataManifest {
    /// The ingested corpus directory the run reads.
    pub corpus_dir: String,
    /// The raw input it was ingested from, when dctk ingested it automatically.
    pub ingested_from: Option<String>,
    /// Tokenizer kind and content hash.
    pub tokenizer: String,
    pub vocab_size: u32,
    /// The run's special tokens, ids `vocab_size + i` (over all its corpora; BoLT's latent
    /// delimiters): what the model has rows for and what a loaded model's tokenizer maps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special_tokens: Vec<String>,
    pub domains: Vec<DomainPlan>,
    /// Proportion schedule (weights per domain, in `domains` order), if any.
    pub schedule: Option<Vec<SchedulePoint>>,
    pub cross_doc_attention: bool,
    /// The fraction of training tokens asked of the synthetic streams (`None`: none).
    #[serde(default)]
    pub mix_ratio: Option<f64>,
    /// blake3 over the tokenizer, the selected shards' hashes, the subsets and the validation
    /// settings: the run's data identity.
    pub fingerprint: String,
}

/// Everything the trainer needs from the data side.
pub struct RunData {
    /// What was planned.
    pub spec: DataSpec,
    /// The real corpus (validation reads it; synthetic streams are read from `sources`).
    pub corpus: Arc<Corpus>,
    /// Each mixture domain's corpus, in `mix.domains` order.
    pub sources: Vec<RunDomainSource>,
    pub mix: MixSpec,
    pub manifest: DataManifest,
}

/// A planned [`Selection`]: everything of a run's data but its order seed.
pub struct PlannedSelection {
    selection: Selection,
    corpus: Arc<Corpus>,
    sources: Vec<RunDomainSource>,
    /// The mixture with seed 0; [`Self::with_order_seed`] sets the seed.
    mix: MixSpec,
    /// The manifest with an empty fingerprint.
    manifest: DataManifest,
    /// The fingerprint hasher fed with everything but the mixture (which holds the seed).
    fingerprint: blake3::Hasher,
}

impl PlannedSelection {
    /// The run's data under `order_seed`.
    pub fn with_order_seed(&self, spec: &DataSpec, order_seed: u64) -> Result<RunData, String> {
        debug_assert_eq!(spec.selection, self.selection);
        let mix = MixSpec { seed: order_seed, ..self.mix.clone() };
        let mut h = self.fingerprint.clone();
        h.update(ron::to_string(&mix).map_err(|e| e.to_string())?.as_bytes());
        let manifest = DataManifest { fingerprint: h.finalize().to_hex().to_string(), ..self.manifest.clone() };
        Ok(RunData { spec: DataSpec { order_seed, ..spec.clone() }, corpus: self.corpus.clone(), sources: self.sources.clone(), mix, manifest })
    }
}

/// Splits `total` into integer parts proportional to `weights` (largest remainder; ties to
/// the earlier entry), so the parts sum to exactly `total`.
pub fn split_by_weight(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut left = total - parts.iter().sum::<u64>().min(total);
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

/// Resolves a data spec against its open corpora (the real one and the synthetic streams):
/// domains, budgets, weights, schedule, fingerprint.
pub fn plan_data(spec: &DataSpec, corpus: Arc<Corpus>, resolved: &ResolvedCorpus, synthetic: &[SyntheticSource]) -> Result<RunData, String> {
    plan_selection(&spec.selection, corpus, resolved, synthetic)?.with_order_seed(spec, spec.order_seed)
}

/// The seed-independent part of [`plan_data`].
///
/// With synthetic streams (Kim et al. 2026, arXiv 2603.18534: a rephrase stream mixed into
/// real data at a fixed `mix_ratio`, the fraction of *training tokens* that are synthetic):
/// the real domains' weights are scaled to sum to 1 − mix_ratio and the synthetic domains'
/// to mix_ratio, split between them by their budgets' sizes (unique tokens), or by their
/// `domains` weights when any synthetic domain is given one. mix_ratio = 1 leaves the real
/// domains at weight 0: evaluated, never trained on.
pub fn plan_selection(sel: &Selection, corpus: Arc<Corpus>, resolved: &ResolvedCorpus, synthetic: &[SyntheticSource]) -> Result<PlannedSelection, String> {
    let real_name = resolved.ingested_from.as_deref().unwrap_or(&resolved.dir).display().to_string();
    let sources = merge_corpora(&corpus, &real_name, synthetic)?;
    let special_tokens = merged_special_tokens(&corpus, synthetic)?;
    let available: Vec<String> = sources.iter().filter(|s| !s.stream).map(|s| s.name.clone()).collect();
    let synthetic_names: Vec<String> = sources.iter().filter(|s| s.stream).map(|s| s.name.clone()).collect();
    if !synthetic.is_empty() && synthetic_names.is_empty() {
        return Err("key \"synthetic\": the synthetic corpora have no domains".into());
    }
    if synthetic.is_empty() != sel.mix_ratio.is_none() {
        return Err("keys \"synthetic\" and \"mix_ratio\" go together: give both or neither".into());
    }
    let known = || {
        if synthetic_names.is_empty() {
            available.join(", ")
        } else {
            format!("{} (synthetic: {})", available.join(", "), synthetic_names.join(", "))
        }
    };
    // Selected real domains in name order (a Rhai map's order), with their settings; the
    // settings of the synthetic domains `domains` names.
    let mut synthetic_choice: std::collections::BTreeMap<String, super::DomainChoice> = Default::default();
    let selected: Vec<(String, super::DomainChoice)> = match &sel.domains {
        None => available.iter().map(|n| (n.clone(), Default::default())).collect(),
        Some(map) => {
            let mut v = Vec::new();
            for (name, choice) in map {
                if synthetic_names.contains(name) {
                    synthetic_choice.insert(name.clone(), choice.clone());
                } else if available.contains(name) {
                    v.push((name.clone(), choice.clone()));
                } else {
                    return Err(format!("key \"domains\": unknown domain \"{name}\"; the corpus has: {}", known()));
                }
            }
            if v.is_empty() && !synthetic_choice.is_empty() {
                // Only synthetic domains named: every real domain, with default settings.
                v = available.iter().map(|n| (n.clone(), Default::default())).collect();
            }
            v
        }
    };
    if selected.is_empty() {
        return Err(format!("key \"domains\": select at least one domain; the corpus has: {}", known()));
    }
    if sel.schedule_mix.is_some() && sel.mix_ratio.is_some() {
        return Err("key \"schedule_mix\": cannot be combined with \"synthetic\" (mix_ratio fixes the proportions)".into());
    }
    // Budgets: explicit ones first, the rest of `unique_tokens` split by weight.
    let explicit: u64 = selected.iter().filter_map(|(_, c)| c.unique_tokens).sum();
    let implicit: Vec<usize> = (0..selected.len()).filter(|&i| selected[i].1.unique_tokens.is_none()).collect();
    if explicit > sel.unique_tokens || (implicit.is_empty() && explicit != sel.unique_tokens) {
        return Err(format!(
            "key \"unique_tokens\" ({}) must equal the sum of the domains' own unique_tokens ({explicit}) plus the share of the domains without one",
            sel.unique_tokens
        ));
    }
    let shares = split_by_weight(
        sel.unique_tokens - explicit,
        &implicit.iter().map(|&i| selected[i].1.weight()).collect::<Vec<_>>(),
    );
    let mut budgets: Vec<u64> = selected.iter().map(|(_, c)| c.unique_tokens.unwrap_or(0)).collect();
    for (&i, s) in implicit.iter().zip(shares) {
        budgets[i] = s;
    }
    let source_of = |name: &str| sources.iter().find(|s| s.name == name).expect("a merged domain");

    let mut h = blake3::Hasher::new();
    h.update(b"dctk/run-data/v1\0");
    h.update(corpus.manifest.tokenizer.hash.as_bytes());
    // The special tokens decide which ids the delimiters get (a plain run hashes nothing here).
    for t in &special_tokens {
        h.update(b"special\0");
        h.update(t.as_bytes());
    }
    h.update(&sel.val_tokens.to_le_bytes());
    let mut domains = Vec::new();
    let mut mix_domains = Vec::new();
    for ((name, choice), &budget) in selected.iter().zip(&budgets) {
        let dom = corpus.domain(name).map_err(|e| describe(&e))?;
        if budget == 0 {
            return Err(format!(
                "key \"domains\": domain \"{name}\" gets 0 unique tokens (raise unique_tokens or its weight, or drop it)"
            ));
        }
        let subset = dom.unique_subset(budget).map_err(|e| format!("key \"unique_tokens\": {}", describe(&e)))?;
        let val = dom.val_subset();
        let val_rows_available = ValBatches::new(val, sel.seq_len, 1, usize::MAX, true).total_target_tokens();
        let val_target_tokens = sel.val_rows() * sel.seq_len as u64;
        if val_rows_available < val_target_tokens {
            let hint = if resolved.ingested_from.is_some() {
                "raise val_fraction or lower val_tokens"
            } else {
                "lower val_tokens, or re-ingest with a larger --val-fraction"
            };
            return Err(format!(
                "key \"val_tokens\" ({}): domain \"{name}\" of {} has only {} held-out tokens ({val_rows_available} scorable at seq_len {}); {hint}",
                sel.val_tokens,
                corpus.dir.display(),
                dom.val_tokens(),
                sel.seq_len,
            ));
        }
        h.update(name.as_bytes());
        h.update(&[0]);
        for s in &dom.manifest.shards {
            h.update(s.tokens_blake3.as_bytes());
            h.update(s.index_blake3.as_bytes());
        }
        h.update(subset.fingerprint.as_bytes());
        domains.push(DomainPlan {
            name: name.clone(),
            weight: choice.weight(),
            unique_tokens: budget,
            epochs_limit: choice.epochs_limit,
            available_train_tokens: dom.train_tokens(),
            val_tokens: val_target_tokens,
            subset_fingerprint: subset.fingerprint.clone(),
            kind: dom.kind.clone(),
            stream: false,
            corpus_dir: None,
            source_domain: None,
        });
        mix_domains.push(MixDomainSpec {
            name: name.clone(),
            unique_tokens: Some(budget),
            weight: choice.weight(),
            exhaustion: match choice.epochs_limit {
                Some(k) => Exhaustion::StopAfterEpochs(k),
                None => Exhaustion::Repeat,
            },
        });
    }
    if let Some(ratio) = sel.mix_ratio {
        // The synthetic streams: every domain of every synthetic corpus, its budget its own
        // `unique_tokens`, else a share of `synthetic_unique_tokens` by training tokens, else
        // all its training tokens; no validation (the metric is the real domains' loss).
        let streams: Vec<&RunDomainSource> = sources.iter().filter(|s| s.stream).collect();
        let own: Vec<Option<u64>> = streams.iter().map(|s| synthetic_choice.get(&s.name).and_then(|c| c.unique_tokens)).collect();
        let mut budgets: Vec<u64> = streams.iter().zip(&own).map(|(s, o)| o.unwrap_or(s.train_tokens())).collect();
        if let Some(total) = sel.synthetic_unique_tokens {
            let explicit: u64 = own.iter().flatten().sum();
            let rest: Vec<usize> = (0..streams.len()).filter(|&i| own[i].is_none()).collect();
            if explicit > total || (rest.is_empty() && explicit != total) {
                return Err(format!(
                    "key \"synthetic_unique_tokens\" ({total}) must equal the sum of the synthetic domains' own unique_tokens ({explicit}) plus the share of those without one"
                ));
            }
            let sizes: Vec<f64> = rest.iter().map(|&i| streams[i].train_tokens() as f64).collect();
            for (&i, part) in rest.iter().zip(split_by_weight(total - explicit, &sizes)) {
                budgets[i] = part;
            }
        }
        let by_weight = streams.iter().any(|s| synthetic_choice.get(&s.name).is_some_and(|c| c.weight.is_some()));
        let raw: Vec<f64> = streams
            .iter()
            .zip(&budgets)
            .map(|(s, &b)| if by_weight { synthetic_choice.get(&s.name).map_or(1.0, |c| c.weight()) } else { b as f64 })
            .collect();
        let raw_sum: f64 = raw.iter().sum();
        // Real weights scaled to 1 − ratio, synthetic ones to ratio.
        let real_sum: f64 = mix_domains.iter().map(|d| d.weight).sum();
        for (d, p) in mix_domains.iter_mut().zip(domains.iter_mut()) {
            d.weight = d.weight / real_sum * (1.0 - ratio);
            p.weight = d.weight;
        }
        h.update(b"synthetic streams\0");
        for ((s, &budget), w) in streams.iter().zip(&budgets).zip(&raw) {
            if budget == 0 {
                return Err(format!("key \"synthetic_unique_tokens\": synthetic domain \"{}\" gets 0 unique tokens", s.name));
            }
            let subset = s.subset(budget).map_err(|e| format!("key \"synthetic\": {e}"))?;
            let dom = s.corpus.domain(&s.source_domain).map_err(|e| describe(&e))?;
            h.update(s.name.as_bytes());
            h.update(&[0]);
            for sh in &dom.manifest.shards {
                h.update(sh.tokens_blake3.as_bytes());
                h.update(sh.index_blake3.as_bytes());
            }
            h.update(subset.fingerprint.as_bytes());
            let weight = w / raw_sum * ratio;
            let epochs_limit = synthetic_choice.get(&s.name).and_then(|c| c.epochs_limit);
            domains.push(DomainPlan {
                name: s.name.clone(),
                weight,
                unique_tokens: budget,
                epochs_limit,
                available_train_tokens: s.train_tokens(),
                val_tokens: 0,
                subset_fingerprint: subset.fingerprint.clone(),
                kind: s.kind.clone(),
                stream: true,
                corpus_dir: Some(s.corpus.dir.display().to_string()),
                source_domain: (s.source_domain != s.name).then(|| s.source_domain.clone()),
            });
            mix_domains.push(MixDomainSpec {
                name: s.name.clone(),
                unique_tokens: Some(budget),
                weight,
                exhaustion: match epochs_limit {
                    Some(k) => Exhaustion::StopAfterEpochs(k),
                    None => Exhaustion::Repeat,
                },
            });
        }
    }
    let schedule = match &sel.schedule_mix {
        None => None,
        Some(points) => {
            let mut out = Vec::new();
            for (i, p) in points.iter().enumerate() {
                for k in p.weights.keys() {
                    if !selected.iter().any(|(n, _)| n == k) {
                        return Err(format!(
                            "key \"schedule_mix\"[{i}].weights: \"{k}\" is not a selected domain; selected: {}",
                            selected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
                let weights = selected
                    .iter()
                    .map(|(n, _)| {
                        p.weights.get(n).copied().ok_or_else(|| {
                            format!("key \"schedule_mix\"[{i}].weights: no weight for domain \"{n}\" (give every selected domain one)")
                        })
                    })
                    .collect::<Result<Vec<f64>, String>>()?;
                out.push(SchedulePoint { step: p.step, weights });
            }
            Some(out)
        }
    };
    let mix = MixSpec {
        domains: mix_domains,
        schedule: schedule.clone(),
        seq_len: sel.seq_len,
        batch_size: sel.batch_size,
        seed: 0,
        cross_doc_attention: sel.cross_doc_attention,
    };
    let run_sources: Vec<RunDomainSource> = mix.domains.iter().map(|d| source_of(&d.name).clone()).collect();
    // Build a sampler once now, so configuration errors surface before a run directory exists
    // (no check depends on the seed).
    sampler_of(&mix, &run_sources)?;
    let info = &corpus.manifest.tokenizer;
    let manifest = DataManifest {
        corpus_dir: resolved.dir.display().to_string(),
        ingested_from: resolved.ingested_from.as_ref().map(|p| p.display().to_string()),
        tokenizer: format!("{} ({})", info.kind, &info.hash[..16.min(info.hash.len())]),
        vocab_size: info.vocab_size,
        special_tokens,
        domains,
        schedule,
        cross_doc_attention: sel.cross_doc_attention,
        mix_ratio: sel.mix_ratio,
        fingerprint: String::new(),
    };
    Ok(PlannedSelection { selection: sel.clone(), corpus, sources: run_sources, mix, manifest, fingerprint: h })
}

/// The sampler of `mix` over the domains' own corpora (`sources`, in `mix.domains` order).
fn sampler_of(mix: &MixSpec, sources: &[RunDomainSource]) -> Result<Sampler, String> {
    let subsets = mix
        .domains
        .iter()
        .zip(sources)
        .map(|(d, s)| s.subset(d.unique_tokens.unwrap_or_else(|| s.train_tokens())))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| format!("data mixture: {e}"))?;
    sampler_over(mix, subsets).map_err(|e| format!("data mixture: {}", describe(&e)))
}

impl RunData {
    /// A fresh sampler of the run's mixture, each domain read from its own corpus.
    pub fn sampler(&self) -> Result<Sampler, String> {
        sampler_of(&self.mix, &self.sources)
    }
}

/// The fixed validation batches of every selected domain, at most `rows_per_batch` rows each,
/// exactly [`DataSpec::val_rows`] rows per domain: (domain name, batches).
pub fn val_batches(data: &RunData, rows_per_batch: usize) -> Result<Vec<(String, Vec<Batch>)>, String> {
    let sel = &data.spec.selection;
    let rows = sel.val_rows() as usize;
    let mut out = Vec::new();
    // Synthetic streams are trained on, not evaluated: the held-out loss is the real data's.
    for d in data.manifest.domains.iter().filter(|d| !d.stream) {
        let dom = data.corpus.domain(&d.name).map_err(|e| describe(&e))?;
        let max_batches = rows.div_ceil(rows_per_batch);
        let mut left = rows;
        let mut batches = Vec::new();
        for mut b in ValBatches::new(dom.val_subset(), sel.seq_len, rows_per_batch, max_batches, sel.cross_doc_attention) {
            let n = b.batch_size.min(left);
            b.tokens.truncate(n * (b.seq_len + 1));
            b.doc_starts.truncate(n);
            b.domain.truncate(n);
            b.batch_size = n;
            left -= n;
            batches.push(b);
            if left == 0 {
                break;
            }
        }
        if left != 0 {
            return Err(format!("domain \"{}\": validation split too small for val_tokens = {}", d.name, sel.val_tokens));
        }
        out.push((d.name.clone(), batches));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_weight_sums_exactly_and_follows_weights() {
        assert_eq!(split_by_weight(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        assert_eq!(split_by_weight(100, &[3.0, 1.0]), vec![75, 25]);
        let p = split_by_weight(250_000, &[1.0; 7]);
        assert_eq!(p.iter().sum::<u64>(), 250_000);
        assert!(p.iter().all(|&x| x == 35_714 || x == 35_715), "{p:?}");
        assert_eq!(split_by_weight(0, &[1.0, 2.0]), vec![0, 0]);
    }
}
