//! The fitter: objective (Huber or least squares, on ln or raw residuals),
//! a grid of starting points each run through bounded L-BFGS in parallel,
//! the best fit with a count of the starts that reached it, frozen
//! parameters, the Huber-likelihood MLE variant with a scale parameter, and
//! seeded parallel bootstrap confidence intervals.
//!
//! Determinism: every start and every bootstrap resample is a pure function
//! of its index (resample r draws from ChaCha8 seeded with `seed`, stream r),
//! so results do not depend on the number of threads.

use crate::error::{LawError, Result};
pub use crate::law::Method;
use crate::lanes::Padded;
use crate::law::{Inputs, LawForm, Loss, Objective, ParamSpec, Space};
use crate::optim::{minimize_bounded, LbfgsOptions, OptResult, Status};
use crate::evaluate::Metrics;
use crate::report::{BootstrapSummary, Diagnostics, Estimate, FitReport, FitWarning, Identifiability, Interval, Optimum};
use crate::data::Points;
use crate::progress::{FitPhase, ProgressHook, Tracker};
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Bootstrap settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct BootstrapOptions {
    /// Number of resamples (with replacement, same size as the data).
    pub resamples: usize,
    /// RNG seed; resample r uses ChaCha8(seed) on stream r.
    pub seed: u64,
    /// Two-sided interval level, e.g. 0.95.
    pub level: f64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions { resamples: 4000, seed: 42, level: 0.95 }
    }
}

/// Everything a fit can be told. `Default` gives the law's own objective
/// and grid, no frozen parameters and no bootstrap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitOptions {
    /// Objective; `None` uses the law's default (its paper's).
    pub objective: Option<Objective>,
    pub method: Method,
    /// Starting points (full parameter vectors); `None` uses the law's grid.
    pub grid: Option<Vec<Vec<f64>>>,
    /// Frozen parameters: name and value (e.g. Muennighoff's stage 2 freezes
    /// the five base parameters and fits only rd_star, rn_star).
    pub fixed: Vec<(String, f64)>,
    /// Bound overrides: name, lower, upper.
    pub bounds: Vec<(String, f64, f64)>,
    pub lbfgs: LbfgsOptions,
    /// A start "reached" the best fit if its (screened) objective is within
    /// this relative tolerance of the best.
    pub converged_rtol: f64,
    /// Relative-decrease tolerance of the screening pass over all starts
    /// (`None`: run every start to `lbfgs.ftol`).
    pub screen_ftol: Option<f64>,
    /// How many of the best screened starts are polished to `lbfgs.ftol`.
    pub polish_top: usize,
    /// Maximum fresh-memory restarts of the best start while they improve.
    pub restarts: usize,
    pub bootstrap: Option<BootstrapOptions>,
    /// Called as starts finish (screen, polish, bootstrap; see
    /// [`crate::progress`]). Not serialised.
    #[serde(skip)]
    pub progress: Option<ProgressHook>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            objective: None,
            method: Method::Minimise,
            grid: None,
            fixed: Vec::new(),
            bounds: Vec::new(),
            lbfgs: LbfgsOptions::default(),
            converged_rtol: 1e-5,
            screen_ftol: Some(1e-9),
            polish_top: 16,
            restarts: 20,
            bootstrap: None,
            progress: None,
        }
    }
}

/// ln Z of the Huber density: Z = √(2π)(1 − 2Φ̄(δ)) + 2e^{−δ²/2}/δ.
pub fn huber_log_normaliser(delta: f64) -> f64 {
    let sf = 0.5 * libm::erfc(delta / std::f64::consts::SQRT_2);
    ((2.0 * std::f64::consts::PI).sqrt() * (1.0 - 2.0 * sf) + 2.0 * (-delta * delta / 2.0).exp() / delta).ln()
}

/// A prepared problem: law, inputs, targets, free/frozen layout.
pub(crate) struct Problem<'a> {
    pub law: &'a dyn LawForm,
    pub inputs: Inputs,
    /// ln y (log space) or y.
    pub target: Vec<f64>,
    pub objective: Objective,
    pub mle: bool,
    pub n_params: usize,
    /// Indices of the free law parameters.
    pub free: Vec<usize>,
    /// Full law parameter vector holding the frozen values.
    pub template: Vec<f64>,
    /// Bounds of the free coordinates (law params, then log_sigma for MLE).
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    /// The points padded for the law's fused kernel
    /// ([`LawForm::log_huber_into`]), when the objective is Huber on ln
    /// residuals and the law has one.
    pub(crate) padded: Option<Padded>,
}

/// Per-thread scratch buffers.
pub(crate) struct Work {
    full: Vec<f64>,
    pred: Vec<f64>,
    jac: Vec<f64>,
    psi: Vec<f64>,
    full_grad: Vec<f64>,
}

