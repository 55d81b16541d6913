//! Turning fits into decisions: held-out extrapolation error (fit on the
//! small models, score the largest), model comparison on the same data
//! (held-out error and AIC/BIC), Chinchilla compute-optimal allocation, and
//! the effective-data multiplier of a method.

use crate::data::Points;
use crate::error::{LawError, Result};
use crate::fit::{fit, Fit, FitOptions};
use crate::law::LawForm;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Held-out extrapolation result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldOut {
    pub law: String,
    /// Mean absolute relative error |L̂ − L|/L on the held-out points.
    pub are: f64,
    /// Largest absolute relative error on the held-out points.
    pub max_are: f64,
    pub n_train: usize,
    pub n_test: usize,
    pub aic: f64,
    pub bic: f64,
    pub train_objective: f64,
}

/// Indices (train, test): test = rows whose `column` equals its maximum
/// (the largest model), train = the rest.
pub fn split_largest(points: &Points, column: &str) -> Result<(Vec<usize>, Vec<usize>)> {
    let col = points.column(column)?;
    let max = col.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (test, train): (Vec<usize>, Vec<usize>) = (0..col.len()).partition(|&i| col[i] == max);
    if train.is_empty() {
        return Err(LawError::BadOption(format!("every row has the largest '{column}': nothing left to fit on")));
    }
    Ok((train, test))
}

/// Mean and max absolute relative error of `fit` on `test`.
pub fn relative_error(fit: &Fit, test: &Points) -> Result<(f64, f64)> {
    let pred = fit.predict(test)?;
    let errs: Vec<f64> = pred.iter().zip(&test.loss).map(|(p, y)| ((p.value - y) / y).abs()).collect();
    if errs.is_empty() {
        return Err(LawError::BadOption("no held-out points to score".into()));
    }
    Ok((errs.iter().sum::<f64>() / errs.len() as f64, errs.iter().copied().fold(0.0, f64::max)))
}

/// Fit on `train`, score on `test`.
pub fn held_out_error(law: Arc<dyn LawForm>, train: &Points, test: &Points, opts: &FitOptions) -> Result<HeldOut> {
    Ok(held_out_fit(law, train, test, opts)?.1)
}

/// Fit on `train`, score on `test`; the fit too (its parameters, warnings, bootstrap).
pub fn held_out_fit(law: Arc<dyn LawForm>, train: &Points, test: &Points, opts: &FitOptions) -> Result<(Fit, HeldOut)> {
    let f = fit(law, train, opts)?;
    let (are, max_are) = relative_error(&f, test)?;
    let held_out = HeldOut {
        law: f.report.law.clone(),
        are,
        max_are,
        n_train: train.len(),
        n_test: test.len(),
        aic: f.report.diagnostics.aic,
        bic: f.report.diagnostics.bic,
        train_objective: f.report.objective_value,
    };
    Ok((f, held_out))
}

/// Fit on all rows but the largest `size_column` and score the largest.
pub fn extrapolation_error(law: Arc<dyn LawForm>, points: &Points, size_column: &str, opts: &FitOptions) -> Result<HeldOut> {
    let (train, test) = split_largest(points, size_column)?;
    held_out_error(law, &points.select(&train)?, &points.select(&test)?, opts)
}

/// Compare several laws on the same train/test split. AIC/BIC are on the
/// training fit; compare them only between laws fitted in the same residual
/// space (both ln or both raw), which the default objectives of the
/// N–D laws are.
pub fn compare(laws: &[Arc<dyn LawForm>], train: &Points, test: &Points, opts: &FitOptions) -> Result<Vec<HeldOut>> {
    laws.iter().map(|l| held_out_error(l.clone(), train, test, opts)).collect()
}

/// Chinchilla compute-optimal allocation for a compute budget C (FLOPs),
/// with C = 6·N·D (Hoffmann et al. 2022; datablations README):
/// G = (αA/(βB))^{1/(α+β)}, N_opt = G·(C/6)^{β/(α+β)}, D_opt = G^{-1}·(C/6)^{α/(α+β)}.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ComputeOptimal {
    pub flops: f64,
    pub g: f64,
    pub params: f64,
    pub tokens: f64,
}

