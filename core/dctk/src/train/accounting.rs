//! A run's real-versus-synthetic token accounting ([`RealSyntheticAccounting`]), derived
//! from the sampler's exact per-domain counts ([`MixAccounting`]); recorded in the run's
//! result (flat keys of `train`'s result map: `run.real_tokens_seen`, …) and in its manifest.
use std::collections::BTreeMap;

use dctk_data::MixAccounting;
use serde::{Deserialize, Serialize};

/// What a run took from real and from synthetic data (Kim et al. 2026, arXiv 2603.18534).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RealSyntheticAccounting {
    /// The real domains' unique-token budgets, summed (documents only).
    pub real_unique_tokens: u64,
    /// Training tokens served from the real domains (separators included).
    pub real_tokens_seen: u64,
    /// Training tokens served from the synthetic streams (separators included).
    pub synthetic_tokens_seen: u64,
    /// Passes over the real budget: real_tokens_seen / the real domains' epoch tokens
    /// (documents + one separator each).
    pub real_epochs: f64,
    /// Passes over the synthetic streams as served: synthetic_tokens_seen / their epoch tokens.
    pub synthetic_epochs: f64,
    /// The same per synthetic domain (stream).
    pub synthetic_epochs_by_stream: BTreeMap<String, f64>,
    /// The fraction of training tokens asked of the synthetic streams (0 without any).
    pub mix_ratio: f64,
    /// The fraction served: synthetic_tokens_seen / all training tokens.
    pub mix_ratio_realized: f64,
    /// Kim et al.'s synthetic-epoch count: all training tokens / the synthetic streams'
    /// epoch tokens (marin `get_real_tokens`: `synth_epochs = total_tokens / synth_tokens`).
    pub synthetic_epochs_kim: f64,
    /// Kim et al.'s real-token equivalent, `real_tokens = REAL·epochs + REAL·synth_epochs`.
    pub real_tokens_equivalent: f64,
}

impl RealSyntheticAccounting {
    /// The accounting of a run's sampler counts, `mix_ratio` as asked.
    ///
    /// Kim et al. 2026 (arXiv 2603.18534), in the authors' code (marin
    /// `experiments/data_efficiency/synth_data_final_plots.py`, `RunConfig.get_real_tokens`):
    /// total = REAL·epochs/(1 − mix_ratio), synth_epochs = total/SYNTH_STREAM_TOKENS and
    /// `real_tokens = REAL·epochs + REAL·synth_epochs`. **Reading implemented**: the code's, to
    /// the letter: `synth_epochs` divides *all* training tokens (not only the synthetic share,
    /// total·mix_ratio) by the stream's size; it is reported as `synthetic_epochs_kim`, while
    /// `synthetic_epochs` is the passes actually served (= total·mix_ratio/SYNTH, the other
    /// reading). Measured values replace the nominal ones: REAL = the real budgets' unique
    /// tokens, epochs = `real_epochs` as served, total = all tokens served, SYNTH = the
    /// synthetic streams' epoch tokens. Without synthetic streams it is REAL·epochs.
    pub fn of(acc: &MixAccounting, mix_ratio: Option<f64>) -> RealSyntheticAccounting {
        let real = acc.domains.iter().filter(|d| !d.kind.is_synthetic());
        let synth: Vec<_> = acc.domains.iter().filter(|d| d.kind.is_synthetic()).collect();
        let real_unique_tokens: u64 = real.clone().map(|d| d.unique_tokens).sum();
        let real_epoch_tokens: u64 = real.map(|d| d.epoch_tokens).sum();
        let synthetic_epoch_tokens: u64 = synth.iter().map(|d| d.epoch_tokens).sum();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let real_epochs = ratio(acc.real_tokens_served, real_epoch_tokens);
        let synthetic_epochs_kim = ratio(acc.tokens_served, synthetic_epoch_tokens);
        RealSyntheticAccounting {
            real_unique_tokens,
            real_tokens_seen: acc.real_tokens_served,
            synthetic_tokens_seen: acc.synthetic_tokens_served,
            real_epochs,
            synthetic_epochs: ratio(acc.synthetic_tokens_served, synthetic_epoch_tokens),
            synthetic_epochs_by_stream: synth.iter().map(|d| (d.name.clone(), d.realized_epochs)).collect(),
            mix_ratio: mix_ratio.unwrap_or(0.0),
            mix_ratio_realized: ratio(acc.synthetic_tokens_served, acc.tokens_served),
            synthetic_epochs_kim,
            real_tokens_equivalent: real_unique_tokens as f64 * (real_epochs + synthetic_epochs_kim),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dctk_data::{DomainAccounting, DomainKind, Exhaustion};

    fn domain(name: &str, kind: DomainKind, unique: u64, docs: u64, served: u64) -> DomainAccounting {
        DomainAccounting {
            name: name.into(),
            kind,
            exhaustion: Exhaustion::Repeat,
            unique_tokens: unique,
            unique_docs: docs,
            epoch_tokens: unique + docs,
            tokens_served: served,
            separators_served: 0,
            sequences_served: 0,
            realized_epochs: served as f64 / (unique + docs) as f64,
            completed_epochs: served / (unique + docs),
            unique_tokens_seen: unique,
            exhausted: false,
        }
    }

    #[test]
    fn kim_real_tokens_by_hand() {
        // REAL = 990 unique tokens in 10 documents (1,000 per epoch), served 4 epochs; a
        // synthetic stream of 3,000 tokens per epoch served 12,000 tokens (4 passes): total
        // 16,000, mix 0.75. Kim: synth_epochs = 16,000 / 3,000; real_tokens = 990·(4 + 16/3).
        let synth = DomainKind::Synthetic { generator: "g".into(), source_domains: vec![] };
        let acc = MixAccounting {
            steps: 16,
            batch_size: 10,
            seq_len: 100,
            tokens_served: 16_000,
            real_tokens_served: 4_000,
            synthetic_tokens_served: 12_000,
            domains: vec![domain("web", DomainKind::Real, 990, 10, 4_000), domain("gen", synth, 2_900, 100, 12_000)],
        };
        let a = RealSyntheticAccounting::of(&acc, Some(0.75));
        assert_eq!((a.real_unique_tokens, a.real_tokens_seen, a.synthetic_tokens_seen), (990, 4_000, 12_000));
        assert_eq!((a.real_epochs, a.synthetic_epochs, a.mix_ratio_realized), (4.0, 4.0, 0.75));
        assert!((a.synthetic_epochs_kim - 16.0 / 3.0).abs() < 1e-12);
        assert!((a.real_tokens_equivalent - 990.0 * (4.0 + 16.0 / 3.0)).abs() < 1e-9);
        assert_eq!(a.synthetic_epochs_by_stream["gen"], 4.0);
        // Real data only: REAL·epochs.
        let real_only = MixAccounting { synthetic_tokens_served: 0, tokens_served: 4_000, domains: acc.domains[..1].to_vec(), ..acc };
        let b = RealSyntheticAccounting::of(&real_only, None);
        assert_eq!((b.real_tokens_equivalent, b.mix_ratio, b.synthetic_epochs_kim), (990.0 * 4.0, 0.0, 0.0));
    }
}
