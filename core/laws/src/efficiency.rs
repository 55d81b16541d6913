//! The data-efficiency multiplier of a method against a real-data-only baseline
//! ([`data_efficiency`]): fit the baseline's loss against unique real tokens D, invert the
//! fit at the method's loss, divide by the method's own unique real tokens, and bootstrap
//! the baseline runs for an interval.
//!
//! **Our reading, not a located formula.** Kim et al. 2026 (synthetic megadocs, arXiv
//! 2603.18534) report "data efficiency" (1.48×, 1.80×) without the formula in their released
//! code; it follows Kim et al. 2025 ("Pre-training under infinite compute", arXiv
//! 2509.14786), whose efficiency is the ratio of unique data a baseline needs to match a
//! method. We implement that plausible reading: L(D) = E + A·D^−β fitted to the baseline
//! (the `power_law` form L(x) = A/x^B + C, as marin's `PowerScalingLaw`: least squares on raw
//! losses, bounds [0, ∞)³), D_eq solving L(D_eq) = L_method(D₀), multiplier = D_eq / D₀.
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::Points;
use crate::decide::solve_data;
use crate::error::{LawError, Result};
use crate::fit::{fit, BootstrapOptions, Fit, FitOptions};
use crate::law::LawForm;

/// The multiplier, its interval and what it was computed from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataEfficiency {
    /// D_eq / D₀; +∞ when the method's loss is at or below the baseline's asymptote.
    pub multiplier: f64,
    /// The two-sided percentile interval of the multiplier over bootstrap refits of the
    /// baseline (runs resampled with replacement); `None` without a bootstrap.
    pub interval: Option<[f64; 2]>,
    /// D_eq: unique real tokens the fitted baseline needs to reach the method's loss.
    pub d_equivalent: f64,
    /// D₀: the method's unique real tokens.
    pub d_method: f64,
    /// The method's loss the baseline is inverted at.
    pub loss_method: f64,
    /// The baseline fit's limit as D → ∞ (its loss at D = e^120).
    pub asymptote: f64,
    /// The baseline fit's parameters by name.
    pub params: Vec<(String, f64)>,
    /// Bootstrap refits used (successful) and asked for.
    pub bootstrap_used: usize,
    pub bootstrap_asked: usize,
    /// Why the multiplier is unbounded, when it is.
    pub note: Option<String>,
}

/// The largest D the inversion searches: e^120 units of data (as `solve_data`).
const D_MAX_LN: f64 = 120.0;

/// `D` with L(D) = `target` under `params`, or +∞ when `target` is at or below the law's
/// limit at D = e^120 (no amount of data reaches it). `law`'s one input is D; it must
/// decrease in D.
pub fn equivalent_data(fit: &Fit, params: &[f64], target: f64) -> Result<f64> {
    let input = single_input(fit.law.as_ref())?;
    let limit = loss_at(fit.law.as_ref(), params, D_MAX_LN.exp());
    if target <= limit {
        return Ok(f64::INFINITY);
    }
    solve_data(fit, params, &input, &[], target)
}

fn single_input(law: &dyn LawForm) -> Result<String> {
    match law.inputs().as_slice() {
        [one] => Ok(one.clone()),
        many => Err(LawError::BadOption(format!(
            "law '{}' has inputs {}: a data-efficiency baseline needs a law of unique data alone (one input, e.g. power_law's x)",
            law.name(),
            many.join(", ")
        ))),
    }
}

fn loss_at(law: &dyn LawForm, params: &[f64], d: f64) -> f64 {
    law.predict(params, &crate::law::Inputs::new(law.inputs(), vec![vec![d]]))[0]
}

/// Percentile (numpy's linear interpolation) of sorted values that may hold +∞.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let h = p * (sorted.len() - 1) as f64;
    let (lo, frac) = (h.floor() as usize, h - h.floor());
    let hi = (lo + 1).min(sorted.len() - 1);
    if frac == 0.0 || sorted[lo] == sorted[hi] {
        sorted[lo]
    } else {
        sorted[lo] + frac * (sorted[hi] - sorted[lo])
    }
}

