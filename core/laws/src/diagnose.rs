//! Fit diagnostics that say when a fit misleads: parameters on (or near) their bounds,
//! parameter combinations the data does not pin (identifiability from the Jacobian at the
//! optimum), degenerate designs, and the distinct local optima the starts ended in.
//! [`crate::fit`] calls [`warnings_of`] and [`cluster_optima`]; the results travel in
//! [`crate::report::FitReport`] (`warnings`, `identifiability`, `optima`).
//!
//! Identifiability. J is the Jacobian of the fit-space predictions (ln L̂ for a log-space
//! objective, L̂ otherwise) with respect to the free law parameters at the best fit, each
//! column scaled by the parameter's magnitude `scale_j = max(|θ_j|, floor_j)` so that a unit
//! step is a 100% change of the parameter (the floor, 0.1 or 0.1× a bound width below 1, keeps
//! parameters fitted near 0, e.g. e = ln E with E ≈ 1, from looking infinitely sensitive).
//! Its singular value decomposition J = U S Vᵀ gives, per right singular vector v_k, how much
//! the predictions move along that parameter combination: near s_k = 0 the objective is flat
//! there. The Gauss–Newton standard error of the fit along v_k is σ̂ / s_k, with
//! σ̂² = RSS(fit space) / (n − p) (Seber & Wild 2003, "Nonlinear Regression", §2.1). A
//! direction is
//! - *not identified* when s_k ≤ 1e-7 · s_max: the objective (∝ s²) is flat to ~14 digits
//!   along it, whatever the noise (e.g. the N-exponent of Chinchilla's law with two model sizes);
//! - *weakly identified* when σ̂ / s_k > 1: one standard error along it is a 100% change of
//!   the parameters that dominate it.
//!
//! Optima. The starts' (screened) endpoints are clustered greedily in the same scaled space:
//! an endpoint joins the first cluster whose representative is within 5% in every scaled
//! coordinate (max-norm), visiting clusters best first; the best fit seeds the first cluster.

use crate::report::{Direction, FitWarning, Identifiability, Optimum, WarningKind};
use crate::law::ParamSpec;

/// Relative singular value below which a direction counts as flat (not identified).
pub const FLAT_SINGULAR_VALUE_RATIO: f64 = 1e-7;
/// Standard error (in units of the parameters' own size) above which a direction is weak.
pub const WEAK_RELATIVE_SE: f64 = 1.0;
/// A parameter takes part in a direction when its (unit-norm) loading is at least this.
pub const DOMINANT_LOADING: f64 = 0.15;
/// Max-norm distance in scaled coordinates within which two endpoints are one optimum.
pub const SAME_OPTIMUM_DISTANCE: f64 = 0.05;
/// A competing optimum is warned about when its objective is within this fraction of the best's.
pub const COMPETING_OPTIMUM_RTOL: f64 = 1e-2;

/// Per-parameter scale: the unit in which a step is "a 100% change" of the parameter.
pub fn param_scales(x: &[f64], specs: &[ParamSpec]) -> Vec<f64> {
    x.iter()
        .zip(specs)
        .map(|(v, s)| {
            let width = s.upper - s.lower;
            let floor = if width.is_finite() && width < 1.0 { 0.1 * width } else { 0.1 };
            v.abs().max(floor).max(1e-12)
        })
        .collect()
}

/// Max-norm distance between two free vectors in scaled coordinates.
pub fn scaled_distance(a: &[f64], b: &[f64], scales: &[f64]) -> f64 {
    a.iter().zip(b).zip(scales).map(|((x, y), s)| ((x - y) / s).abs()).fold(0.0, f64::max)
}