impl<'a> Problem<'a> {
    pub fn work(&self) -> Work {
        // The fused path needs no per-point buffers.
        let n = if self.padded.is_some() { 0 } else { self.inputs.len() };
        Work { full: self.template.clone(), pred: vec![0.0; n], jac: vec![0.0; n * self.n_params], psi: vec![0.0; n], full_grad: vec![0.0; self.n_params] }
    }

    /// Full law parameters from free coordinates.
    pub fn expand(&self, x: &[f64]) -> Vec<f64> {
        let mut full = self.template.clone();
        for (k, &j) in self.free.iter().enumerate() {
            full[j] = x[k];
        }
        full
    }

    /// The same problem on a resample of the points.
    pub fn resampled(&self, idx: &[usize]) -> Problem<'a> {
        Problem {
            law: self.law,
            inputs: self.inputs.select(idx),
            target: idx.iter().map(|&i| self.target[i]).collect(),
            objective: self.objective,
            mle: self.mle,
            n_params: self.n_params,
            free: self.free.clone(),
            template: self.template.clone(),
            lower: self.lower.clone(),
            upper: self.upper.clone(),
            padded: None,
        }
        .with_fused_kernel()
    }

    /// Pad the points for the law's fused kernel when the objective is Huber
    /// on ln residuals and the law has one (probed once here, at the frozen
    /// values and 0.5 clamped into the bounds elsewhere).
    fn with_fused_kernel(mut self) -> Self {
        let Loss::Huber { delta } = self.objective.loss else { return self };
        if self.objective.space != Space::Log {
            return self;
        }
        let Some(padded) = Padded::new(&self.inputs, &self.target) else { return self };
        let probe: Vec<f64> = self.template.iter().zip(self.law.params()).map(|(&v, s)| if v.is_finite() { v } else { 0.5f64.clamp(s.lower, s.upper) }).collect();
        let mut grad = vec![0.0; self.n_params];
        if self.law.log_huber_into(&probe, &padded.inputs, &padded.huber(1.0, delta), &mut grad).is_some() {
            self.padded = Some(padded);
        }
        self
    }

    fn delta(&self) -> f64 {
        match self.objective.loss {
            Loss::Huber { delta } => delta,
            Loss::LeastSquares => 1.0,
        }
    }

    /// Objective value and gradient over the free coordinates.
    pub fn value_grad(&self, w: &mut Work, x: &[f64], grad: &mut [f64]) -> f64 {
        for (k, &j) in self.free.iter().enumerate() {
            w.full[j] = x[k];
        }
        let nf = self.free.len();
        if let (Some(padded), Loss::Huber { delta }) = (&self.padded, self.objective.loss) {
            let inv_s = if self.mle { (-x[nf]).exp() } else { 1.0 };
            if let Some((f, psi_z)) = self.law.log_huber_into(&w.full, &padded.inputs, &padded.huber(inv_s, delta), &mut w.full_grad) {
                return self.finish(x, f, -psi_z, &w.full_grad, grad);
            }
        }
        match self.objective.space {
            Space::Log => self.law.log_jacobian_into(&w.full, &self.inputs, &mut w.pred, &mut w.jac),
            Space::Linear => self.law.jacobian_into(&w.full, &self.inputs, &mut w.pred, &mut w.jac),
        }
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut f = 0.0;
        let (inv_s, mut g_sigma) = if self.mle { ((-x[nf]).exp(), 0.0) } else { (1.0, 0.0) };
        let n = self.target.len();
        let (pred, target, psi_out) = (&w.pred[..n], &self.target[..n], &mut w.psi[..n]);
        match self.objective.loss {
            Loss::Huber { delta } => {
                let (fv, pz) = reduce::huber(pred, target, inv_s, delta, psi_out);
                f = fv;
                g_sigma = -pz;
            }
            Loss::LeastSquares => {
                for i in 0..n {
                    let z = (pred[i] - target[i]) * inv_s;
                    f += z * z;
                    psi_out[i] = 2.0 * z * inv_s;
                    g_sigma -= 2.0 * z * z;
                }
            }
        }
        for &j in &self.free {
            w.full_grad[j] = reduce::dot(&w.jac[j * n..(j + 1) * n], &w.psi[..n]);
        }
        self.finish(x, f, g_sigma, &w.full_grad, grad)
    }

    /// The objective from the loss sum `f`, ∂f/∂σ's loss part `g_sigma` and
    /// the gradient over all law parameters: picks the free ones and adds
    /// the likelihood's normaliser for the MLE.
    fn finish(&self, x: &[f64], mut f: f64, g_sigma: f64, full_grad: &[f64], grad: &mut [f64]) -> f64 {
        let nf = self.free.len();
        for (k, &j) in self.free.iter().enumerate() {
            grad[k] = full_grad[j];
        }
        if self.mle {
            let n = self.target.len() as f64;
            f += n * x[nf] + n * huber_log_normaliser(self.delta());
            grad[nf] = g_sigma + n;
        }
        if f.is_finite() {
            f
        } else {
            f64::INFINITY
        }
    }

    /// Objective at free coordinates.
    pub fn value_at(&self, x_free: &[f64]) -> f64 {
        let mut w = self.work();
        let mut g = vec![0.0; x_free.len()];
        self.value_grad(&mut w, x_free, &mut g)
    }

    /// Residuals in the fit space at full law parameters.
    pub fn residuals(&self, full: &[f64]) -> Vec<f64> {
        let mut pred = vec![0.0; self.inputs.len()];
        match self.objective.space {
            Space::Log => self.law.log_predict_into(full, &self.inputs, &mut pred),
            Space::Linear => self.law.predict_into(full, &self.inputs, &mut pred),
        }
        pred.iter().zip(&self.target).map(|(p, t)| p - t).collect()
    }

    /// Run L-BFGS from each start (free coordinates), in parallel.
    pub fn run_starts(&self, starts: &[Vec<f64>], opts: &LbfgsOptions) -> Vec<OptResult> {
        self.run_starts_tracked(starts, opts, None)
    }

    /// `run_starts`, reporting each finished start as `phase` to `hook`.
    pub fn run_starts_tracked(&self, starts: &[Vec<f64>], opts: &LbfgsOptions, progress: Option<(&ProgressHook, FitPhase)>) -> Vec<OptResult> {
        let tracker = progress.map(|(hook, phase)| Tracker::begin(hook, phase, starts.len()));
        starts
            .par_iter()
            .map_init(
                || self.work(),
                |w, x0| {
                    let r = minimize_bounded(|x, g| self.value_grad(w, x, g), x0, &self.lower, &self.upper, opts);
                    if let Some(t) = &tracker {
                        t.tick();
                    }
                    r
                },
            )
            .collect()
    }
}