/// See [`ComputeOptimal`]. Natural-unit A, B, α, β.
pub fn compute_optimal(a: f64, b: f64, alpha: f64, beta: f64, flops: f64) -> Result<ComputeOptimal> {
    if !(a > 0.0 && b > 0.0 && alpha > 0.0 && beta > 0.0 && flops > 0.0) {
        return Err(LawError::BadOption(format!(
            "compute-optimal allocation needs A, B, alpha, beta, C > 0 (got A={a}, B={b}, alpha={alpha}, beta={beta}, C={flops})"
        )));
    }
    let g = ((alpha * a) / (beta * b)).powf(1.0 / (alpha + beta));
    let c6 = flops / 6.0;
    Ok(ComputeOptimal { flops, g, params: g * c6.powf(beta / (alpha + beta)), tokens: c6.powf(alpha / (alpha + beta)) / g })
}

/// Compute-optimal allocation from a Chinchilla fit (`[a, b, e, alpha, beta]`).
pub fn compute_optimal_from_fit(fit: &Fit, flops: f64) -> Result<ComputeOptimal> {
    let need = |n: &str| fit.get(n).ok_or_else(|| LawError::UnknownParam { name: n.into(), law: fit.report.law.clone(), available: "a, b, alpha, beta".into() });
    compute_optimal(need("a")?.exp(), need("b")?.exp(), need("alpha")?, need("beta")?, flops)
}

/// Effective-data multiplier of a method (with an interval when the
/// baseline fit was bootstrapped).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Multiplier {
    /// D_eq / D0.
    pub multiplier: f64,
    /// D_eq: unique data the baseline needs to reach the method's loss.
    pub equivalent_data: f64,
    pub interval: Option<crate::report::Interval>,
}

/// How many times more unique data the baseline would need to reach the
/// method's loss: solve L_base(D_eq; other inputs fixed) = `method_loss`
/// for D_eq (bisection on ln D; the law must decrease in D) and return
/// D_eq / `data0`. `data_input` names the data input of the baseline's law
/// (e.g. `D`, `U`, or `x` for a power law in data); `fixed` gives the other
/// inputs (e.g. `N`). One reading of "data efficiency" (Kim et al. 2025,
/// arXiv 2509.14786): fit the baseline's loss against unique data, then
/// invert it at the method's loss.
pub fn effective_data_multiplier(baseline: &Fit, data_input: &str, fixed: &[(String, f64)], method_loss: f64, data0: f64) -> Result<Multiplier> {
    let at = |params: &[f64]| solve_data(baseline, params, data_input, fixed, method_loss);
    let d_eq = at(&baseline.params())?;
    let interval = if baseline.bootstrap_samples.is_empty() {
        None
    } else {
        let mut v: Vec<f64> = baseline.bootstrap_samples.iter().filter_map(|p| at(p).ok()).map(|d| d / data0).collect();
        let level = baseline.report.bootstrap.as_ref().map_or(0.95, |b| b.level);
        Some(crate::fit::percentile_interval(&mut v, level))
    };
    Ok(Multiplier { multiplier: d_eq / data0, equivalent_data: d_eq, interval })
}

pub(crate) fn solve_data(f: &Fit, params: &[f64], data_input: &str, fixed: &[(String, f64)], target: f64) -> Result<f64> {
    let names = f.law.inputs();
    let k = names.iter().position(|n| n == data_input).ok_or_else(|| LawError::UnknownColumn { column: data_input.into(), available: names.join(", ") })?;
    let mut vals = Vec::with_capacity(names.len());
    for (j, n) in names.iter().enumerate() {
        if j == k {
            vals.push(0.0);
        } else {
            let v = fixed.iter().find(|(m, _)| m == n).map(|x| x.1).ok_or_else(|| LawError::BadOption(format!("effective-data multiplier: give a value for input '{n}'")))?;
            vals.push(v);
        }
    }
    let loss_at = |ln_d: f64| -> f64 {
        let cols: Vec<Vec<f64>> = vals.iter().enumerate().map(|(j, v)| vec![if j == k { ln_d.exp() } else { *v }]).collect();
        f.law.predict(params, &crate::law::Inputs::new(names.clone(), cols))[0]
    };
    let (mut lo, mut hi) = (-10.0_f64, 120.0_f64); // e^-10 .. e^120 units of data
    let (f_lo, f_hi) = (loss_at(lo), loss_at(hi));
    if !(f_lo >= target && f_hi <= target) {
        return Err(LawError::FitFailed(format!(
            "the baseline never reaches loss {target} (its loss runs from {f_lo} to {f_hi} over the data range; the method's loss may be below the baseline's asymptote)"
        )));
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if loss_at(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-13 {
            break;
        }
    }
    Ok((0.5 * (lo + hi)).exp())
}
