//! Mixture optimisation under fitted per-domain mixing laws: the proportions r on the simplex,
//! with per-domain bounds, that minimise the weighted total predicted loss Σ_i w_i L_i at a
//! target step s — and, for data-constrained mixtures, the step (total tokens) as well.
//!
//! Two laws, one per domain each:
//! - BiMix (Ge et al. 2024, arXiv 2405.14908, as coded in the authors' release):
//!   L_i(s, r_i) = (AB_i/s^{a_i} + CB_i)·r_i^{−b_i}.
//! - dctk's data-constrained BiMix ([`crate::laws::bimix_dc`]; this project's extension):
//!   r_i is replaced by its effective share g_i(r_i) = r_i·η(e_i), e_i = r_i·D/U_i the epochs
//!   of domain i's U_i unique tokens that D = s·τ total tokens serve, η Muennighoff et al.'s
//!   (2023, eq. 5) D'/D.
//!
//! Both are separable: with K_i = AB_i/s^{a_i} + CB_i ≥ 0 the term f_i(r) = w_i K_i g_i(r)^{−b_i}
//! is convex and decreasing in r when b_i > 0 (x^{−b} is convex and decreasing, g_i is concave and
//! increasing: g_i = r up to one epoch, then U_i/D·(1 + R*(1 − e^{−(rD/U_i − 1)/R*})), whose
//! slope e^{−(rD/U_i − 1)/R*} falls from 1), and non-decreasing when b_i ≤ 0. The KKT conditions
//! give the exact optimum: every decreasing term inside its bounds has the same marginal gain
//! −f_i'(r_i) = λ, the others sit at their lower bound. r_i(λ) is closed-form for BiMix,
//! (w_i K_i b_i/λ)^{1/(1+b_i)}, and a bisection on r for the data-constrained law; λ is found by
//! bisection on ln λ so that Σ r_i = 1 (Σ r_i(λ) is continuous and non-increasing). No starts,
//! no local optima; 22 domains take microseconds (BiMix) to a millisecond (data-constrained).
//!
//! Budgets: a domain with `unique_tokens` U_i and `max_epochs` m_i may serve at most m_i·U_i
//! tokens, so at D total tokens r_i ≤ m_i·U_i/D. Bounds and budgets no mixture meets are
//! errors naming the domain. Over a step range ([`optimize_mixture_and_steps`]) the feasible
//! steps are those up to where the budgets run out, and the objective in s (which need not
//! be unimodal) is scanned on a log grid, then refined by golden section.
use crate::error::{LawError, Result};
use crate::laws::bimix_dc::effective_fraction;

/// One domain's fitted law, its weight in the total, its proportion bounds and its budget.
#[derive(Debug, Clone, PartialEq)]
pub struct MixDomain {
    pub name: String,
    pub ab: f64,
    pub cb: f64,
    pub a: f64,
    pub b: f64,
    /// The data-constrained law's decay constant R*; `None` for BiMix.
    pub r_star: Option<f64>,
    /// The domain's unique tokens U_i (as the run's accounting counts an epoch); needed by the
    /// data-constrained law and by `max_epochs`.
    pub unique_tokens: Option<f64>,
    /// At most this many epochs of the domain.
    pub max_epochs: Option<f64>,
    /// Weight of this domain's loss in the total (e.g. its share of the validation tokens).
    pub weight: f64,
    pub lower: f64,
    pub upper: f64,
}

impl MixDomain {
    /// A BiMix domain with weight 1, bounds [0, 1] and no budget.
    pub fn bimix(name: &str, ab: f64, cb: f64, a: f64, b: f64) -> MixDomain {
        MixDomain { name: name.into(), ab, cb, a, b, r_star: None, unique_tokens: None, max_epochs: None, weight: 1.0, lower: 0.0, upper: 1.0 }
    }

    /// Epochs of the domain that proportion r serves at `tokens` total tokens.
    pub fn epochs(&self, r: f64, tokens: Option<f64>) -> Option<f64> {
        Some(r * tokens? / self.unique_tokens?)
    }

