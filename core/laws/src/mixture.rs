//! Mixture optimisation under fitted BiMix laws (Ge et al. 2024, arXiv 2405.14908: per domain
//! L_i(s, r_i) = (A_i/s^{a_i} + C_i)·B_i/r_i^{b_i}, as coded in the authors' release): the proportions
//! r on the simplex, with per-domain bounds, that minimise the weighted total predicted loss
//! Σ_i w_i L_i(s, r_i) at a target step s.
//!
//! The objective is separable: with K_i = AB_i/s^{a_i} + CB_i ≥ 0, the term w_i K_i r_i^{−b_i} is
//! convex and decreasing in r_i when b_i > 0 and non-decreasing when b_i ≤ 0. The KKT conditions
//! then give the exact optimum: r_i(λ) = clamp((w_i K_i b_i / λ)^{1/(1+b_i)}, lo_i, hi_i) for the
//! decreasing terms and r_i = lo_i for the others, with the multiplier λ found by bisection on
//! ln λ so that Σ r_i = 1 (Σ r_i(λ) is continuous and non-increasing in λ). No starts, no
//! local optima; 22 domains take microseconds.
use crate::error::{LawError, Result};

/// One domain's fitted BiMix parameters, its weight in the total and its proportion bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct MixDomain {
    pub name: String,
    pub ab: f64,
    pub cb: f64,
    pub a: f64,
    pub b: f64,
    /// Weight of this domain's loss in the total (e.g. its share of the validation tokens).
    pub weight: f64,
    pub lower: f64,
    pub upper: f64,
}

impl MixDomain {
    /// L_i(s, r).
    pub fn loss(&self, step: f64, r: f64) -> f64 {
        (self.ab * step.powf(-self.a) + self.cb) * r.powf(-self.b)
    }
}

/// The optimum: proportions in input order, each domain's predicted loss, and the total.
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureOptimum {
    pub proportions: Vec<f64>,
    pub losses: Vec<f64>,
    /// Σ w_i L_i / Σ w_i.
    pub predicted_loss: f64,
    pub step: f64,
}

