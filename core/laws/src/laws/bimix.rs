//! BiMix (Ge, Ma, Chen, Li, Ding 2024, "Data Mixing Made Efficient: A
//! Bivariate Scaling Law for Language Model Pretraining", arXiv 2405.14908),
//! as coded in the authors' release: per domain i,
//! L_i(s, r_i) = (A_i/s^{a_i} + C_i) · B_i/r_i^{b_i}.
//!
//! A, B and C share one scale, so only A·B, C·B, a and b are identifiable.
//! The law is therefore parameterised directly in those four: the optimiser
//! never wanders along the unidentifiable ridge, and the report shows only
//! quantities that mean something. Fit one law per domain.

use super::power::min_max;
use crate::law::{cartesian_grid, Inputs, LawForm, Objective, ParamSpec};

/// L(s, r) = (AB/s^a + CB) / r^b. Parameters `[AB, CB, a, b]`; inputs `s`
/// (training step, in 10k steps in the paper) and `r` (the domain's mixture
/// proportion).
#[derive(Debug, Clone, Default)]
pub struct BiMix;

impl LawForm for BiMix {
    fn name(&self) -> &str {
        "bimix"
    }
    fn equation(&self) -> String {
        "L(s,r) = (A/s^a + C) * B/r^b = (AB/s^a + CB)/r^b, per domain; only AB, CB, a, b are identifiable".into()
    }
    fn citation(&self) -> String {
        "Ge, Ma, Chen, Li, Ding 2024, BiMix: A Bivariate Scaling Law for Language Model Pretraining (arXiv 2405.14908)"
            .into()
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("AB", 0.0, f64::INFINITY),
            ParamSpec::new("CB", 0.0, f64::INFINITY),
            ParamSpec::new("a", 0.0, 10.0),
            ParamSpec::new("b", -5.0, 5.0),
        ]
    }
    fn inputs(&self) -> Vec<String> {
        vec!["s".into(), "r".into()]
    }
    /// The release fits with `curve_fit` (least squares on raw losses).
    fn default_objective(&self) -> Objective {
        Objective::LSQ_LINEAR
    }
    /// Starts scaled to the data: CB near a fraction of the smallest loss,
    /// AB spanning the loss range, a few exponents.
    fn default_grid(&self, _inputs: &Inputs, loss: &[f64]) -> Vec<Vec<f64>> {
        let (ymin, ymax) = min_max(loss);
        let span = (ymax - ymin).max(1e-3 * ymax.abs().max(1.0));
        cartesian_grid(&[
            vec![0.5 * span, 2.0 * span, 8.0 * span],
            vec![0.5 * ymin, 0.9 * ymin],
            vec![0.2, 0.5, 1.0, 2.0],
            vec![0.0, 0.05, 0.2],
        ])
    }
    fn predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        let (ls, lr) = (inputs.log_col(0), inputs.log_col(1));
        for i in 0..out.len() {
            out[i] = (p[0] * (-p[2] * ls[i]).exp() + p[1]) * (-p[3] * lr[i]).exp();
        }
    }
    fn jacobian_into(&self, p: &[f64], inputs: &Inputs, pred: &mut [f64], jac: &mut [f64]) {
        let (ls, lr) = (inputs.log_col(0), inputs.log_col(1));
        for i in 0..pred.len() {
            let ts = (-p[2] * ls[i]).exp();
            let tr = (-p[3] * lr[i]).exp();
            let base = p[0] * ts + p[1];
            pred[i] = base * tr;
            let n = ls.len();
            jac[i] = ts * tr;
            jac[n + i] = tr;
            jac[2 * n + i] = -p[0] * ts * ls[i] * tr;
            jac[3 * n + i] = -pred[i] * lr[i];
        }
    }
}