    /// The effective share g(r) and its slope g'(r) at `tokens` total tokens.
    fn share(&self, r: f64, tokens: Option<f64>) -> (f64, f64) {
        match (self.r_star, self.epochs(r, tokens)) {
            (Some(rs), Some(e)) if e > 1.0 => (r * effective_fraction(e, rs).0, (-(e - 1.0) / rs).exp()),
            _ => (r, 1.0),
        }
    }

    /// L_i at step s and proportion r (`tokens` = s·τ, for the data-constrained law).
    pub fn loss(&self, step: f64, r: f64, tokens: Option<f64>) -> f64 {
        self.loss_at_epochs(step, r, self.epochs(r, tokens))
    }

    /// L_i at step s, proportion r and `epochs` of the domain served (as a run's row has them).
    pub fn loss_at_epochs(&self, step: f64, r: f64, epochs: Option<f64>) -> f64 {
        let eta = match (self.r_star, epochs) {
            (Some(rs), Some(e)) => effective_fraction(e, rs).0,
            _ => 1.0,
        };
        (self.ab * step.powf(-self.a) + self.cb) * (r * eta).powf(-self.b)
    }
}

/// The optimum: proportions in input order, each domain's predicted loss and epochs, the
/// total, the step and (with tokens per step) the total tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureOptimum {
    pub proportions: Vec<f64>,
    pub losses: Vec<f64>,
    /// Epochs of each domain served (domains with unique tokens; `None` for the others).
    pub epochs: Vec<Option<f64>>,
    /// Σ w_i L_i / Σ w_i.
    pub predicted_loss: f64,
    pub step: f64,
    pub tokens: Option<f64>,
}

fn bad<T>(m: String) -> Result<T> {
    Err(LawError::BadOption(m))
}

/// Checks what does not depend on the step.
fn validate(domains: &[MixDomain], tokens_per_step: Option<f64>) -> Result<()> {
    if domains.is_empty() {
        return bad("a mixture needs at least one domain".into());
    }
    if let Some(t) = tokens_per_step {
        if !(t > 0.0 && t.is_finite()) {
            return bad(format!("tokens per step must be a positive number, got {t}"));
        }
    }
    for d in domains {
        if !(0.0..=1.0).contains(&d.lower) || !(0.0..=1.0).contains(&d.upper) || d.lower > d.upper {
            return bad(format!("domain {:?}: bounds [{}, {}] must satisfy 0 ≤ lower ≤ upper ≤ 1", d.name, d.lower, d.upper));
        }
        if !(d.weight >= 0.0 && d.weight.is_finite()) {
            return bad(format!("domain {:?}: weight {} must be a non-negative number", d.name, d.weight));
        }
        if [d.ab, d.cb, d.a, d.b].iter().any(|v| !v.is_finite()) || d.ab < 0.0 || d.cb < 0.0 {
            return bad(format!("domain {:?}: parameters AB={}, CB={}, a={}, b={} must be finite with AB, CB ≥ 0", d.name, d.ab, d.cb, d.a, d.b));
        }
        if let Some(rs) = d.r_star {
            if !(rs > 0.0 && rs.is_finite()) {
                return bad(format!("domain {:?}: R_star {rs} must be a positive number", d.name));
            }
            if d.unique_tokens.is_none() || tokens_per_step.is_none() {
                return bad(format!("domain {:?}: the data-constrained law needs the domain's unique tokens (budgets) and the tokens per step", d.name));
            }
        }
        if let Some(u) = d.unique_tokens {
            if !(u >= 0.0 && u.is_finite()) {
                return bad(format!("domain {:?}: unique tokens {u} must be a non-negative number", d.name));
            }
            if u == 0.0 && d.lower > 0.0 {
                return bad(format!("domain {:?}: no unique tokens, but its lower bound asks for a share of {}", d.name, d.lower));
            }
        }
        if let Some(m) = d.max_epochs {
            if !(m > 0.0) {
                return bad(format!("domain {:?}: max_epochs {m} must be positive", d.name));
            }
            if d.unique_tokens.is_none() || tokens_per_step.is_none() {
                return bad(format!("domain {:?}: max_epochs needs the domain's unique tokens (budgets) and the tokens per step", d.name));
            }
        }
        if d.lower == 0.0 && d.b > 0.0 && d.weight > 0.0 && d.upper == 0.0 {
            return bad(format!("domain {:?}: a proportion fixed at 0 has infinite predicted loss (b = {} > 0)", d.name, d.b));
        }
    }
    Ok(())
}