/// A finished fit: the serialisable report plus what is needed to predict,
/// plot and compare (the law, the points, bootstrap samples).
#[derive(Clone)]
pub struct Fit {
    pub report: FitReport,
    pub law: Arc<dyn LawForm>,
    pub points: Points,
    /// Full law parameter vectors of the successful bootstrap refits.
    pub bootstrap_samples: Vec<Vec<f64>>,
}

impl std::fmt::Debug for Fit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fit").field("report", &self.report).finish_non_exhaustive()
    }
}

/// One prediction with its bootstrap interval (when the fit was bootstrapped).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Prediction {
    pub value: f64,
    pub interval: Option<Interval>,
}

impl Fit {
    /// The fitted full law parameter vector.
    pub fn params(&self) -> Vec<f64> {
        self.report.params.iter().filter(|e| e.name != "log_sigma").map(|e| e.value).collect()
    }

    /// Value of a fitted parameter or derived quantity by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.report.params.iter().chain(&self.report.derived).find(|e| e.name == name).map(|e| e.value)
    }

    /// Predict at new points (which need the law's input columns), with
    /// percentile intervals from the bootstrap refits when there are any.
    pub fn predict(&self, at: &Points) -> Result<Vec<Prediction>> {
        let inputs = at.law_inputs(self.law.as_ref())?;
        let value = self.law.predict(&self.params(), &inputs);
        let level = self.report.bootstrap.as_ref().map_or(0.95, |b| b.level);
        let boots: Vec<Vec<f64>> = self.bootstrap_samples.iter().map(|p| self.law.predict(p, &inputs)).collect();
        Ok(value
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let interval = if boots.is_empty() {
                    None
                } else {
                    let mut col: Vec<f64> = boots.iter().map(|b| b[i]).filter(|x| x.is_finite()).collect();
                    Some(percentile_interval(&mut col, level))
                };
                Prediction { value: v, interval }
            })
            .collect())
    }
}

impl Fit {
    /// Residual plot (see [`crate::plot::write_residual_svg`]).
    pub fn write_residual_svg(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::plot::write_residual_svg(&self.report, &self.points, path.as_ref())
    }

    /// Fitted-curve plot with the bootstrap band when there is one (see [`crate::plot::write_curve_svg`]).
    pub fn write_curve_svg(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::plot::write_curve_svg(&self.report, self.law.as_ref(), &self.params(), &self.points, &self.bootstrap_samples, path.as_ref())
    }
}

/// Percentile interval (linear interpolation between order statistics, as
/// numpy's default) plus the sample standard deviation.
pub fn percentile_interval(values: &mut [f64], level: f64) -> Interval {
    values.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| -> f64 {
        if values.is_empty() {
            return f64::NAN;
        }
        let h = p * (values.len() - 1) as f64;
        let (lo, frac) = (h.floor() as usize, h - h.floor());
        let hi = (lo + 1).min(values.len() - 1);
        values[lo] + frac * (values[hi] - values[lo])
    };
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    Interval { lower: q((1.0 - level) / 2.0), upper: q((1.0 + level) / 2.0), se: var.sqrt(), level }
}

