//! The BoLT E-step's self-normalised importance resampling for one chunk (Ruan, Band,
//! Maddison, Hashimoto 2025, arXiv 2503.18866, §3 "bootstrapping latent thoughts", the
//! Monte Carlo E-step; authors' release ryoungj/BoLT @024315f, `apps/main/latent_bootstrap.py`):
//! K latents z_k sampled from the posterior q(z | x), weights log w_k = log p(z_k, x | prefix)
//! − log q(z_k | x), one latent chosen with probability softmax(log w), and the ELBO estimate
//! logsumexp(log w) − ln K.
use anyhow::{bail, Result};

/// The outcome of resampling one chunk's K candidates.
#[derive(Clone, Debug, PartialEq)]
pub struct Resampled {
    /// log w_k = log p(z_k, x | prefix) − log q(z_k | x), nats.
    pub log_weights: Vec<f64>,
    /// softmax(log w): the probability each candidate is chosen.
    pub probs: Vec<f64>,
    /// The chosen candidate.
    pub chosen: usize,
    /// logsumexp(log w) − ln K: the K-sample importance-weighted ELBO estimate, nats.
    pub elbo: f64,
}

/// Importance resampling of K candidates from their joint log-probabilities `log_p` and
/// proposal log-probabilities `log_q` (nats), choosing by inverse CDF with the uniform draw
/// `u` ∈ [0, 1): the first k whose cumulative probability exceeds `u` (the release's
/// `rng.choice(p = w / Σw)`). Errors on no candidates, mismatched lengths, a NaN or +∞
/// score, or weights that are all −∞.
pub fn importance_resample(log_p: &[f64], log_q: &[f64], u: f64) -> Result<Resampled> {
    if log_p.is_empty() || log_p.len() != log_q.len() {
        bail!("importance resampling needs K ≥ 1 candidates with one log p and one log q each (got {} and {})", log_p.len(), log_q.len());
    }
    if !(0.0..1.0).contains(&u) {
        bail!("importance resampling: the uniform draw {u} is not in [0, 1)");
    }
    let log_weights: Vec<f64> = log_p.iter().zip(log_q).map(|(p, q)| p - q).collect();
    if let Some(k) = log_weights.iter().position(|w| w.is_nan() || *w == f64::INFINITY) {
        bail!("importance resampling: candidate {k} has log p = {} and log q = {} (log w must be finite or −∞)", log_p[k], log_q[k]);
    }
    let max = log_weights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        bail!("importance resampling: every candidate has weight 0 (log w = −∞)");
    }
    let exp: Vec<f64> = log_weights.iter().map(|w| (w - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let probs: Vec<f64> = exp.iter().map(|e| e / sum).collect();
    let mut acc = 0.0;
    let mut chosen = probs.len() - 1;
    for (k, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            chosen = k;
            break;
        }
    }
    // Rounding can leave the last cumulative sum just under 1: then the last non-zero weight.
    if probs[chosen] == 0.0 {
        chosen = probs.iter().rposition(|&p| p > 0.0).unwrap_or(chosen);
    }
    let elbo = max + sum.ln() - (log_weights.len() as f64).ln();
    Ok(Resampled { log_weights, probs, chosen, elbo })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_example() {
        // log p = [−10, −12, −11], log q = [−11, −11, −13]  →  log w = [1, −1, 2].
        // Σ e^w = e + 1/e + e² = 2.718282 + 0.367879 + 7.389056 = 10.475217.
        // probs = [0.259496, 0.035119, 0.705385]; cumulative [0.259496, 0.294615, 1].
        // ELBO = ln 10.475217 − ln 3 = 2.349012 − 1.098612 = 1.250400.
        let log_p = [-10.0, -12.0, -11.0];
        let log_q = [-11.0, -11.0, -13.0];
        let r = importance_resample(&log_p, &log_q, 0.25).unwrap();
        assert_eq!(r.log_weights, vec![1.0, -1.0, 2.0]);
        for (p, want) in r.probs.iter().zip([0.259496, 0.035119, 0.705385]) {
            assert!((p - want).abs() < 1e-6, "{:?}", r.probs);
        }
        assert!((r.elbo - 1.250400).abs() < 1e-6, "{}", r.elbo);
        assert_eq!(r.chosen, 0);
        assert_eq!(importance_resample(&log_p, &log_q, 0.27).unwrap().chosen, 1);
        assert_eq!(importance_resample(&log_p, &log_q, 0.2947).unwrap().chosen, 2);
        assert_eq!(importance_resample(&log_p, &log_q, 0.999_999).unwrap().chosen, 2);
    }

    #[test]
    fn one_sample_is_the_plain_elbo_and_large_scores_do_not_overflow() {
        let r = importance_resample(&[-5.5], &[-2.0], 0.9).unwrap();
        assert_eq!((r.chosen, r.elbo), (0, -3.5));
        // Sums of thousands of token log-probs: the max-shift keeps this finite.
        let r = importance_resample(&[-3000.0, -3001.0], &[-1000.0, -1000.0], 0.0).unwrap();
        assert!((r.elbo - (-2000.0 + (1.0 + (-1.0f64).exp()).ln() - 2f64.ln())).abs() < 1e-9);
        // A zero weight is never chosen.
        let r = importance_resample(&[f64::NEG_INFINITY, -1.0], &[-1.0, -1.0], 0.0).unwrap();
        assert_eq!(r.chosen, 1);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(importance_resample(&[], &[], 0.5).is_err());
        assert!(importance_resample(&[1.0], &[1.0, 2.0], 0.5).is_err());
        assert!(importance_resample(&[f64::NAN], &[1.0], 0.5).is_err());
        assert!(importance_resample(&[f64::NEG_INFINITY], &[0.0], 0.5).is_err());
        assert!(importance_resample(&[0.0], &[0.0], 1.0).is_err());
    }
}