/// Each domain's upper bound at `tokens` total tokens: its bound, or its epoch budget.
fn caps(domains: &[MixDomain], tokens: Option<f64>) -> Vec<f64> {
    domains
        .iter()
        .map(|d| match (d.max_epochs, d.unique_tokens, tokens) {
            (Some(m), Some(u), Some(t)) => d.upper.min(m * u / t),
            _ => d.upper,
        })
        .collect()
}

/// Why no mixture is feasible at `tokens` (naming the domain), or `None` when one is.
fn infeasible(domains: &[MixDomain], tokens: Option<f64>, step: f64) -> Option<String> {
    let up = caps(domains, tokens);
    for (d, &u) in domains.iter().zip(&up) {
        if d.lower > u {
            let (t, m, ut) = (tokens.unwrap_or(f64::NAN), d.max_epochs.unwrap_or(f64::NAN), d.unique_tokens.unwrap_or(f64::NAN));
            return Some(format!(
                "domain {:?}: its lower bound {} at step {step} serves {:.4e} tokens, {:.3} epochs of its {ut:.4e} unique tokens, over its budget of {m} epochs",
                d.name,
                d.lower,
                d.lower * t,
                d.lower * t / ut
            ));
        }
    }
    let lo_sum: f64 = domains.iter().map(|d| d.lower).sum();
    if lo_sum > 1.0 + 1e-12 {
        let top = domains.iter().max_by(|x, y| x.lower.total_cmp(&y.lower)).unwrap();
        return Some(format!("the lower bounds sum to {lo_sum} > 1: no mixture meets them (the largest: domain {:?} at {})", top.name, top.lower));
    }
    let hi_sum: f64 = up.iter().sum();
    if hi_sum < 1.0 - 1e-12 {
        let budgeted: Vec<String> = domains
            .iter()
            .zip(&up)
            .filter(|(d, &u)| u < d.upper)
            .map(|(d, u)| format!("{:?} (at most {:.4} of the mixture: {} epochs of {:.4e} tokens)", d.name, u, d.max_epochs.unwrap_or(f64::NAN), d.unique_tokens.unwrap_or(f64::NAN)))
            .collect();
        if budgeted.is_empty() {
            let top = domains.iter().min_by(|x, y| x.upper.total_cmp(&y.upper)).unwrap();
            return Some(format!("the upper bounds sum to {hi_sum} < 1: no mixture meets them (the smallest: domain {:?} at {})", top.name, top.upper));
        }
        return Some(format!(
            "the budgets cannot serve {:.4e} tokens (step {step}): the domains' upper bounds sum to {hi_sum:.4} < 1; capped by their epoch budgets: {}",
            tokens.unwrap_or(f64::NAN),
            budgeted.join(", ")
        ));
    }
    None
}

/// The optimal mixture at `step` (see the module docs), with `tokens_per_step` τ (total
/// tokens D = step·τ) for the data-constrained law and epoch budgets.
pub fn optimize_mixture(domains: &[MixDomain], step: f64, tokens_per_step: Option<f64>) -> Result<MixtureOptimum> {
    validate(domains, tokens_per_step)?;
    solve_at(domains, step, tokens_per_step)
}

/// BiMix without budgets: [`optimize_mixture`] with no tokens per step.
pub fn optimize_bimix(domains: &[MixDomain], step: f64) -> Result<MixtureOptimum> {
    optimize_mixture(domains, step, None)
}