/// Resolve bounds, fixed parameters and the objective into a `Problem`.
pub(crate) fn prepare<'a>(law: &'a dyn LawForm, points: &Points, opts: &FitOptions) -> Result<Problem<'a>> {
    let mut specs: Vec<ParamSpec> = law.params();
    let names = || specs_names(&law.params());
    for (name, lo, hi) in &opts.bounds {
        let Some(s) = specs.iter_mut().find(|s| &s.name == name) else {
            return Err(LawError::UnknownParam { name: name.clone(), law: law.name().into(), available: names() });
        };
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(LawError::BadParam { name: name.clone(), message: format!("bounds [{lo}, {hi}] are not an interval") });
        }
        s.lower = *lo;
        s.upper = *hi;
    }
    let mut template = vec![f64::NAN; specs.len()];
    let mut is_fixed = vec![false; specs.len()];
    for (name, v) in &opts.fixed {
        let Some(j) = specs.iter().position(|s| &s.name == name) else {
            return Err(LawError::UnknownParam { name: name.clone(), law: law.name().into(), available: names() });
        };
        if !v.is_finite() {
            return Err(LawError::BadParam { name: name.clone(), message: format!("fixed value {v} is not finite") });
        }
        template[j] = *v;
        is_fixed[j] = true;
    }
    let free: Vec<usize> = (0..specs.len()).filter(|&j| !is_fixed[j]).collect();
    let objective = opts.objective.unwrap_or_else(|| law.default_objective());
    if let Loss::Huber { delta } = objective.loss {
        if !(delta > 0.0 && delta.is_finite()) {
            return Err(LawError::BadOption(format!("Huber delta must be > 0, got {delta}")));
        }
    }
    let mle = opts.method == Method::HuberMle;
    if mle && !matches!(objective.loss, Loss::Huber { .. }) {
        return Err(LawError::BadOption("the Huber MLE needs a Huber objective".into()));
    }
    let n_free = free.len() + usize::from(mle);
    if n_free == 0 {
        return Err(LawError::BadOption(format!("every parameter of '{}' is fixed: nothing to fit", law.name())));
    }
    let inputs = points.inputs_for(law, n_free, objective.space == Space::Log)?;
    let target: Vec<f64> = match objective.space {
        Space::Log => points.loss.iter().map(|y| y.ln()).collect(),
        Space::Linear => points.loss.clone(),
    };
    let mut lower: Vec<f64> = free.iter().map(|&j| specs[j].lower).collect();
    let mut upper: Vec<f64> = free.iter().map(|&j| specs[j].upper).collect();
    if mle {
        lower.push(-60.0);
        upper.push(10.0);
    }
    Ok(Problem { law, inputs, target, objective, mle, n_params: specs.len(), free, template, lower, upper, padded: None }.with_fused_kernel())
}

