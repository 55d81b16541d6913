//! The data-constrained mixing law — **this project's extension**, not a published law. It
//! joins BiMix's per-domain form (Ge, Ma, Chen, Li, Ding 2024, arXiv 2405.14908, as coded in
//! the authors' release) with Muennighoff et al.'s diminishing value of repeated tokens
//! (2023, arXiv 2305.16264, eq. 5: D' = U + U·R_D*·(1 − exp(−R_D/R_D*))), per domain i:
//!
//! ```text
//! L_i(s, r_i, e_i) = (AB_i/s^{a_i} + CB_i) · (r_i·η_i)^{−b_i}
//! η_i = D'_i / D_i = (1 + R*_i·(1 − exp(−(e_i − 1)/R*_i))) / e_i   for e_i > 1, else 1
//! ```
//!
//! where e_i is the number of epochs of domain i served by the evaluation (its served tokens
//! r_i·D over its unique tokens U_i). r_i·η_i is then the domain's share of the training
//! tokens counted in *effective* tokens, D'_i/D: BiMix's proportion with repeated tokens
//! discounted as Muennighoff's law discounts them. With no repetition (every e_i ≤ 1) the law
//! is BiMix exactly; as R*_i → ∞ repeated tokens are worth fresh ones.
//!
//! What the form says, and what it does not:
//! - It is per domain (one R*_i per domain, fitted with the domain's other four parameters;
//!   fix `R_star` to share one value). R*_i is identified only by runs in which domain i is
//!   repeated; the fitter's identifiability warnings say when it is not.
//! - The step term still improves with s however repeated the data is. At a fixed mixture the
//!   effective share falls like U_i(1 + R*_i)/D once D'_i saturates, so the law predicts a
//!   loss that falls, reaches a minimum and then rises with total tokens: an optimum number of
//!   epochs per mixture, which is the question a data-constrained mixture has to answer. A
//!   plateau (Muennighoff's own shape) is not representable.
//! - Other domains' repetition enters domain i's loss only through the shared step s.

use crate::law::{cartesian_grid, Inputs, LawForm, Objective, ParamSpec};

/// L(s, r, e) = (AB/s^a + CB)·(r·η(e; R*))^{−b}. Parameters `[AB, CB, a, b, R_star]`; inputs
/// `s` (training step), `r` (the domain's proportion) and `e` (the domain's epochs served).
#[derive(Debug, Clone, Default)]
pub struct BiMixDataConstrained;

/// Muennighoff's effective fraction of served tokens, η(e) = D'/D, and ∂η/∂R*.
#[inline]
pub fn effective_fraction(epochs: f64, r_star: f64) -> (f64, f64) {
    if epochs <= 1.0 {
        return (1.0, 0.0);
    }
    let repeats = epochs - 1.0;
    let decay = (-repeats / r_star).exp();
    let eta = (1.0 + r_star * (1.0 - decay)) / epochs;
    let d_eta = ((1.0 - decay) - (repeats / r_star) * decay) / epochs;
    (eta, d_eta)
}