fn solve_at(domains: &[MixDomain], step: f64, tokens_per_step: Option<f64>) -> Result<MixtureOptimum> {
    if !(step > 0.0 && step.is_finite()) {
        return bad(format!("the target step must be a positive number, got {step}"));
    }
    let tokens = tokens_per_step.map(|t| t * step);
    if let Some(why) = infeasible(domains, tokens, step) {
        return bad(why);
    }
    let up = caps(domains, tokens);
    let k: Vec<f64> = domains.iter().map(|d| d.weight * (d.ab * step.powf(-d.a) + d.cb)).collect();
    // −f_i'(r) = w K b g^{−b−1} g'(r), non-increasing in r.
    let gain = |i: usize, r: f64| -> f64 {
        let d = &domains[i];
        let (g, slope) = d.share(r, tokens);
        k[i] * d.b * g.powf(-d.b - 1.0) * slope
    };
    let at = |ln_lambda: f64| -> Vec<f64> {
        (0..domains.len())
            .map(|i| {
                let d = &domains[i];
                if d.b <= 0.0 || k[i] <= 0.0 {
                    return d.lower;
                }
                let closed = (((k[i] * d.b).ln() - ln_lambda) / (1.0 + d.b)).exp();
                let dc = d.r_star.is_some() && d.epochs(closed.min(up[i]), tokens).is_some_and(|e| e > 1.0);
                if !dc {
                    return closed.clamp(d.lower, up[i]);
                }
                // The closed form solves −f'(r) = λ where r serves at most one epoch (g = r
                // there); beyond, bisection on r over the whole bounded range (−f' is
                // non-increasing, so the root is unique up to flat stretches).
                let lambda = ln_lambda.exp();
                let (mut lo, mut hi) = (d.lower, up[i]);
                if gain(i, hi) >= lambda {
                    return hi;
                }
                for _ in 0..64 {
                    let mid = 0.5 * (lo + hi);
                    if gain(i, mid) > lambda {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                0.5 * (lo + hi)
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
        if mid <= lo || mid >= hi {
            break;
        }
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
            let inside = r[i] > d.lower && r[i] < up[i];
            if pass == 1 || inside {
                let new = (r[i] + slack).clamp(d.lower, up[i]);
                slack -= new - r[i];
                r[i] = new;
            }
        }
    }
    Ok(evaluate_mixture(domains, step, tokens_per_step, &r))
}

/// The laws' predictions for the mixture `r` at `step` (no optimisation, no feasibility check).
pub fn evaluate_mixture(domains: &[MixDomain], step: f64, tokens_per_step: Option<f64>, r: &[f64]) -> MixtureOptimum {
    let tokens = tokens_per_step.map(|t| t * step);
    let losses: Vec<f64> = domains.iter().zip(r).map(|(d, &ri)| d.loss(step, ri, tokens)).collect();
    let wsum: f64 = domains.iter().map(|d| d.weight).sum();
    let predicted_loss = if wsum > 0.0 { domains.iter().zip(&losses).map(|(d, l)| d.weight * l).sum::<f64>() / wsum } else { f64::NAN };
    let epochs = domains.iter().zip(r).map(|(d, &ri)| d.epochs(ri, tokens)).collect();
    MixtureOptimum { proportions: r.to_vec(), losses, epochs, predicted_loss, step, tokens }
}

/// The optimal mixture *and* step in `[min_step, max_step]`: proportions and total tokens
/// together. The range is cut to the steps the budgets can serve; no feasible step is an
/// error naming the domain that binds at `min_step`.
pub fn optimize_mixture_and_steps(domains: &[MixDomain], min_step: f64, max_step: f64, tokens_per_step: Option<f64>) -> Result<MixtureOptimum> {
    validate(domains, tokens_per_step)?;
    if !(min_step > 0.0 && max_step >= min_step && max_step.is_finite()) {
        return bad(format!("the step range [{min_step}, {max_step}] must satisfy 0 < min ≤ max"));
    }
    let feasible = |s: f64| infeasible(domains, tokens_per_step.map(|t| t * s), s).is_none();
    if let Some(why) = infeasible(domains, tokens_per_step.map(|t| t * min_step), min_step) {
        return bad(format!("no step in [{min_step}, {max_step}] is feasible: {why}"));
    }
    // Feasibility is monotone in s (budgets only shrink the caps as D grows).
    let mut top = max_step;
    if !feasible(max_step) {
        let (mut lo, mut hi) = (min_step.ln(), max_step.ln());
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if feasible(mid.exp()) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        top = lo.exp();
    }
    let objective = |ln_s: f64| solve_at(domains, ln_s.exp(), tokens_per_step).map(|o| o.predicted_loss).unwrap_or(f64::INFINITY);
    let (a, b) = (min_step.ln(), top.ln());
    if b - a < 1e-12 {
        return solve_at(domains, min_step, tokens_per_step);
    }
    const SCAN: usize = 48;
    let grid: Vec<f64> = (0..=SCAN).map(|j| a + (b - a) * j as f64 / SCAN as f64).collect();
    let values: Vec<f64> = grid.iter().map(|&x| objective(x)).collect();
    let best = (0..=SCAN).min_by(|&i, &j| values[i].total_cmp(&values[j])).unwrap();
    let (mut lo, mut hi) = (grid[best.saturating_sub(1)], grid[(best + 1).min(SCAN)]);
    // Golden section inside the bracket around the best grid point.
    let phi = 0.5 * (5f64.sqrt() - 1.0);
    let (mut x1, mut x2) = (hi - phi * (hi - lo), lo + phi * (hi - lo));
    let (mut f1, mut f2) = (objective(x1), objective(x2));
    for _ in 0..80 {
        if f1 <= f2 {
            hi = x2;
            (x2, f2) = (x1, f1);
            x1 = hi - phi * (hi - lo);
            f1 = objective(x1);
        } else {
            lo = x1;
            (x1, f1) = (x2, f2);
            x2 = lo + phi * (hi - lo);
            f2 = objective(x2);
        }
    }
    let candidates = [(grid[best], values[best]), (x1, f1), (x2, f2)];
    let (x, _) = candidates.iter().copied().min_by(|p, q| p.1.total_cmp(&q.1)).unwrap();
    solve_at(domains, x.exp().clamp(min_step, top), tokens_per_step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str, ab: f64, cb: f64, a: f64, b: f64, lower: f64, upper: f64) -> MixDomain {
        MixDomain { lower, upper, ..MixDomain::bimix(name, ab, cb, a, b) }
    }

    /// A data-constrained domain with `u` unique tokens.
    fn dc(name: &str, ab: f64, cb: f64, a: f64, b: f64, r_star: f64, u: f64) -> MixDomain {
        MixDomain { r_star: Some(r_star), unique_tokens: Some(u), ..MixDomain::bimix(name, ab, cb, a, b) }
    }

    fn objective_at(d: &[MixDomain], s: f64, tps: Option<f64>, r: &[f64]) -> f64 {
        d.iter().zip(r).map(|(d, &r)| d.weight * d.loss(s, r, tps.map(|t| t * s))).sum()
    }

    fn objective(d: &[MixDomain], s: f64, r: &[f64]) -> f64 {
        objective_at(d, s, None, r)
    }

    /// The best point of a 1/n simplex grid over three domains within `caps`.
    fn grid_best(d: &[MixDomain], s: f64, tps: Option<f64>, caps: [f64; 3], n: usize) -> (f64, Vec<f64>) {
        let mut best = (f64::INFINITY, vec![]);
        for i in 0..=n {
            for j in 0..=(n - i) {
                let r = [i as f64 / n as f64, j as f64 / n as f64, (n - i - j) as f64 / n as f64];
                if r.iter().zip(&caps).any(|(x, c)| *x > c + 1e-12) {
                    continue;
                }
                let v = objective_at(d, s, tps, &r);
                if v < best.0 {
                    best = (v, r.to_vec());
                }
            }
        }
        best
    }

    /// Two of three domains small enough to repeat many times: the optimum is at least as
    /// good as every point of a fine grid and next to the grid's best, with and without an
    /// epoch budget; the budget holds.
    #[test]
    fn data_constrained_optimum_beats_a_fine_grid_with_and_without_epoch_budgets() {
        let (tps, s) = (1000.0, 200.0); // D = 2e5 tokens
        for max_epochs in [None, Some(8.0)] {
            let mut d = vec![dc("big", 2.0, 1.0, 0.5, 0.15, 5.0, 1e6), dc("small", 1.5, 1.2, 0.4, 0.3, 2.0, 4e3), dc("tiny", 3.0, 0.8, 0.6, 0.25, 10.0, 1e3)];
            for x in &mut d {
                x.max_epochs = max_epochs;
            }
            let opt = optimize_mixture(&d, s, Some(tps)).unwrap();
            assert!((opt.proportions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let caps: Vec<f64> = d.iter().map(|x| max_epochs.map_or(1.0, |m| (m * x.unique_tokens.unwrap() / (s * tps)).min(1.0))).collect();
            let best = objective_at(&d, s, Some(tps), &opt.proportions);
            let (gv, gr) = grid_best(&d, s, Some(tps), [caps[0], caps[1], caps[2]], 1000);
            assert!(best <= gv + 1e-12, "grid {gr:?} ({gv}) beats {:?} ({best})", opt.proportions);
            for (a, b) in opt.proportions.iter().zip(&gr) {
                assert!((a - b).abs() < 0.003, "{:?} vs grid {gr:?}", opt.proportions);
            }
            for (e, x) in opt.epochs.iter().zip(&d) {
                assert!(e.unwrap() <= x.max_epochs.unwrap_or(f64::INFINITY) + 1e-9);
            }
            // Repetition matters here: BiMix on the same parameters would give the small
            // domains more.
            let fresh: Vec<MixDomain> = d.iter().map(|x| MixDomain { r_star: None, ..x.clone() }).collect();
            let naive = optimize_mixture(&fresh, s, Some(tps)).unwrap();
            if max_epochs.is_none() {
                assert!(naive.proportions[2] > opt.proportions[2] * 1.5, "{:?} vs {:?}", naive.proportions, opt.proportions);
            }
        }
    }

    /// Over a step range the data-constrained law has an optimum number of epochs: the
    /// optimiser finds the step a dense scan finds.
    #[test]
    fn optimises_the_total_tokens_too() {
        let d = vec![dc("a", 4.0, 1.0, 0.6, 0.3, 3.0, 2e3), dc("b", 3.0, 1.1, 0.5, 0.2, 4.0, 5e3)];
        let tps = 100.0;
        let opt = optimize_mixture_and_steps(&d, 1.0, 1e4, Some(tps)).unwrap();
        let mut scan = (f64::INFINITY, 0.0);
        for j in 0..=4000 {
            let s = 10f64.powf(4.0 * j as f64 / 4000.0);
            let v = optimize_mixture(&d, s, Some(tps)).unwrap().predicted_loss;
            if v < scan.0 {
                scan = (v, s);
            }
        }
        assert!(opt.predicted_loss <= scan.0 + 1e-12, "{} vs scan {:?}", opt.predicted_loss, scan);
        assert!((opt.step / scan.1).ln().abs() < 0.01, "step {} vs scan {}", opt.step, scan.1);
        assert!(opt.step > 1.5 && opt.step < 9e3, "an interior optimum: {}", opt.step);
        assert_eq!(opt.tokens, Some(opt.step * tps));
    }

    #[test]
    fn budgets_that_cannot_be_met_are_errors_naming_the_domain() {
        let mut d = vec![dc("web", 2.0, 1.0, 0.5, 0.1, 5.0, 1e4), dc("math", 2.0, 1.0, 0.5, 0.1, 5.0, 1e3)];
        d[1].lower = 0.2;
        d[1].max_epochs = Some(4.0);
        // 1e5 tokens: math's lower bound serves 2e4 = 20 epochs > 4.
        let err = optimize_mixture(&d, 100.0, Some(1000.0)).unwrap_err().to_string();
        assert!(err.contains("\"math\"") && err.contains("budget of 4 epochs"), "{err}");
        d[1].lower = 0.0;
        d[0].max_epochs = Some(2.0);
        // 1e6 tokens, at most 2e4 + 4e3 of them servable.
        let err = optimize_mixture(&d, 1000.0, Some(1000.0)).unwrap_err().to_string();
        assert!(err.contains("cannot serve") && err.contains("\"web\"") && err.contains("\"math\""), "{err}");
        // Over a range the budgets cut the steps: the optimum stays within them.
        let opt = optimize_mixture_and_steps(&d, 1.0, 1000.0, Some(1000.0)).unwrap();
        assert!(opt.tokens.unwrap() <= 2.0 * 1e4 + 4.0 * 1e3 + 1e-6, "{opt:?}");
        let err = optimize_mixture_and_steps(&d, 500.0, 1000.0, Some(1000.0)).unwrap_err().to_string();
        assert!(err.contains("no step in") && err.contains("cannot serve"), "{err}");
        // The data-constrained law without budgets is named too.
        let err = optimize_mixture(&[MixDomain { unique_tokens: None, ..d[0].clone() }], 10.0, Some(1.0)).unwrap_err().to_string();
        assert!(err.contains("\"web\"") && err.contains("unique tokens"), "{err}");
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