fn specs_names(specs: &[ParamSpec]) -> String {
    specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// The objective of `law` on `points` at full parameters `params` (e.g. the
/// Huber loss of published parameters on a data set). `objective` `None`
/// uses the law's default.
pub fn objective_value(law: &dyn LawForm, points: &Points, objective: Option<Objective>, params: &[f64]) -> Result<f64> {
    let spec = law.params();
    if params.len() != spec.len() {
        return Err(LawError::BadOption(format!("law '{}' has {} parameters, got {} values", law.name(), spec.len(), params.len())));
    }
    let opts = FitOptions {
        objective,
        fixed: spec.iter().zip(params).skip(1).map(|(s, v)| (s.name.clone(), *v)).collect(),
        ..FitOptions::default()
    };
    let problem = prepare(law, points, &opts)?;
    Ok(problem.value_at(&params[..1]))
}

/// Project full-vector starts onto the free coordinates, clamp to bounds and
/// drop duplicates (a grid over frozen parameters collapses).
fn free_starts(problem: &Problem, grid: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (k, g) in grid.iter().enumerate() {
        if g.len() != problem.n_params {
            return Err(LawError::BadOption(format!(
                "start {} has {} values, law '{}' has {} parameters",
                k + 1,
                g.len(),
                problem.law.name(),
                problem.n_params
            )));
        }
        let x: Vec<f64> =
            problem.free.iter().enumerate().map(|(i, &j)| g[j].clamp(problem.lower[i], problem.upper[i])).collect();
        let key: Vec<u64> = x.iter().map(|v| v.to_bits()).collect();
        if seen.insert(key) {
            out.push(x);
        }
    }
    if out.is_empty() {
        return Err(LawError::BadOption("the grid of starting points is empty".into()));
    }
    Ok(out)
}

/// Fit `law` to `points`. See [`FitOptions`].
pub fn fit(law: Arc<dyn LawForm>, points: &Points, opts: &FitOptions) -> Result<Fit> {
    let t0 = std::time::Instant::now();
    let problem = prepare(law.as_ref(), points, opts)?;
    let grid = match &opts.grid {
        Some(g) => g.clone(),
        None => law.default_grid(&problem.inputs, &points.loss),
    };
    // For the MLE, first solve the plain Huber problem from the grid, then
    // start the likelihood from its best fit over a range of scales.
    let (results, best_result, n_starts) = if problem.mle {
        let plain_x = if problem.free.is_empty() {
            // Every law parameter frozen: only the scale is fitted.
            Vec::new()
        } else {
            let plain_opts = FitOptions { method: Method::Minimise, bootstrap: None, ..opts.clone() };
            let plain = prepare(law.as_ref(), points, &plain_opts)?;
            let starts = free_starts(&plain, &grid)?;
            multistart(&plain, &starts, opts, law.name())?.1.x
        };
        let sigma_starts: Vec<Vec<f64>> = [-14.0, -10.0, -7.0, -5.0, -3.0, -1.0, 0.0]
            .iter()
            .map(|&s| {
                let mut x = plain_x.clone();
                x.push(s);
                x
            })
            .collect();
        let (res, mut best) = multistart(&problem, &sigma_starts, opts, law.name())?;
        // At the fitted (tiny) scale the likelihood is nearly L1 in the
        // residuals and L-BFGS stops at a kink; a simplex search continues
        // from there (kept only if it improves), then L-BFGS polishes.
        for _ in 0..opts.restarts.min(5) {
            let step: Vec<f64> = best.x.iter().map(|v| 1e-3 * v.abs().max(1e-2)).collect();
            let mut w = problem.work();
            let mut g = vec![0.0; best.x.len()];
            let (x, f) = crate::optim::nelder_mead(|x| problem.value_grad(&mut w, x, &mut g), &best.x, &step, &problem.lower, &problem.upper, 1e-13, 4000);
            let improved = f < best.f - 1e-10 * best.f.abs();
            if !improved {
                break;
            }
            let polished = problem.run_starts(std::slice::from_ref(&x), &opts.lbfgs).remove(0);
            let (x, f) = if polished.f < f { (polished.x, polished.f) } else { (x, f) };
            best = OptResult { x, f, ..best };
        }
        (res, best, sigma_starts.len())
    } else {
        let starts = free_starts(&problem, &grid)?;
        let (res, best) = multistart(&problem, &starts, opts, law.name())?;
        (res, best, starts.len())
    };
    let b = &best_result;
    let assessment = assess(&problem, b, &results, &opts.lbfgs);
    // "Reached the best": the starts whose endpoint lies in the best optimum's cluster; when
    // none does (the polish moved more than the cluster radius from every endpoint), those
    // within `converged_rtol` of the best starting run (pre-polish), so the best start itself
    // always counts and a polish past every start cannot make this 0.
    let n_converged = if assessment.best_members.is_empty() {
        let reference = results.iter().map(|r| r.f).filter(|f| f.is_finite()).fold(f64::INFINITY, f64::min);
        let tol = opts.converged_rtol * reference.abs().max(1e-300);
        results.iter().filter(|r| r.f.is_finite() && (r.f - reference).abs() <= tol).count()
    } else {
        assessment.best_members.len()
    };
    let n_failed = results.iter().filter(|r| r.status == Status::NonFiniteStart || !r.f.is_finite()).count();

    let full = problem.expand(&b.x);
    let mut samples = Vec::new();
    let mut boot_summary = None;
    if let Some(bo) = &opts.bootstrap {
        let (s, failed) = bootstrap_refits(&problem, &b.x, bo, &opts.lbfgs, opts.progress.as_ref())?;
        boot_summary = Some(BootstrapSummary { resamples: bo.resamples, failed, seed: bo.seed, level: bo.level });
        samples = s;
    }
    let mut assessment = assessment;
    if let Some(best_optimum) = assessment.optima.first_mut() {
        best_optimum.starts = n_converged;
    }
    let report = build_report(&problem, &full, b, &samples, opts, n_starts, n_converged, n_failed, boot_summary, assessment, t0.elapsed().as_secs_f64());
    let law_samples: Vec<Vec<f64>> = samples.iter().map(|s| s[..problem.n_params].to_vec()).collect();
    Ok(Fit { report, law, points: points.clone(), bootstrap_samples: law_samples })
}

/// Run every start with the screening tolerance, then polish the best
/// `polish_top` with the full tolerance and return (screened results, best
/// polished result). Screening stops each start once its relative progress
/// falls below `screen_ftol`; polishing from the most promising endpoints
/// then reaches the tight optimum at a fraction of the cost of running every
/// start to it (the ~1,300 starts that share the best Chinchilla basin do
/// not each need the last digits).
#[allow(clippy::too_many_arguments)]
/// The report of a finished fit, from its problem, best start and bootstrap samples.
fn build_report(
    problem: &Problem,
    full: &[f64],
    best: &OptResult,
    samples: &[Vec<f64>],
    opts: &FitOptions,
    n_starts: usize,
    n_converged: usize,
    n_failed: usize,
    bootstrap: Option<BootstrapSummary>,
    assessment: Assessment,
    elapsed_s: f64,
) -> FitReport {
    let level = opts.bootstrap.map_or(0.95, |b| b.level);
    let log_sigma = if problem.mle { Some(best.x[problem.free.len()]) } else { None };
    let (params, derived) = estimates(problem, full, log_sigma, samples, level);
    let observed: Vec<f64> = match problem.objective.space {
        Space::Log => problem.target.iter().map(|t| t.exp()).collect(),
        Space::Linear => problem.target.clone(),
    };
    let fitted = problem.law.predict(full, &problem.inputs);
    FitReport {
        law: problem.law.name().into(),
        equation: problem.law.equation(),
        citation: problem.law.citation(),
        objective: if problem.mle {
            format!("Huber-likelihood NLL ({})", problem.objective.describe())
        } else {
            problem.objective.describe()
        },
        method: opts.method,
        objective_value: best.f,
        params,
        derived,
        n_points: problem.inputs.len(),
        n_starts,
        n_converged,
        converged_rtol: opts.converged_rtol,
        n_failed,
        metrics: Metrics::of(&fitted, &observed, problem.objective.space),
        diagnostics: diagnostics(problem, full, best),
        warnings: assessment.warnings,
        identifiability: assessment.identifiability,
        optima: assessment.optima,
        n_optima: assessment.n_optima,
        bootstrap,
        elapsed_s,
        inputs: problem.law.inputs(),
        fitted,
        observed,
    }
}

fn multistart(problem: &Problem, starts: &[Vec<f64>], opts: &FitOptions, law: &str) -> Result<(Vec<OptResult>, OptResult)> {
    let screen = match opts.screen_ftol {
        Some(ftol) if ftol > opts.lbfgs.ftol => LbfgsOptions { ftol, ..opts.lbfgs },
        _ => opts.lbfgs,
    };
    let results = problem.run_starts_tracked(starts, &screen, opts.progress.as_ref().map(|h| (h, FitPhase::Screen)));
    let mut order: Vec<usize> = (0..results.len()).filter(|&i| results[i].f.is_finite()).collect();
    if order.is_empty() {
        return Err(all_failed(law, &results));
    }
    order.sort_by(|&a, &b| results[a].f.total_cmp(&results[b].f));
    order.truncate(opts.polish_top.max(1));
    let polish_starts: Vec<Vec<f64>> = order.iter().map(|&i| results[i].x.clone()).collect();
    let polished = problem.run_starts_tracked(&polish_starts, &opts.lbfgs, opts.progress.as_ref().map(|h| (h, FitPhase::Polish)));
    let mut best = results[order[0]].clone();
    for (k, p) in polished.into_iter().enumerate() {
        if p.f.is_finite() && p.f <= best.f {
            let first = &results[order[k]];
            best = OptResult { iterations: first.iterations + p.iterations, evaluations: first.evaluations + p.evaluations, ..p };
        }
    }
    // Restart from the best with fresh curvature memory while that still
    // helps: on nearly non-smooth objectives (the Huber likelihood at small
    // scale is L1-like) L-BFGS can stop early; on smooth ones this ends
    // after one short run.
    for _ in 0..opts.restarts {
        let again = problem.run_starts(std::slice::from_ref(&best.x), &opts.lbfgs).remove(0);
        let improved = again.f < best.f - opts.lbfgs.ftol * best.f.abs();
        if !improved {
            break;
        }
        best = OptResult { iterations: best.iterations + again.iterations, evaluations: best.evaluations + again.evaluations, ..again };
    }
    Ok((results, best))
}

fn all_failed(law: &str, results: &[OptResult]) -> LawError {
    LawError::FitFailed(format!(
        "all {} starts of law '{law}' gave a non-finite objective (check the data's scale and the law's bounds)",
        results.len()
    ))
}

/// Refit on `resamples` bootstrap resamples from the best free vector `x0`.
/// Returns full vectors (law params, then log_sigma for the MLE) of the
/// refits that finished with a finite objective, and the failure count.
pub(crate) fn bootstrap_refits(problem: &Problem, x0: &[f64], bo: &BootstrapOptions, lbfgs: &LbfgsOptions, progress: Option<&ProgressHook>) -> Result<(Vec<Vec<f64>>, usize)> {
    if bo.resamples == 0 {
        return Err(LawError::BadOption("bootstrap resamples must be > 0".into()));
    }
    if !(bo.level > 0.0 && bo.level < 1.0) {
        return Err(LawError::BadOption(format!("bootstrap level must be in (0, 1), got {}", bo.level)));
    }
    let n = problem.inputs.len();
    let tracker = progress.map(|hook| Tracker::begin(hook, FitPhase::Bootstrap, bo.resamples));
    let results: Vec<Option<Vec<f64>>> = (0..bo.resamples)
        .into_par_iter()
        .map(|r| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(bo.seed);
            rng.set_stream(r as u64);
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let sub = problem.resampled(&idx);
            let mut w = sub.work();
            let res = minimize_bounded(|x, g| sub.value_grad(&mut w, x, g), x0, &sub.lower, &sub.upper, lbfgs);
            if let Some(t) = &tracker {
                t.tick();
            }
            if res.f.is_finite() {
                let mut full = problem.expand(&res.x);
                if problem.mle {
                    full.push(res.x[problem.free.len()]);
                }
                Some(full)
            } else {
                None
            }
        })
        .collect();
    let failed = results.iter().filter(|r| r.is_none()).count();
    Ok((results.into_iter().flatten().collect(), failed))
}

