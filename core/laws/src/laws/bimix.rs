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
        cartesian_grid(&start_axes(loss))
    }
    fn predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        let (ls, lr) = (inputs.log_col(0), inputs.log_col(1));
        crate::simd::dispatch(#[inline(always)] || kernel::<false>(p, ls, lr, out, &mut []));
    }
    /// Analytic, through the vectorised [`kernel`].
    fn jacobian_into(&self, p: &[f64], inputs: &Inputs, pred: &mut [f64], jac: &mut [f64]) {
        let (ls, lr) = (inputs.log_col(0), inputs.log_col(1));
        crate::simd::dispatch(#[inline(always)] || kernel::<true>(p, ls, lr, pred, jac));
    }
}

/// The starting values of AB, CB, a and b, scaled to the data (shared with the
/// data-constrained form).
pub(crate) fn start_axes(loss: &[f64]) -> Vec<Vec<f64>> {
    let (ymin, ymax) = min_max(loss);
    let span = (ymax - ymin).max(1e-3 * ymax.abs().max(1.0));
    vec![vec![0.5 * span, 2.0 * span, 8.0 * span], vec![0.5 * ymin, 0.9 * ymin], vec![0.2, 0.5, 1.0, 2.0], vec![0.0, 0.05, 0.2]]
}

/// L̂ = (A·e^{−α ln s} + B)·e^{−β ln r} at every point and, when `JAC`, its
/// four Jacobian columns; branch-free over [`crate::fastmath`] so it vectorises.
#[inline(always)]
fn kernel<const JAC: bool>(p: &[f64], ls: &[f64], lr: &[f64], pred: &mut [f64], jac: &mut [f64]) {
    let n = pred.len();
    let (ls, lr) = (&ls[..n], &lr[..n]);
    let [c0, c1, c2, c3] = crate::simd::columns::<4>(jac, if JAC { n } else { 0 });
    for i in 0..n {
        let ts = crate::fastmath::exp(-p[2] * ls[i]);
        let tr = crate::fastmath::exp(-p[3] * lr[i]);
        let base = p[0] * ts + p[1];
        let y = base * tr;
        pred[i] = y;
        if JAC {
            c0[i] = ts * tr;
            c1[i] = tr;
            c2[i] = -p[0] * ts * ls[i] * tr;
            c3[i] = -y * lr[i];
        }
    }
}