/// The optimal mixture at `step` (see the module docs). Bounds that no mixture can meet, and
/// invalid parameters, are errors naming the domain.
pub fn optimize_bimix(domains: &[MixDomain], step: f64) -> Result<MixtureOptimum> {
    let bad = |m: String| Err(LawError::BadOption(m));
    if domains.is_empty() {
        return bad("a mixture needs at least one domain".into());
    }
    if !(step > 0.0 && step.is_finite()) {
        return bad(format!("the target step must be a positive number, got {step}"));
    }
    for d in domains {
        if !(0.0..=1.0).contains(&d.lower) || !(0.0..=1.0).contains(&d.upper) || d.lower > d.upper {
            return bad(format!("domain {:?}: bounds [{}, {}] must satisfy 0 ≤ lower ≤ upper ≤ 1", d.name, d.lower, d.upper));
        }
        if !(d.weight >= 0.0 && d.weight.is_finite()) {
            return bad(format!("domain {:?}: weight {} must be a non-negative number", d.name, d.weight));
        }
        if [d.ab, d.cb, d.a, d.b].iter().any(|v| !v.is_finite()) || d.ab < 0.0 || d.cb < 0.0 {
            return bad(format!("domain {:?}: BiMix parameters AB={}, CB={}, a={}, b={} must be finite with AB, CB ≥ 0", d.name, d.ab, d.cb, d.a, d.b));
        }
        if d.lower == 0.0 && d.b > 0.0 && d.weight > 0.0 && d.upper == 0.0 {
            return bad(format!("domain {:?}: a proportion fixed at 0 has infinite predicted loss (b = {} > 0)", d.name, d.b));
        }
    }
    let (lo_sum, hi_sum): (f64, f64) = domains.iter().fold((0.0, 0.0), |(l, h), d| (l + d.lower, h + d.upper));
    if lo_sum > 1.0 + 1e-12 {
        let top = domains.iter().max_by(|x, y| x.lower.total_cmp(&y.lower)).unwrap();
        return bad(format!("the lower bounds sum to {lo_sum} > 1: no mixture meets them (the largest: domain {:?} at {})", top.name, top.lower));
    }
    if hi_sum < 1.0 - 1e-12 {
        let top = domains.iter().min_by(|x, y| x.upper.total_cmp(&y.upper)).unwrap();
        return bad(format!("the upper bounds sum to {hi_sum} < 1: no mixture meets them (the smallest: domain {:?} at {})", top.name, top.upper));
    }
    let k: Vec<f64> = domains.iter().map(|d| d.weight * (d.ab * step.powf(-d.a) + d.cb)).collect();
    let at = |ln_lambda: f64| -> Vec<f64> {
        domains
            .iter()
            .zip(&k)
            .map(|(d, &k)| {
                if d.b <= 0.0 || k <= 0.0 {
                    d.lower
                } else {
                    (((k * d.b).ln() - ln_lambda) / (1.0 + d.b)).exp().clamp(d.lower, d.upper)
                }
            })
            .collect()
    };
    let total = |r: &[f64]| r.iter().sum::<f64>();
    // Bracket ln λ: Σ r(λ) ≥ 1 at the low end, ≤ 1 at the high end.
    let (mut lo, mut hi) = (-50.0f64, 50.0f64);
    while total(&at(lo)) < 1.0 && lo > -1e4 {
        lo -= 100.0;
    }
    while total(&at(hi)) > 1.0 && hi < 1e4 {
        hi += 100.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if total(&at(mid)) > 1.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut r = at(hi);
    // What bisection leaves (Σ r within ~1e-15 of 1, or the slack when every decreasing term
    // sits at a bound) goes to the domains strictly inside their bounds, else to any with room.
    let mut slack = 1.0 - total(&r);
    for pass in 0..2 {
        for (i, d) in domains.iter().enumerate() {
            if slack.abs() < 1e-15 {
                break;
            }
            let inside = r[i] > d.lower && r[i] < d.upper;
            if pass == 1 || inside {
                let new = (r[i] + slack).clamp(d.lower, d.upper);
                slack -= new - r[i];
                r[i] = new;
            }
        }
    }
    let losses: Vec<f64> = domains.iter().zip(&r).map(|(d, &ri)| d.loss(step, ri)).collect();
    let wsum: f64 = domains.iter().map(|d| d.weight).sum();
    let predicted_loss = if wsum > 0.0 { domains.iter().zip(&losses).map(|(d, l)| d.weight * l).sum::<f64>() / wsum } else { f64::NAN };
    Ok(MixtureOptimum { proportions: r, losses, predicted_loss, step })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str, ab: f64, cb: f64, a: f64, b: f64, lower: f64, upper: f64) -> MixDomain {
        MixDomain { name: name.into(), ab, cb, a, b, weight: 1.0, lower, upper }
    }

    fn objective(d: &[MixDomain], s: f64, r: &[f64]) -> f64 {
        d.iter().zip(r).map(|(d, &r)| d.weight * d.loss(s, r)).sum()
    }

    /// Brute force over a fine simplex grid of three domains: the KKT optimum is at least as
    /// good as every grid point, and within the grid's resolution of the best.
    #[test]
    fn recovers_the_optimum_of_three_domains_with_and_without_bounds() {
        for (lower, upper) in [(0.0, 1.0), (0.1, 0.5)] {
            let d = vec![dom("x", 2.0, 1.0, 0.5, 0.08, lower, upper), dom("y", 1.0, 2.0, 0.3, 0.02, lower, upper), dom("z", 3.0, 0.5, 0.7, 0.3, lower, upper)];
            let s = 4.0;
            let opt = optimize_bimix(&d, s).unwrap();
            assert!((opt.proportions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let best = objective(&d, s, &opt.proportions);
            let n = 400;
            let mut grid_best = (f64::INFINITY, vec![]);
            for i in 0..=n {
                for j in 0..=(n - i) {
                    let r = [i as f64 / n as f64, j as f64 / n as f64, (n - i - j) as f64 / n as f64];
                    if r.iter().any(|&x| x < lower - 1e-12 || x > upper + 1e-12) {
                        continue;
                    }
                    let v = objective(&d, s, &r);
                    assert!(best <= v + 1e-12, "grid point {r:?} ({v}) beats the optimum {:?} ({best})", opt.proportions);
                    if v < grid_best.0 {
                        grid_best = (v, r.to_vec());
                    }
                }
            }
            for (a, b) in opt.proportions.iter().zip(&grid_best.1) {
                assert!((a - b).abs() < 0.01, "{:?} vs grid {:?}", opt.proportions, grid_best.1);
            }
            assert!(opt.proportions.iter().all(|&r| r >= lower - 1e-15 && r <= upper + 1e-15));
        }
    }

    #[test]
    fn a_domain_that_does_not_gain_from_data_gets_its_lower_bound() {
        let d = vec![dom("gains", 1.0, 1.0, 0.5, 0.2, 0.05, 1.0), dom("flat", 1.0, 1.0, 0.5, -0.1, 0.05, 1.0)];
        let opt = optimize_bimix(&d, 2.0).unwrap();
        assert!((opt.proportions[1] - 0.05).abs() < 1e-12 && (opt.proportions[0] - 0.95).abs() < 1e-12, "{:?}", opt.proportions);
    }

    #[test]
    fn bounds_no_mixture_meets_are_errors_naming_the_domain() {
        let err = optimize_bimix(&[dom("a", 1.0, 1.0, 0.5, 0.1, 0.7, 1.0), dom("b", 1.0, 1.0, 0.5, 0.1, 0.4, 1.0)], 1.0).unwrap_err().to_string();
        assert!(err.contains("lower bounds sum to") && err.contains("\"a\""), "{err}");
        let err = optimize_bimix(&[dom("a", 1.0, 1.0, 0.5, 0.1, 0.0, 0.3), dom("b", 1.0, 1.0, 0.5, 0.1, 0.0, 0.2)], 1.0).unwrap_err().to_string();
        assert!(err.contains("upper bounds sum to") && err.contains("\"b\""), "{err}");
        let err = optimize_bimix(&[dom("c", 1.0, 1.0, 0.5, 0.1, 0.6, 0.2)], 1.0).unwrap_err().to_string();
        assert!(err.contains("\"c\""), "{err}");
    }

    #[test]
    fn twenty_two_domains() {
        let d: Vec<MixDomain> = (0..22).map(|i| dom(&format!("d{i}"), 1.0 + i as f64 * 0.1, 1.5 + (i % 5) as f64 * 0.2, 0.3 + (i % 3) as f64 * 0.1, 0.01 + (i % 7) as f64 * 0.02, 0.0, 1.0)).collect();
        let opt = optimize_bimix(&d, 10.0).unwrap();
        assert!((opt.proportions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // KKT: w K b r^{-b-1} is equal across domains at an interior optimum.
        let g: Vec<f64> = d.iter().zip(&opt.proportions).map(|(d, &r)| (d.ab * 10f64.powf(-d.a) + d.cb) * d.b * r.powf(-d.b - 1.0)).collect();
        for x in &g {
            assert!((x / g[0] - 1.0).abs() < 1e-9, "{g:?}");
        }
    }
}
