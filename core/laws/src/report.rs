//! The fit report: a serialisable record of a fit (parameters with bounds
//! and intervals, derived quantities, objective, start statistics,
//! diagnostics) and its text table and JSON form. Pure data: [`crate::fit`]
//! builds it, [`crate::plot`] draws it.

use crate::law::Method;
use serde::{Deserialize, Serialize};

/// A bootstrap percentile interval with the bootstrap standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
    pub se: f64,
    pub level: f64,
}

/// A fitted (or frozen) parameter or a derived quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub name: String,
    pub value: f64,
    pub fixed: bool,
    #[serde(default = "crate::law::bound_serde::neg_inf", with = "crate::law::bound_serde::lower")]
    pub lower_bound: f64,
    #[serde(default = "crate::law::bound_serde::pos_inf", with = "crate::law::bound_serde::upper")]
    pub upper_bound: f64,
    pub interval: Option<Interval>,
}

/// Fit diagnostics at the best fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Sum of squared residuals in the fit space.
    pub rss: f64,
    pub gaussian_log_likelihood: f64,
    pub aic: f64,
    pub bic: f64,
    /// Mean |L̂ − L|/L over the fitted points.
    pub mean_abs_rel_error: f64,
    pub iterations: usize,
    pub evaluations: usize,
    pub projected_gradient: f64,
    pub status: String,
}

/// Bootstrap settings and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapSummary {
    pub resamples: usize,
    pub failed: usize,
    pub seed: u64,
    pub level: f64,
}

/// Everything about a fit that is worth printing or storing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub law: String,
    pub equation: String,
    pub citation: String,
    pub objective: String,
    pub method: Method,
    /// Minimised objective (for the MLE: the negative log-likelihood).
    pub objective_value: f64,
    pub params: Vec<Estimate>,
    pub derived: Vec<Estimate>,
    pub n_points: usize,
    pub n_starts: usize,
    /// Starts whose objective is within `converged_rtol` of the best (for
    /// the MLE: of the best start before the final simplex polish).
    pub n_converged: usize,
    pub converged_rtol: f64,
    /// Starts with a non-finite objective.
    pub n_failed: usize,
    pub diagnostics: Diagnostics,
    pub bootstrap: Option<BootstrapSummary>,
    pub elapsed_s: f64,
    /// Input names, first one is the plots' x axis.
    pub inputs: Vec<String>,
    /// Observed and fitted losses per point (for plots and residual checks).
    pub observed: Vec<f64>,
    pub fitted: Vec<f64>,
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 1e-3 && v.abs() < 1e6) {
        format!("{v:.6}")
    } else {
        format!("{v:.6e}")
    }
}

impl FitReport {
    /// A plain-text table: parameters with intervals, derived quantities,
    /// objective and diagnostics.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        s += &format!("law        {}\n", self.law);
        s += &format!("equation   {}\n", self.equation);
        s += &format!("source     {}\n", self.citation);
        s += &format!("objective  {} = {:.10e}\n", self.objective, self.objective_value);
        s += &format!(
            "starts     {} run, {} reached the best (rtol {:e}), {} failed; {} points; {:.3} s\n",
            self.n_starts, self.n_converged, self.converged_rtol, self.n_failed, self.n_points, self.elapsed_s
        );
        if let Some(b) = &self.bootstrap {
            s += &format!("bootstrap  {} resamples (seed {}, {} failed), {:.0}% percentile intervals\n", b.resamples, b.seed, b.failed, b.level * 100.0);
        }
        s += &format!("\n{:<20} {:>16} {:>16} {:>16} {:>12}\n", "parameter", "value", "ci_lower", "ci_upper", "se");
        let row = |e: &Estimate| -> String {
            let (lo, hi, se) = match &e.interval {
                Some(i) => (fmt_num(i.lower), fmt_num(i.upper), fmt_num(i.se)),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let name = if e.fixed { format!("{} (fixed)", e.name) } else { e.name.clone() };
            format!("{:<20} {:>16} {:>16} {:>16} {:>12}\n", name, fmt_num(e.value), lo, hi, se)
        };
        for e in &self.params {
            s += &row(e);
        }
        if !self.derived.is_empty() {
            s += "derived\n";
            for e in &self.derived {
                s += &row(e);
            }
        }
        let d = &self.diagnostics;
        s += &format!(
            "\nrss {:.6e}  loglik(gauss) {:.3}  AIC {:.3}  BIC {:.3}  mean|rel err| {:.4e}\nbest start: {} iterations, {} evaluations, projected gradient {:.2e}, stop: {}\n",
            d.rss, d.gaussian_log_likelihood, d.aic, d.bic, d.mean_abs_rel_error, d.iterations, d.evaluations, d.projected_gradient, d.status
        );
        s
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers and strings cannot fail; the fallback
        // keeps this total without a panic path.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}
