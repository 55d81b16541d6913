//! Evaluating a law at given parameters: predictions, residuals and goodness-of-fit
//! metrics, each named by the scale it is computed on. Used for a published law on new
//! data (`dctk fit --eval`, Rhai `evaluate`), and by every fit report, so "R²" or "RSS"
//! means the same thing wherever it is printed.
//!
//! Metrics, with ŷ the prediction and y the observed loss over n points:
//! - `r2_loss`: coefficient of determination on the *loss* scale,
//!   1 − Σ(y − ŷ)² / Σ(y − ȳ)², whatever space the fit used (NaN when every y is equal);
//! - `rss_loss`: Σ(ŷ − y)² on the loss scale; `rss_fit_space`: Σ r² with r the residual
//!   in the objective's space (ln ŷ − ln y for a log-space objective);
//! - `mean_abs_rel_error` (ARE, Choshen et al. 2024's metric): mean |ŷ − y|/y;
//!   `max_abs_rel_error`: its maximum; `mean_rel_error`: mean (ŷ − y)/y, the signed bias;
//! - `rmse_loss`: √(rss_loss / n);
//! - `objective_value`: the objective (e.g. Σ Huber_δ of ln residuals), as a fit minimises it.

use crate::data::Points;
use crate::error::{LawError, Result};
use crate::law::{LawForm, Loss, Objective, Space};
use serde::{Deserialize, Serialize};

/// Goodness-of-fit metrics of predictions against observed losses (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// R² on the loss scale.
    pub r2_loss: f64,
    /// Σ(ŷ − y)² on the loss scale.
    pub rss_loss: f64,
    /// Σ r² in the objective's residual space (see `fit_space`).
    pub rss_fit_space: f64,
    /// `ln` (residuals ln ŷ − ln y) or `loss` (residuals ŷ − y).
    pub fit_space: FitSpace,
    /// √(rss_loss / n).
    pub rmse_loss: f64,
    /// ARE: mean |ŷ − y|/y.
    pub mean_abs_rel_error: f64,
    /// max |ŷ − y|/y.
    pub max_abs_rel_error: f64,
    /// Mean (ŷ − y)/y: positive when the law over-predicts on average.
    pub mean_rel_error: f64,
}

/// The space residuals of the objective are taken in, as reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitSpace {
    /// r = ln ŷ − ln y.
    Ln,
    /// r = ŷ − y.
    Loss,
}

impl From<Space> for FitSpace {
    fn from(s: Space) -> FitSpace {
        match s {
            Space::Log => FitSpace::Ln,
            Space::Linear => FitSpace::Loss,
        }
    }
}

impl Metrics {
    /// Metrics of `predicted` against `observed` (same length, observed > 0 for the
    /// relative errors), with `space` naming the objective's residual space.
    pub fn of(predicted: &[f64], observed: &[f64], space: Space) -> Metrics {
        let n = observed.len().min(predicted.len());
        let nf = n as f64;
        let mean = observed[..n].iter().sum::<f64>() / nf;
        let (mut rss, mut tss, mut rss_fit, mut are, mut max_are, mut mre) = (0.0, 0.0, 0.0, 0.0, 0.0f64, 0.0);
        for i in 0..n {
            let (p, y) = (predicted[i], observed[i]);
            rss += (p - y) * (p - y);
            tss += (y - mean) * (y - mean);
            let r = match space {
                Space::Log => p.ln() - y.ln(),
                Space::Linear => p - y,
            };
            rss_fit += r * r;
            let rel = (p - y) / y;
            are += rel.abs();
            max_are = max_are.max(rel.abs());
            mre += rel;
        }
        Metrics {
            r2_loss: if tss > 0.0 { 1.0 - rss / tss } else { f64::NAN },
            rss_loss: rss,
            rss_fit_space: rss_fit,
            fit_space: space.into(),
            rmse_loss: (rss / nf).sqrt(),
            mean_abs_rel_error: are / nf,
            max_abs_rel_error: max_are,
            mean_rel_error: mre / nf,
        }
    }