/// Build estimates (value, optional interval) for parameters and derived
/// quantities from the best full vector and bootstrap samples.
pub(crate) fn estimates(problem: &Problem, full: &[f64], log_sigma: Option<f64>, samples: &[Vec<f64>], level: f64) -> (Vec<Estimate>, Vec<Estimate>) {
    let specs = problem.law.params();
    let interval_of = |get: &dyn Fn(&Vec<f64>) -> f64| -> Option<Interval> {
        if samples.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = samples.iter().map(get).filter(|x| x.is_finite()).collect();
        Some(percentile_interval(&mut v, level))
    };
    let mut params: Vec<Estimate> = specs
        .iter()
        .enumerate()
        .map(|(j, s)| Estimate {
            name: s.name.clone(),
            value: full[j],
            fixed: !problem.free.contains(&j),
            lower_bound: s.lower,
            upper_bound: s.upper,
            interval: if problem.free.contains(&j) { interval_of(&|p| p[j]) } else { None },
        })
        .collect();
    if let Some(ls) = log_sigma {
        let k = problem.n_params;
        params.push(Estimate {
            name: "log_sigma".into(),
            value: ls,
            fixed: false,
            lower_bound: -60.0,
            upper_bound: 10.0,
            interval: interval_of(&|p| p.get(k).copied().unwrap_or(f64::NAN)),
        });
    }
    let derived: Vec<Estimate> = problem
        .law
        .derived(full)
        .into_iter()
        .enumerate()
        .map(|(k, (name, value))| Estimate {
            name,
            value,
            fixed: false,
            lower_bound: f64::NEG_INFINITY,
            upper_bound: f64::INFINITY,
            interval: interval_of(&|p| problem.law.derived(&p[..problem.n_params]).get(k).map_or(f64::NAN, |d| d.1)),
        })
        .collect();
    (params, derived)
}

