//! The fit report: a serialisable record of a fit (parameters with bounds
//! and intervals, derived quantities, objective, start statistics, metrics
//! named by their scale, warnings about bounds, identifiability, design and
//! competing optima) and its text table and JSON form. Pure data:
//! [`crate::fit`] builds it ([`crate::diagnose`] the warnings), [`crate::plot`] draws it.

use crate::evaluate::Metrics;
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

/// Information criteria and optimiser statistics at the best fit (goodness of fit is in
/// [`FitReport::metrics`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// What the likelihood below is: the Gaussian likelihood of the fit-space residuals
    /// with σ² = RSS(fit space)/n, and k = free parameters + 1 in AIC/BIC.
    pub likelihood: String,
    pub gaussian_log_likelihood: f64,
    /// 2k − 2 ln L (see `likelihood`).
    pub aic: f64,
    /// k ln n − 2 ln L (see `likelihood`).
    pub bic: f64,
    pub iterations: usize,
    pub evaluations: usize,
    pub projected_gradient: f64,
    pub status: String,
}

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A free parameter ended on a finite bound.
    OnBound,
    /// A free parameter ended within 0.1% (of the bound interval) of a bound.
    NearBound,
    /// A parameter combination along which the objective is flat.
    NotIdentified,
    /// A parameter combination the data pins only to more than 100% of the parameters' size.
    WeaklyIdentified,
    /// Too few distinct input tuples, or an input with fewer than 3 distinct values.
    DegenerateDesign,
    /// Distinct local optima with objectives close to the best.
    SeveralOptima,
}

/// A reason to distrust (part of) a fit, with the parameters it is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitWarning {
    pub kind: WarningKind,
    /// The parameters concerned (empty for design warnings).
    pub params: Vec<String>,
    pub message: String,
}

/// One right singular vector of the scaled fit-space Jacobian (see [`crate::diagnose`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Direction {
    pub singular_value: f64,
    /// singular value / the largest one.
    pub relative_singular_value: f64,
    /// σ̂ / singular value: one standard error along this direction, in units of the
    /// parameters' size; `None` without residual degrees of freedom or at s = 0.
    pub relative_se: Option<f64>,
    /// The direction's components (relative steps of each free parameter), unit norm.
    pub loadings: Vec<(String, f64)>,
    /// The parameters taking part (|loading| ≥ 0.15), largest first.
    pub dominant: Vec<String>,
}

/// How well the data pins the free law parameters at the best fit (see [`crate::diagnose`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identifiability {
    /// Largest / smallest singular value of the scaled Jacobian; `None` when the smallest is 0.
    pub condition_number: Option<f64>,
    /// σ̂ = √(RSS(fit space) / (n − p)); `None` when n ≤ p.
    pub residual_scale: Option<f64>,
    /// The scale of each free parameter (a unit step = a 100% change).
    pub scales: Vec<(String, f64)>,
    /// All directions, strongest first.
    pub directions: Vec<Direction>,
}

/// A distinct local optimum the starts ended in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimum {
    /// Objective at the representative (polished for the best and competing optima).
    pub objective: f64,
    /// Starts whose endpoint lies in this optimum's cluster.
    pub starts: usize,
    /// The representative's free parameters.
    pub params: Vec<(String, f64)>,
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
    /// Starts that reached the best fit: those whose (screened) endpoint lies in the best
    /// optimum's cluster (see [`crate::diagnose`]); when none does (the final polish moved
    /// past every start), those within `converged_rtol` of the best starting run's
    /// objective, so the best start always counts and this is never 0.
    pub n_converged: usize,
    pub converged_rtol: f64,
    /// Starts with a non-finite objective.
    pub n_failed: usize,
    /// Goodness of fit on the fitted points, each metric named by its scale.
    pub metrics: Metrics,
    pub diagnostics: Diagnostics,
    /// Reasons to distrust the fit (bounds, identifiability, design, competing optima).
    #[serde(default)]
    pub warnings: Vec<FitWarning>,
    /// The Jacobian analysis behind the identifiability warnings (`None` when the
    /// Jacobian was not finite).
    #[serde(default)]
    pub identifiability: Option<Identifiability>,
    /// Distinct local optima the starts ended in, best first (at most 8; `n_optima` counts all).
    #[serde(default)]
    pub optima: Vec<Optimum>,
    #[serde(default)]
    pub n_optima: usize,
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
        for w in &self.warnings {
            s += &format!("WARNING    {}\n", w.message);
        }
        if !self.warnings.is_empty() {
            s += "\n";
        }
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
        s += &format!("\n{}\n", self.metrics.to_text());
        s += &format!(
            "loglik {:.3}  AIC {:.3}  BIC {:.3}  ({})\nbest start: {} iterations, {} evaluations, projected gradient {:.2e}, stop: {}\n",
            d.gaussian_log_likelihood, d.aic, d.bic, d.likelihood, d.iterations, d.evaluations, d.projected_gradient, d.status
        );
        if let Some(id) = &self.identifiability {
            let cond = id.condition_number.map_or("infinite".to_string(), |c| format!("{c:.3e}"));
            let weakest = id.directions.last().map(|w| {
                let se = w.relative_se.map_or("-".to_string(), |v| format!("{v:.3e}"));
                format!("weakest direction {} (relative singular value {:.2e}, relative se {se})", w.dominant.join("+"), w.relative_singular_value)
            });
            s += &format!("identifiability: scaled-Jacobian condition number {cond}; {}\n", weakest.unwrap_or_default());
        }
        if self.n_optima > 1 {
            s += &format!("optima     {} distinct endpoint clusters; the best {} (others polished), with the starts ending in each:\n", self.n_optima, self.optima.len());
            for o in &self.optima {
                let p = o.params.iter().map(|(n, v)| format!("{n}={}", fmt_num(*v))).collect::<Vec<_>>().join(" ");
                s += &format!("  {:.10e}  {:>6} starts  {p}\n", o.objective, o.starts);
            }
        }
        s
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers and strings cannot fail; the fallback
        // keeps this total without a panic path.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}