impl LawForm for BiMixDataConstrained {
    fn name(&self) -> &str {
        "bimix_dc"
    }
    fn equation(&self) -> String {
        "L(s,r,e) = (AB/s^a + CB) * (r*eta)^(-b), eta = (1 + R_star*(1 - exp(-(e-1)/R_star)))/e for e > 1, else 1 (dctk's data-constrained BiMix)".into()
    }
    fn citation(&self) -> String {
        "dctk's extension (not published): BiMix, Ge et al. 2024 (arXiv 2405.14908), with Muennighoff et al. 2023's effective data (arXiv 2305.16264, eq. 5) per domain".into()
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("AB", 0.0, f64::INFINITY),
            ParamSpec::new("CB", 0.0, f64::INFINITY),
            ParamSpec::new("a", 0.0, 10.0),
            ParamSpec::new("b", -5.0, 5.0),
            ParamSpec::new("R_star", 1e-3, 1e4),
        ]
    }
    fn inputs(&self) -> Vec<String> {
        vec!["s".into(), "r".into(), "e".into()]
    }
    /// Least squares on raw losses, as BiMix's release fits.
    fn default_objective(&self) -> Objective {
        Objective::LSQ_LINEAR
    }
    /// BiMix's starts × three decay constants.
    fn default_grid(&self, _inputs: &Inputs, loss: &[f64]) -> Vec<Vec<f64>> {
        let mut axes = super::bimix::start_axes(loss);
        axes.push(vec![1.0, 5.0, 25.0]);
        cartesian_grid(&axes)
    }
    fn predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        let (s, r, e) = (inputs.col(0), inputs.col(1), inputs.col(2));
        for i in 0..out.len() {
            let (eta, _) = effective_fraction(e[i], p[4]);
            out[i] = (p[0] * s[i].powf(-p[2]) + p[1]) * (r[i] * eta).powf(-p[3]);
        }
    }
    /// Analytic; the plain scalar loop (the law is fitted per domain to at most a few hundred
    /// points, so the SIMD kernels BiMix uses would not show).
    fn jacobian_into(&self, p: &[f64], inputs: &Inputs, pred: &mut [f64], jac: &mut [f64]) {
        let n = pred.len();
        let (s, r, e) = (inputs.col(0), inputs.col(1), inputs.col(2));
        for i in 0..n {
            let (eta, d_eta) = effective_fraction(e[i], p[4]);
            let ts = s[i].powf(-p[2]);
            let x = r[i] * eta;
            let tx = x.powf(-p[3]);
            let y = (p[0] * ts + p[1]) * tx;
            pred[i] = y;
            jac[i] = ts * tx;
            jac[n + i] = tx;
            jac[2 * n + i] = -p[0] * ts * s[i].ln() * tx;
            jac[3 * n + i] = -y * x.ln();
            jac[4 * n + i] = -p[3] * y * d_eta / eta;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs::new(vec!["s".into(), "r".into(), "e".into()], vec![vec![1.0, 3.0, 10.0, 20.0], vec![0.1, 0.3, 0.05, 0.6], vec![0.4, 1.0, 6.0, 40.0]])
    }

    /// Without repetition the law is BiMix; with it, η is Muennighoff's D'/D.
    #[test]
    fn reduces_to_bimix_without_repetition_and_discounts_repeats_as_muennighoff() {
        let (eta, _) = effective_fraction(0.7, 5.0);
        assert_eq!(eta, 1.0);
        let (u, d, rs) = (1000.0f64, 9000.0f64, 15.387756f64);
        let d_prime = u + u * rs * (1.0 - (-(d / u - 1.0) / rs).exp());
        assert!((effective_fraction(d / u, rs).0 - d_prime / d).abs() < 1e-15);
        let law = BiMixDataConstrained;
        let one = Inputs::new(vec!["s".into(), "r".into(), "e".into()], vec![vec![4.0], vec![0.2], vec![0.9]]);
        let bimix = Inputs::new(vec!["s".into(), "r".into()], vec![vec![4.0], vec![0.2]]);
        let p = [2.0, 1.5, 0.4, 0.1];
        let a = law.predict(&[p[0], p[1], p[2], p[3], 3.0], &one)[0];
        let b = super::super::BiMix.predict(&p, &bimix)[0];
        assert!((a - b).abs() < 1e-9 * b, "{a} vs {b}");
    }

    #[test]
    fn analytic_jacobian_matches_central_differences() {
        let law = BiMixDataConstrained;
        let x = inputs();
        let p = [2.0, 1.5, 0.4, 0.1, 4.0];
        let n = x.len();
        let (mut pred, mut jac) = (vec![0.0; n], vec![0.0; n * 5]);
        law.jacobian_into(&p, &x, &mut pred, &mut jac);
        for k in 0..5 {
            let h = 1e-6 * p[k].abs().max(1e-3);
            let (mut up, mut dn) = (p, p);
            up[k] += h;
            dn[k] -= h;
            let (fu, fd) = (law.predict(&up, &x), law.predict(&dn, &x));
            for i in 0..n {
                let fd_col = (fu[i] - fd[i]) / (2.0 * h);
                assert!((jac[k * n + i] - fd_col).abs() < 1e-6 * (1.0 + fd_col.abs()), "param {k} point {i}: {} vs {fd_col}", jac[k * n + i]);
            }
        }
    }
}