/// Information criteria of a fit at full parameters: Gaussian log-likelihood of the
/// residuals in the fit space (σ² = RSS/n) and AIC/BIC with k = free parameters + 1 (the
/// residual variance); the best start's optimiser statistics.
pub(crate) fn diagnostics(problem: &Problem, full: &[f64], best: &OptResult) -> Diagnostics {
    let res = problem.residuals(full);
    let n = res.len() as f64;
    let rss: f64 = res.iter().map(|r| r * r).sum();
    let k = (problem.free.len() + 1) as f64;
    let ll = -0.5 * n * ((2.0 * std::f64::consts::PI * rss / n).ln() + 1.0);
    let space = match problem.objective.space {
        Space::Log => "ln",
        Space::Linear => "loss",
    };
    Diagnostics {
        likelihood: format!("Gaussian likelihood of the {space} residuals, sigma^2 = RSS({space})/n; AIC/BIC with k = {} free parameters + 1", problem.free.len()),
        gaussian_log_likelihood: ll,
        aic: 2.0 * k - 2.0 * ll,
        bic: k * n.ln() - 2.0 * ll,
        iterations: best.iterations,
        evaluations: best.evaluations,
        projected_gradient: best.projected_grad,
        status: format!("{:?}", best.status),
    }
}

/// The warnings and optima of a fit (see [`crate::diagnose`]).
pub(crate) struct Assessment {
    pub warnings: Vec<FitWarning>,
    pub identifiability: Option<Identifiability>,
    pub optima: Vec<Optimum>,
    pub n_optima: usize,
    /// Indices of the starts whose endpoint lies in the best optimum's cluster.
    pub best_members: std::collections::HashSet<usize>,
}

/// Specs of the free coordinates as fitted (bound overrides applied; `log_sigma` last for the MLE).
fn free_specs(problem: &Problem) -> Vec<ParamSpec> {
    let specs = problem.law.params();
    let mut out: Vec<ParamSpec> = problem.free.iter().enumerate().map(|(k, &j)| ParamSpec::new(&specs[j].name, problem.lower[k], problem.upper[k])).collect();
    if problem.mle {
        let k = problem.free.len();
        out.push(ParamSpec::new("log_sigma", problem.lower[k], problem.upper[k]));
    }
    out
}