/// Singular values and right singular vectors of a matrix given by its columns
/// (one-sided Jacobi, Hestenes 1958; accurate for tiny singular values, which is what
/// an identifiability check needs). Returns (s, V) with V's columns the right singular
/// vectors, sorted by decreasing s.
pub fn svd_columns(mut cols: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let p = cols.len();
    let mut v: Vec<Vec<f64>> = (0..p).map(|j| (0..p).map(|i| f64::from(u8::from(i == j))).collect()).collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    for _sweep in 0..60 {
        let mut rotated = false;
        for a in 0..p {
            for b in a + 1..p {
                let (alpha, beta, gamma) = (dot(&cols[a], &cols[a]), dot(&cols[b], &cols[b]), dot(&cols[a], &cols[b]));
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for m in [&mut cols, &mut v] {
                    let (lo, hi) = m.split_at_mut(b);
                    for (x, y) in lo[a].iter_mut().zip(hi[0].iter_mut()) {
                        let (xa, yb) = (*x, *y);
                        *x = c * xa - s * yb;
                        *y = s * xa + c * yb;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let s: Vec<f64> = cols.iter().map(|c| dot(c, c).sqrt()).collect();
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_by(|&i, &j| s[j].total_cmp(&s[i]));
    (order.iter().map(|&i| s[i]).collect(), order.iter().map(|&i| v[i].clone()).collect())
}

/// Identifiability at the best fit from the fit-space Jacobian `jac` (column j of the
/// free parameter j, n rows), the free values `x`, their specs and names, and the
/// fit-space RSS. See the module docs.
pub fn identifiability(jac_cols: &[Vec<f64>], x: &[f64], specs: &[ParamSpec], names: &[String], rss_fit: f64) -> Identifiability {
    let n = jac_cols.first().map_or(0, Vec::len);
    let p = jac_cols.len();
    let scales = param_scales(x, specs);
    let cols: Vec<Vec<f64>> = jac_cols.iter().zip(&scales).map(|(c, s)| c.iter().map(|v| v * s).collect()).collect();
    let (s, v) = svd_columns(cols);
    let s_max = s.first().copied().unwrap_or(0.0);
    let s_min = s.last().copied().unwrap_or(0.0);
    let residual_scale = if n > p { Some((rss_fit / (n - p) as f64).sqrt()) } else { None };
    let directions = s
        .iter()
        .zip(&v)
        .map(|(&sk, vk)| {
            let mut loadings: Vec<(String, f64)> = names.iter().cloned().zip(vk.iter().copied()).collect();
            // Sign convention: the largest loading is positive.
            if let Some(big) = loadings.iter().map(|l| l.1).max_by(|a, b| a.abs().total_cmp(&b.abs())) {
                if big < 0.0 {
                    loadings.iter_mut().for_each(|l| l.1 = -l.1);
                }
            }
            let mut by_size = loadings.clone();
            by_size.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            let dominant: Vec<String> = by_size.iter().filter(|l| l.1.abs() >= DOMINANT_LOADING).map(|l| l.0.clone()).collect();
            Direction {
                singular_value: sk,
                relative_singular_value: if s_max > 0.0 { sk / s_max } else { 0.0 },
                relative_se: match residual_scale {
                    Some(r) if sk > 0.0 => Some(r / sk),
                    _ => None,
                },
                loadings,
                dominant,
            }
        })
        .collect();
    Identifiability {
        condition_number: if s_min > 0.0 { Some(s_max / s_min) } else { None },
        residual_scale,
        scales: names.iter().cloned().zip(scales).collect(),
        directions,
    }
}

/// Warnings for the directions of `id` (flat or weak), weakest first.
pub fn identifiability_warnings(id: &Identifiability) -> Vec<FitWarning> {
    let mut out = Vec::new();
    for d in id.directions.iter().rev() {
        let combo = d.loadings.iter().filter(|l| l.1.abs() >= 0.01).map(|(n, l)| format!("{l:+.3}·{n}")).collect::<Vec<_>>().join(" ");
        if d.relative_singular_value <= FLAT_SINGULAR_VALUE_RATIO {
            // Along a flat direction every parameter with a loading above rounding moves
            // freely, not only the dominant ones.
            let mut free: Vec<&(String, f64)> = d.loadings.iter().filter(|l| l.1.abs() >= 0.01).collect();
            free.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            out.push(FitWarning {
                kind: WarningKind::NotIdentified,
                params: free.iter().map(|l| l.0.clone()).collect(),
                message: format!(
                    "not identified: the objective is flat along {combo} (relative scaled steps; singular value {:.2e} of the largest): the data cannot pin {}; fix one of them or add design points that vary their inputs",
                    d.relative_singular_value,
                    free.iter().map(|l| l.0.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        } else if let Some(se) = d.relative_se.filter(|se| *se > WEAK_RELATIVE_SE) {
            out.push(FitWarning {
                kind: WarningKind::WeaklyIdentified,
                params: d.dominant.clone(),
                message: format!(
                    "weakly identified: along {combo} one standard error is {se:.2} × the parameters' size (singular value {:.2e} of the largest): the data barely pins {}",
                    d.relative_singular_value,
                    d.dominant.join(", ")
                ),
            });
        }
    }
    out
}

/// Warnings for free parameters on or near a finite bound. `values` and `specs` are the
/// free coordinates' values and specs (bounds as fitted).
pub fn bound_warnings(values: &[f64], specs: &[ParamSpec]) -> Vec<FitWarning> {
    let mut out = Vec::new();
    for (v, s) in values.iter().zip(specs) {
        let width = s.upper - s.lower;
        for (bound, which) in [(s.lower, "lower"), (s.upper, "upper")] {
            if !bound.is_finite() {
                continue;
            }
            let gap = (v - bound).abs();
            let on = gap <= 1e-9 * bound.abs().max(1.0);
            let near_tol = if width.is_finite() { 1e-3 * width } else { 1e-3 * bound.abs().max(1.0) };
            if on || gap <= near_tol {
                out.push(FitWarning {
                    kind: if on { WarningKind::OnBound } else { WarningKind::NearBound },
                    params: vec![s.name.clone()],
                    message: format!(
                        "{} = {} is {} its {which} bound {}: the optimum may lie beyond it, and intervals there are truncated",
                        s.name,
                        v,
                        if on { "on" } else { "near" },
                        bound
                    ),
                });
            }
        }
    }
    out
}

/// Degenerate designs: fewer distinct input tuples than free parameters + 1, or an input
/// with fewer than 3 distinct values (an exponent on it is then not pinned by the data).
/// `cols` are the law's input columns by name.
pub fn design_warnings(cols: &[(String, &[f64])], n_free: usize) -> Vec<FitWarning> {
    let mut out = Vec::new();
    let n = cols.first().map_or(0, |c| c.1.len());
    let mut tuples: Vec<Vec<u64>> = (0..n).map(|i| cols.iter().map(|c| c.1[i].to_bits()).collect()).collect();
    tuples.sort();
    tuples.dedup();
    if tuples.len() < n_free + 1 {
        out.push(FitWarning {
            kind: WarningKind::DegenerateDesign,
            params: Vec::new(),
            message: format!(
                "degenerate design: {} rows but only {} distinct ({}) input tuples for {} free parameters (need at least {}): repeated rows add no information about the law's shape",
                n,
                tuples.len(),
                cols.iter().map(|c| c.0.as_str()).collect::<Vec<_>>().join(", "),
                n_free,
                n_free + 1
            ),
        });
    }
    for (name, c) in cols {
        let mut vals: Vec<u64> = c.iter().map(|v| v.to_bits()).collect();
        vals.sort();
        vals.dedup();
        if vals.len() < 3 {
            out.push(FitWarning {
                kind: WarningKind::DegenerateDesign,
                params: Vec::new(),
                message: format!(
                    "degenerate design: input '{name}' takes only {} distinct value(s); an exponent on '{name}' cannot be pinned by fewer than 3",
                    vals.len()
                ),
            });
        }
    }
    out
}

/// Cluster endpoints (free vectors with objectives) around `best` (see the module docs).
/// Returns clusters best first as (representative, objective, member count, member
/// indices), the best fit's cluster first.
pub fn cluster_optima(best: &[f64], best_f: f64, endpoints: &[(&[f64], f64)], scales: &[f64]) -> Vec<(Vec<f64>, f64, Vec<usize>)> {
    let mut clusters: Vec<(Vec<f64>, f64, Vec<usize>)> = vec![(best.to_vec(), best_f, Vec::new())];
    let mut order: Vec<usize> = (0..endpoints.len()).filter(|&i| endpoints[i].1.is_finite()).collect();
    order.sort_by(|&a, &b| endpoints[a].1.total_cmp(&endpoints[b].1));
    for i in order {
        let (x, f) = endpoints[i];
        match clusters.iter_mut().find(|c| scaled_distance(&c.0, x, scales) <= SAME_OPTIMUM_DISTANCE) {
            Some(c) => c.2.push(i),
            None => clusters.push((x.to_vec(), f, vec![i])),
        }
    }
    clusters
}

/// The warning about competing optima (other clusters within
/// [`COMPETING_OPTIMUM_RTOL`] of the best objective), if any. When a direction is not
/// identified (`flat`), optima with the best's objective (to 1e-9) are points of that flat
/// valley, not distinct minima; they are counted in the flat direction's warning instead.
pub fn optima_warning(optima: &[Optimum], flat: Option<&mut FitWarning>) -> Option<FitWarning> {
    let best = optima.first()?;
    let same_objective = |o: &Optimum| (o.objective - best.objective).abs() <= 1e-9 * best.objective.abs().max(1e-300);
    let has_flat = flat.is_some();
    if let Some(w) = flat {
        let same = optima[1..].iter().filter(|o| same_objective(o)).count();
        if same > 0 {
            w.message += &format!(" (the starts ended at {same} more distinct points along it with the same objective)");
        }
    }
    let close: Vec<&Optimum> = optima[1..]
        .iter()
        .filter(|o| (o.objective - best.objective).abs() <= COMPETING_OPTIMUM_RTOL * best.objective.abs())
        .filter(|o| !(has_flat && same_objective(o)))
        .collect();
    if close.is_empty() {
        return None;
    }
    let describe = |o: &Optimum| -> String {
        let p = o.params.iter().map(|(n, v)| format!("{n}={v:.4}")).collect::<Vec<_>>().join(" ");
        format!("{p} (objective {:.6e}, {} starts)", o.objective, o.starts)
    };
    Some(FitWarning {
        kind: WarningKind::SeveralOptima,
        params: Vec::new(),
        message: format!(
            "{} other local optima have objectives within {:.0}% of the best {}: {}; the best is not clearly preferred by the data",
            close.len(),
            COMPETING_OPTIMUM_RTOL * 100.0,
            describe(best),
            close.iter().map(|o| describe(o)).collect::<Vec<_>>().join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svd_finds_an_exact_null_direction() {
        // Columns c0, c1, c2 = c0 + 2 c1: the null vector is ∝ (1, 2, −1).
        let c0 = vec![1.0, 2.0, 3.0, 4.0];
        let c1 = vec![0.5, -1.0, 2.0, 0.0];
        let c2: Vec<f64> = c0.iter().zip(&c1).map(|(a, b)| a + 2.0 * b).collect();
        let (s, v) = svd_columns(vec![c0, c1, c2]);
        assert!(s[2] < 1e-12 * s[0], "{s:?}");
        let null = &v[2];
        let k = null[0];
        assert!((null[1] / k - 2.0).abs() < 1e-9 && (null[2] / k + 1.0).abs() < 1e-9, "{null:?}");
        assert!(s[0] >= s[1] && s[1] >= s[2]);
    }

    #[test]
    fn bounds_and_designs_are_flagged_plainly() {
        let specs = [ParamSpec::new("rn_star", 1e-3, 1e4), ParamSpec::new("alpha", 0.0, f64::INFINITY)];
        let w = bound_warnings(&[1e4, 0.3], &specs);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].kind, WarningKind::OnBound);
        assert!(w[0].message.contains("upper bound"), "{}", w[0].message);
        assert!(bound_warnings(&[5e3, 0.3], &specs).is_empty());
        let n = [1e8, 1e8, 2e8, 2e8];
        let d = [1e9, 2e9, 1e9, 2e9];
        let w = design_warnings(&[("N".into(), &n[..]), ("D".into(), &d[..])], 5);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w.iter().any(|w| w.message.contains("input 'N' takes only 2")));
    }
}