/// The data-efficiency multiplier (see the module docs for the reading): fits `law` (one
/// input, unique real tokens D) to the baseline points (`d`, `loss`), inverts it at
/// `loss_method` and divides by `d_method`. With a `bootstrap`, the baseline points are
/// resampled with replacement (its `resamples` and `seed`), refitted, and the `level` percentile
/// interval of the refits' multipliers is returned (unbounded refits count as +∞).
///
/// Errors: fewer baseline points than the law has parameters; a law with more than one input.
/// A method loss at or below the baseline's asymptote is not an error: multiplier and
/// D_eq are +∞ and `note` says why.
pub fn data_efficiency(
    law: Arc<dyn LawForm>,
    d: &[f64],
    loss: &[f64],
    d_method: f64,
    loss_method: f64,
    bootstrap: Option<BootstrapOptions>,
) -> Result<DataEfficiency> {
    let input = single_input(law.as_ref())?;
    let n_params = law.params().len();
    if d.len() < n_params {
        return Err(LawError::TooFewPoints { points: d.len(), params: n_params });
    }
    if !(d_method.is_finite() && d_method > 0.0 && loss_method.is_finite()) {
        return Err(LawError::BadOption(format!("the method's unique tokens ({d_method}) and loss ({loss_method}) must be finite, tokens > 0")));
    }
    let points = Points::from_columns(vec![(input, d.to_vec())], loss.to_vec())?;
    let opts = FitOptions {
        bootstrap: bootstrap.filter(|b| b.resamples > 0),
        ..FitOptions::default()
    };
    let f = fit(law.clone(), &points, &opts)?;
    let params = f.params();
    let d_eq = equivalent_data(&f, &params, loss_method)?;
    let asymptote = loss_at(law.as_ref(), &params, D_MAX_LN.exp());
    let interval = if f.bootstrap_samples.is_empty() {
        None
    } else {
        let mut m: Vec<f64> = f.bootstrap_samples.iter().filter_map(|p| equivalent_data(&f, p, loss_method).ok()).map(|x| x / d_method).collect();
        m.sort_by(|a, b| a.total_cmp(b));
        let level = bootstrap.map_or(0.95, |b| b.level);
        (!m.is_empty()).then(|| [percentile(&m, (1.0 - level) / 2.0), percentile(&m, (1.0 + level) / 2.0)])
    };
    let note = d_eq.is_infinite().then(|| {
        format!(
            "the method's loss {loss_method} is at or below the baseline's asymptote {asymptote} (law '{}' fitted to {} runs): no amount of real data reaches it under this fit, so the multiplier is unbounded",
            law.name(),
            d.len()
        )
    });
    Ok(DataEfficiency {
        multiplier: d_eq / d_method,
        interval,
        d_equivalent: d_eq,
        d_method,
        loss_method,
        asymptote,
        params: law.params().iter().map(|p| p.name.clone()).zip(params).collect(),
        bootstrap_used: f.bootstrap_samples.len(),
        bootstrap_asked: bootstrap.map_or(0, |b| b.resamples),
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::PowerLaw;

    fn boot(resamples: usize, seed: u64) -> BootstrapOptions {
        BootstrapOptions { resamples, seed, level: 0.95 }
    }

    /// L(D) = 2 + 400·D^−0.3 on D = 10³ … 10⁶ (exact, no noise).
    fn exact_points() -> (Vec<f64>, Vec<f64>) {
        let d: Vec<f64> = (0..7).map(|i| 1e3 * 10f64.powf(i as f64 * 0.5)).collect();
        let loss = d.iter().map(|x| 2.0 + 400.0 * x.powf(-0.3)).collect();
        (d, loss)
    }

    #[test]
    fn recovers_the_multiplier_of_a_known_law() {
        let (d, loss) = exact_points();
        // A method at D₀ = 10⁵ with the baseline's loss at 3.7·10⁵: multiplier 3.7.
        let truth = |x: f64| 2.0 + 400.0 * x.powf(-0.3);
        let e = data_efficiency(Arc::new(PowerLaw), &d, &loss, 1e5, truth(3.7e5), None).unwrap();
        assert!((e.multiplier - 3.7).abs() < 1e-6, "{e:?}");
        assert!((e.asymptote - 2.0).abs() < 1e-6, "{e:?}");
        assert!(e.note.is_none() && e.interval.is_none());
    }

    #[test]
    fn hand_checkable_inversion() {
        // L = 2 + 10/√D: L(100) = 3; a method at D₀ = 100 with loss 2.5 matches
        // D_eq = (10/0.5)² = 400, a multiplier of 4.
        let d = [25.0, 100.0, 400.0, 1600.0, 6400.0];
        let loss: Vec<f64> = d.iter().map(|x: &f64| 2.0 + 10.0 / x.sqrt()).collect();
        let e = data_efficiency(Arc::new(PowerLaw), &d, &loss, 100.0, 2.5, None).unwrap();
        assert!((e.d_equivalent - 400.0).abs() < 1e-4, "{e:?}");
        assert!((e.multiplier - 4.0).abs() < 1e-6, "{e:?}");
    }

    #[test]
    fn below_the_asymptote_is_unbounded_with_a_note_and_too_few_points_are_refused() {
        let (d, loss) = exact_points();
        let e = data_efficiency(Arc::new(PowerLaw), &d, &loss, 1e5, 1.9, Some(boot(20, 7))).unwrap();
        assert!(e.multiplier.is_infinite() && e.d_equivalent.is_infinite());
        assert!(e.note.as_deref().unwrap().contains("asymptote"), "{e:?}");
        let err = data_efficiency(Arc::new(PowerLaw), &d[..2], &loss[..2], 1e5, 3.0, None).unwrap_err();
        assert!(matches!(err, LawError::TooFewPoints { points: 2, params: 3 }), "{err}");
    }

    #[test]
    fn bootstrap_interval_brackets_the_estimate_on_noisy_data_and_is_seeded() {
        let (d, mut loss) = exact_points();
        for (i, l) in loss.iter_mut().enumerate() {
            *l += if i % 2 == 0 { 0.004 } else { -0.004 };
        }
        let truth = |x: f64| 2.0 + 400.0 * x.powf(-0.3);
        let a = data_efficiency(Arc::new(PowerLaw), &d, &loss, 1e5, truth(2e5), Some(boot(200, 3))).unwrap();
        let [lo, hi] = a.interval.unwrap();
        assert!(lo <= a.multiplier && a.multiplier <= hi, "{a:?}");
        assert!(a.bootstrap_used > 100, "{a:?}");
        let b = data_efficiency(Arc::new(PowerLaw), &d, &loss, 1e5, truth(2e5), Some(boot(200, 3))).unwrap();
        assert_eq!(a.interval, b.interval, "same seed, same interval");
    }

    #[test]
    fn percentiles_handle_unbounded_refits() {
        assert_eq!(percentile(&[1.0, 2.0, f64::INFINITY, f64::INFINITY], 0.975), f64::INFINITY);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert!((percentile(&[1.0, 2.0], 0.25) - 1.25).abs() < 1e-12);
    }
}