/// Bounds, identifiability, design and optima of the best fit `best` given the starts'
/// (screened) endpoints `results`. Competing optima are polished to `lbfgs`'s tolerance
/// before they are reported, so a start stopped early on a slope is not called an optimum.
pub(crate) fn assess(problem: &Problem, best: &OptResult, results: &[OptResult], lbfgs: &LbfgsOptions) -> Assessment {
    const SHOWN_OPTIMA: usize = 8;
    let specs = free_specs(problem);
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let mut warnings = crate::diagnose::bound_warnings(&best.x, &specs);
    let input_cols: Vec<(String, &[f64])> = problem.inputs.names().iter().enumerate().map(|(k, n)| (n.clone(), problem.inputs.col(k))).collect();
    warnings.extend(crate::diagnose::design_warnings(&input_cols, problem.free.len()));

    // Identifiability over the free law parameters (the MLE's scale is not a law parameter).
    let full = problem.expand(&best.x);
    let n = problem.inputs.len();
    let (mut pred, mut jac) = (vec![0.0; n], vec![0.0; n * problem.n_params]);
    match problem.objective.space {
        Space::Log => problem.law.log_jacobian_into(&full, &problem.inputs, &mut pred, &mut jac),
        Space::Linear => problem.law.jacobian_into(&full, &problem.inputs, &mut pred, &mut jac),
    }
    let nf = problem.free.len();
    let identifiability = if nf > 0 && jac.iter().all(|v| v.is_finite()) {
        let cols: Vec<Vec<f64>> = problem.free.iter().map(|&j| jac[j * n..(j + 1) * n].to_vec()).collect();
        let rss: f64 = problem.residuals(&full).iter().map(|r| r * r).sum();
        Some(crate::diagnose::identifiability(&cols, &best.x[..nf], &specs[..nf], &names[..nf], rss))
    } else {
        None
    };
    if let Some(id) = &identifiability {
        warnings.extend(crate::diagnose::identifiability_warnings(id));
    }

    // Optima: cluster the endpoints, polish the most promising other clusters, merge
    // those that polish into an optimum already kept.
    let scales = crate::diagnose::param_scales(&best.x, &specs);
    let endpoints: Vec<(&[f64], f64)> = results.iter().map(|r| (r.x.as_slice(), r.f)).collect();
    let clusters = crate::diagnose::cluster_optima(&best.x, best.f, &endpoints, &scales);
    let n_clusters = clusters.len();
    let reps: Vec<Vec<f64>> = clusters[1..].iter().take(SHOWN_OPTIMA).map(|c| c.0.clone()).collect();
    let polished = problem.run_starts(&reps, lbfgs);
    let mut kept: Vec<(Vec<f64>, f64, Vec<usize>)> = vec![clusters[0].clone()];
    let mut merged = 0;
    for (k, c) in clusters.into_iter().skip(1).enumerate() {
        let (x, f) = match polished.get(k) {
            Some(p) if p.f.is_finite() && p.f <= c.1 => (p.x.clone(), p.f),
            _ => (c.0.clone(), c.1),
        };
        match kept.iter_mut().find(|o| crate::diagnose::scaled_distance(&o.0, &x, &scales) <= crate::diagnose::SAME_OPTIMUM_DISTANCE) {
            Some(o) => {
                o.2.extend(c.2);
                merged += 1;
            }
            None => kept.push((x, f, c.2)),
        }
    }
    kept[1..].sort_by(|a, b| a.1.total_cmp(&b.1));
    let best_members: std::collections::HashSet<usize> = kept[0].2.iter().copied().collect();
    let optima: Vec<Optimum> = kept
        .iter()
        .take(SHOWN_OPTIMA)
        .map(|(x, f, members)| Optimum { objective: *f, starts: members.len(), params: names.iter().cloned().zip(x.iter().copied()).collect() })
        .collect();
    let flat = warnings.iter_mut().find(|w| w.kind == crate::report::WarningKind::NotIdentified);
    if let Some(w) = crate::diagnose::optima_warning(&optima, flat) {
        warnings.push(w);
    }
    Assessment { warnings, identifiability, optima, n_optima: n_clusters - merged, best_members }
}

/// The objective's reductions, compiled for AVX-512 or AVX2 when the CPU
/// has them through [`crate::simd::dispatch`] (the default x86-64 target
/// assumes only SSE2; these loops are ~30% of a Chinchilla grid fit,
/// measured with perf).
mod reduce {
    use crate::fastmath as fm;
    use crate::simd;

    pub fn huber(pred: &[f64], target: &[f64], inv_s: f64, delta: f64, psi: &mut [f64]) -> (f64, f64) {
        simd::dispatch(#[inline(always)] || fm::huber_terms(pred, target, inv_s, delta, psi))
    }

    pub fn dot(a: &[f64], b: &[f64]) -> f64 {
        simd::dispatch(#[inline(always)] || fm::dot(a, b))
    }
}
