//! The fit report: a serialisable record of a fit (parameters with bounds
//! and intervals, derived quantities, objective, start statistics,
//! diagnostics), its text table and JSON form, and the two SVG plots
//! (residuals, fitted curve). Plots are written atomically (temp file in the
//! same directory, then rename) so a reader never sees half a file.

use crate::error::{LawError, Result};
use crate::fit::{diagnostics, estimates, Fit, FitOptions, Method, Problem};
use crate::law::Space;
use crate::optim::OptResult;
use plotters::prelude::*;
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

#[allow(clippy::too_many_arguments)]
pub(crate) fn build_report(
    problem: &Problem,
    full: &[f64],
    best: &OptResult,
    samples: &[Vec<f64>],
    opts: &FitOptions,
    n_starts: usize,
    n_converged: usize,
    n_failed: usize,
    bootstrap: Option<BootstrapSummary>,
    elapsed_s: f64,
) -> FitReport {
    let level = opts.bootstrap.map_or(0.95, |b| b.level);
    let log_sigma = if problem.mle { Some(best.x[problem.free.len()]) } else { None };
    let (params, derived) = estimates(problem, full, log_sigma, samples, level);
    let observed: Vec<f64> = match problem.objective.space {
        Space::Log => problem.target.iter().map(|t| t.exp()).collect(),
        Space::Linear => problem.target.clone(),
    };
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
        diagnostics: diagnostics(problem, full, &observed, best),
        bootstrap,
        elapsed_s,
        inputs: problem.law.inputs(),
        fitted: problem.law.predict(full, &problem.inputs),
        observed,
    }
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

/// Write `contents` to `path` atomically and durably ([`dctk_fs::write_atomic`]).
pub fn write_atomic(path: &std::path::Path, contents: &[u8]) -> Result<()> {
    dctk_fs::write_atomic(path, contents).map_err(|source| LawError::Io { path: path.display().to_string(), source })
}

fn plot_err(path: &std::path::Path) -> impl Fn(String) -> LawError + '_ {
    move |message| LawError::Plot { path: path.display().to_string(), message }
}

fn range_of(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-12 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

impl Fit {
    /// Residual plot: residual in the fit space (ln L̂ − ln L, or L̂ − L)
    /// against the first input on a log axis.
    pub fn write_residual_svg(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        let err = plot_err(path);
        let x_name = self.report.inputs.first().ok_or_else(|| err("the law has no inputs to plot against".into()))?;
        let x = self.points.column(x_name)?.to_vec();
        let log_space = self.report.objective.contains("ln residuals");
        let res: Vec<f64> = self
            .report
            .fitted
            .iter()
            .zip(&self.report.observed)
            .map(|(f, o)| if log_space { f.ln() - o.ln() } else { f - o })
            .collect();
        let (x0, x1) = range_of(x.iter().map(|v| v.max(1e-300).log10()));
        let (y0, y1) = range_of(res.iter().copied().chain([0.0]));
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{}: residuals", self.report.law), ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc(format!("log10 {x_name}"))
                .y_desc(if log_space { "ln fitted - ln observed" } else { "fitted - observed" })
                .draw()
                .map_err(|e| err(e.to_string()))?;
            chart.draw_series(LineSeries::new([(x0, 0.0), (x1, 0.0)], BLACK)).map_err(|e| err(e.to_string()))?;
            chart
                .draw_series(x.iter().zip(&res).map(|(xv, r)| Circle::new((xv.log10(), *r), 3, BLUE.filled())))
                .map_err(|e| err(e.to_string()))?;
            root.present().map_err(|e| err(e.to_string()))?;
        }
        write_atomic(path, svg.as_bytes())
    }

    /// Fitted-curve plot: observed losses (dots) against the first input on
    /// a log axis, with the fitted law drawn as lines. When the law has more
    /// inputs, one line per quantile (10, 30, 50, 70, 90%) of the second
    /// input, the remaining inputs held at their medians.
    pub fn write_curve_svg(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        let err = plot_err(path);
        let names = &self.report.inputs;
        let x_name = names.first().ok_or_else(|| err("the law has no inputs to plot against".into()))?;
        let x = self.points.column(x_name)?.to_vec();
        let (lx0, lx1) = range_of(x.iter().map(|v| v.max(1e-300).log10()));
        let quantile = |col: &[f64], q: f64| -> f64 {
            let mut v = col.to_vec();
            v.sort_by(|a, b| a.total_cmp(b));
            v[((v.len() - 1) as f64 * q).round() as usize]
        };
        let slices: Vec<f64> = if names.len() > 1 { vec![0.1, 0.3, 0.5, 0.7, 0.9] } else { vec![0.5] };
        let params = self.params();
        let grid: Vec<f64> = (0..=100).map(|i| lx0 + (lx1 - lx0) * i as f64 / 100.0).collect();
        let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for &q in &slices {
            let mut cols = vec![grid.iter().map(|l| 10f64.powf(*l)).collect::<Vec<f64>>()];
            let mut label = String::from("fit");
            for (k, name) in names.iter().enumerate().skip(1) {
                let col = self.points.column(name)?;
                let v = quantile(col, if k == 1 { q } else { 0.5 });
                if k == 1 {
                    label = format!("{name} = {v:.3e}");
                }
                cols.push(vec![v; grid.len()]);
            }
            let inputs = crate::law::Inputs::new(names.clone(), cols);
            let y = self.law.predict(&params, &inputs);
            curves.push((label, grid.iter().copied().zip(y).filter(|(_, y)| y.is_finite()).collect()));
        }
        let (y0, y1) = range_of(self.report.observed.iter().copied());
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{}: fitted curve", self.report.law), ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(lx0..lx1, y0..y1)
                .map_err(|e| err(e.to_string()))?;
            chart.configure_mesh().x_desc(format!("log10 {x_name}")).y_desc("loss").draw().map_err(|e| err(e.to_string()))?;
            chart
                .draw_series(x.iter().zip(&self.report.observed).map(|(xv, y)| Circle::new((xv.log10(), *y), 3, BLACK.filled())))
                .map_err(|e| err(e.to_string()))?;
            for (i, (label, pts)) in curves.into_iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let clipped: Vec<(f64, f64)> = pts.into_iter().filter(|(_, y)| *y >= y0 && *y <= y1).collect();
                chart
                    .draw_series(LineSeries::new(clipped, color.stroke_width(2)))
                    .map_err(|e| err(e.to_string()))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(|e| err(e.to_string()))?;
            root.present().map_err(|e| err(e.to_string()))?;
        }
        write_atomic(path, svg.as_bytes())
    }
}