    /// One line naming every metric and its scale.
    pub fn to_text(&self) -> String {
        let space = match self.fit_space {
            FitSpace::Ln => "ln",
            FitSpace::Loss => "loss",
        };
        format!(
            "R²(loss) {:.6}  RSS(loss) {:.6e}  RSS({space} residuals) {:.6e}  RMSE(loss) {:.4e}  ARE mean|ŷ-y|/y {:.4e}  max {:.4e}  mean (ŷ-y)/y {:+.4e}",
            self.r2_loss, self.rss_loss, self.rss_fit_space, self.rmse_loss, self.mean_abs_rel_error, self.max_abs_rel_error, self.mean_rel_error
        )
    }
}

/// A law evaluated at fixed parameters on a set of points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub law: String,
    pub equation: String,
    /// The objective, described (e.g. `huber(delta=0.001) on ln residuals`).
    pub objective: String,
    /// Its value at `params` on these points.
    pub objective_value: f64,
    /// The parameters evaluated, by name, in the law's order.
    pub params: Vec<(String, f64)>,
    pub n_points: usize,
    /// Input names (the law's, in order).
    pub inputs: Vec<String>,
    /// Source row number of each point (1-based data rows, as in errors).
    pub rows: Vec<usize>,
    pub observed: Vec<f64>,
    pub predicted: Vec<f64>,
    /// ŷ − y on the loss scale.
    pub residuals: Vec<f64>,
    pub metrics: Metrics,
}

impl Evaluation {
    /// A text report: the law, the parameters, the objective and the metrics.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        s += &format!("law        {}\n", self.law);
        s += &format!("equation   {}\n", self.equation);
        s += &format!("evaluated  at given parameters on {} points (nothing fitted)\n", self.n_points);
        s += &format!("objective  {} = {:.10e}\n\n", self.objective, self.objective_value);
        for (name, v) in &self.params {
            s += &format!("{name:<20} {v:>16.8e}\n");
        }
        s += &format!("\n{}\n", self.metrics.to_text());
        s
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// The objective Σ ρ(r_i) of residuals `r` (no MLE scale term).
pub fn objective_of_residuals(objective: &Objective, residuals: &[f64]) -> f64 {
    residuals.iter().map(|&r| objective.rho_psi(r).0).sum()
}

/// `law` at full parameters `params` (in the law's order) on `points`: predictions,
/// residuals, metrics and the objective (`objective` `None`: the law's default).
/// Errors name the parameter count, or the column and row of bad input.
pub fn evaluate(law: &dyn LawForm, points: &Points, objective: Option<Objective>, params: &[f64]) -> Result<Evaluation> {
    let specs = law.params();
    if params.len() != specs.len() {
        return Err(LawError::BadOption(format!(
            "law '{}' has {} parameters ({}), got {} values",
            law.name(),
            specs.len(),
            specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            params.len()
        )));
    }
    for (s, v) in specs.iter().zip(params) {
        if !v.is_finite() {
            return Err(LawError::BadParam { name: s.name.clone(), message: format!("value {v} is not finite") });
        }
    }
    let objective = objective.unwrap_or_else(|| law.default_objective());
    if let Loss::Huber { delta } = objective.loss {
        if !(delta > 0.0 && delta.is_finite()) {
            return Err(LawError::BadOption(format!("Huber delta must be > 0, got {delta}")));
        }
    }
    if points.is_empty() {
        return Err(LawError::TooFewPoints { points: 0, params: 0 });
    }
    let inputs = points.inputs_for(law, 0, objective.space == Space::Log)?;
    let predicted = law.predict(params, &inputs);
    if let Some(i) = predicted.iter().position(|p| !p.is_finite() || (objective.space == Space::Log && *p <= 0.0)) {
        return Err(LawError::BadRow {
            row: points.rows[i],
            message: format!("the law predicts {} here at these parameters", predicted[i]),
        });
    }
    let fit_residuals: Vec<f64> = match objective.space {
        Space::Log => predicted.iter().zip(&points.loss).map(|(p, y)| p.ln() - y.ln()).collect(),
        Space::Linear => predicted.iter().zip(&points.loss).map(|(p, y)| p - y).collect(),
    };
    Ok(Evaluation {
        law: law.name().into(),
        equation: law.equation(),
        objective: objective.describe(),
        objective_value: objective_of_residuals(&objective, &fit_residuals),
        params: specs.iter().zip(params).map(|(s, v)| (s.name.clone(), *v)).collect(),
        n_points: points.len(),
        inputs: law.inputs(),
        rows: points.rows.clone(),
        metrics: Metrics::of(&predicted, &points.loss, objective.space),
        residuals: predicted.iter().zip(&points.loss).map(|(p, y)| p - y).collect(),
        observed: points.loss.clone(),
        predicted,
    })
}

/// Parameters given by name (a published law's table) as the law's full vector; every
/// parameter must be named once, and no unknown name is accepted.
pub fn params_by_name(law: &dyn LawForm, named: &[(String, f64)]) -> Result<Vec<f64>> {
    let specs = law.params();
    let names = || specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
    for (name, _) in named {
        if !specs.iter().any(|s| &s.name == name) {
            return Err(LawError::UnknownParam { name: name.clone(), law: law.name().into(), available: names() });
        }
    }
    specs
        .iter()
        .map(|s| {
            named.iter().find(|(n, _)| n == &s.name).map(|(_, v)| *v).ok_or_else(|| LawError::BadParam {
                name: s.name.clone(),
                message: format!("no value given (law '{}' needs all of: {})", law.name(), names()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laws::{Chinchilla, PowerLaw};

    #[test]
    fn generating_parameters_give_r2_one_and_zero_objective() {
        let law = Chinchilla;
        let p = [6.0, 7.0, 0.5, 0.34, 0.28];
        let n: Vec<f64> = (0..20).map(|i| 1e7 * 1.5f64.powi(i)).collect();
        let d: Vec<f64> = (0..20).map(|i| 2e9 * 1.3f64.powi(i % 7)).collect();
        let probe = Points::for_prediction(vec![("N".into(), n.clone()), ("D".into(), d.clone())]).unwrap();
        let y = law.predict(&p, &probe.law_inputs(&law).unwrap());
        let points = Points::from_columns(vec![("N".into(), n), ("D".into(), d)], y).unwrap();
        let e = evaluate(&law, &points, None, &p).unwrap();
        assert!((e.metrics.r2_loss - 1.0).abs() < 1e-12, "{}", e.metrics.r2_loss);
        assert!(e.objective_value < 1e-20 && e.metrics.mean_abs_rel_error < 1e-12);
        assert_eq!(e.metrics.fit_space, FitSpace::Ln);
        let wrong = evaluate(&law, &points, None, &[6.0, 7.0, 0.5, 0.30, 0.28]).unwrap();
        assert!(wrong.metrics.r2_loss < 1.0 && wrong.metrics.mean_rel_error > 0.0);
    }

    #[test]
    fn parameters_by_name_must_be_complete_and_known() {
        let law = PowerLaw;
        let names: Vec<String> = law.params().iter().map(|s| s.name.clone()).collect();
        let mut named: Vec<(String, f64)> = names.iter().map(|n| (n.clone(), 1.0)).collect();
        assert_eq!(params_by_name(&law, &named).unwrap().len(), names.len());
        named.push(("zeta".into(), 1.0));
        assert!(params_by_name(&law, &named).unwrap_err().to_string().contains("zeta"));
        named.truncate(names.len() - 1);
        let err = params_by_name(&law, &named).unwrap_err().to_string();
        assert!(err.contains(names.last().unwrap()), "{err}");
    }
}
