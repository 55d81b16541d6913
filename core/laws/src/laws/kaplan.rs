//! Kaplan et al. 2020, "Scaling Laws for Neural Language Models"
//! (arXiv 2001.08361), eq. (1.5): the coupled N–D form with no irreducible
//! term. Fitted with ln N_c and ln D_c as parameters because N_c, D_c are
//! ~1e13 and would otherwise dwarf the exponents in the optimiser's scaling.

use crate::fastmath as fm;
use crate::law::{cartesian_grid, Inputs, LawForm, ParamSpec};

/// L(N, D) = [(N_c/N)^{α_N/α_D} + D_c/D]^{α_D}, i.e.
/// ln L = α_D · LSE((α_N/α_D)(ln N_c − ln N), ln D_c − ln D).
/// Parameters `[log_Nc, log_Dc, alpha_N, alpha_D]`; inputs `N`, `D`.
#[derive(Debug, Clone, Default)]
pub struct Kaplan;

impl LawForm for Kaplan {
    fn name(&self) -> &str {
        "kaplan"
    }
    fn equation(&self) -> String {
        "L(N,D) = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D, with log_Nc = ln Nc, log_Dc = ln Dc".into()
    }
    fn citation(&self) -> String {
        "Kaplan et al. 2020, Scaling Laws for Neural Language Models (arXiv 2001.08361), eq. 1.5".into()
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::free("log_Nc"),
            ParamSpec::free("log_Dc"),
            ParamSpec::new("alpha_N", 1e-4, 5.0),
            ParamSpec::new("alpha_D", 1e-4, 5.0),
        ]
    }
    fn inputs(&self) -> Vec<String> {
        vec!["N".into(), "D".into()]
    }
    /// Around Kaplan's published values (N_c = 8.8e13, D_c = 5.4e13,
    /// α_N = 0.076, α_D = 0.095), spread wide enough for other setups.
    fn default_grid(&self, _inputs: &Inputs, _loss: &[f64]) -> Vec<Vec<f64>> {
        let logs = vec![15.0, 20.0, 25.0, 30.0, 35.0];
        let exps = vec![0.05, 0.1, 0.3, 0.6];
        cartesian_grid(&[logs.clone(), logs, exps.clone(), exps])
    }
    fn predict_into(&self, params: &[f64], inputs: &Inputs, out: &mut [f64]) {
        self.log_predict_into(params, inputs, out);
        for v in out.iter_mut() {
            *v = v.exp();
        }
    }
    fn log_predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        let (ln_n, ln_d) = (inputs.log_col(0), inputs.log_col(1));
        crate::simd::dispatch(#[inline(always)] || kernel::<false>(p, ln_n, ln_d, out, &mut []));
    }
    /// Analytic, through the vectorised [`kernel`].
    fn log_jacobian_into(&self, p: &[f64], inputs: &Inputs, logpred: &mut [f64], jac: &mut [f64]) {
        let (ln_n, ln_d) = (inputs.log_col(0), inputs.log_col(1));
        crate::simd::dispatch(#[inline(always)] || kernel::<true>(p, ln_n, ln_d, logpred, jac));
    }
    fn jacobian_into(&self, p: &[f64], inputs: &Inputs, pred: &mut [f64], jac: &mut [f64]) {
        self.log_jacobian_into(p, inputs, pred, jac);
        super::log_to_linear(pred, jac, 4);
    }
    fn derived(&self, p: &[f64]) -> Vec<(String, f64)> {
        vec![("Nc".into(), p[0].exp()), ("Dc".into(), p[1].exp())]
    }
}

/// ln L̂ = α_D·LSE((α_N/α_D)(ln N_c − ln N), ln D_c − ln D) at every point
/// and, when `JAC`, its four Jacobian columns; branch-free over
/// [`fm`]'s `exp`/`ln` so [`crate::simd::dispatch`] can vectorise it.
#[inline(always)]
fn kernel<const JAC: bool>(p: &[f64], ln_n: &[f64], ln_d: &[f64], logpred: &mut [f64], jac: &mut [f64]) {
    let n = logpred.len();
    let (ln_n, ln_d) = (&ln_n[..n], &ln_d[..n]);
    let ratio = p[2] / p[3];
    let [c0, c1, c2, c3] = crate::simd::columns::<4>(jac, if JAC { n } else { 0 });
    for i in 0..n {
        let u1 = ratio * (p[0] - ln_n[i]);
        let u2 = p[1] - ln_d[i];
        let m = u1.max(u2);
        let (x1, x2) = (fm::exp(u1 - m), fm::exp(u2 - m));
        let s = x1 + x2;
        let lse = m + fm::ln(s);
        logpred[i] = p[3] * lse;
        if JAC {
            let (w1, w2) = (x1 / s, x2 / s);
            c0[i] = p[2] * w1;
            c1[i] = p[3] * w2;
            c2[i] = w1 * (p[0] - ln_n[i]);
            c3[i] = lse - w1 * u1;
        }
    }
}
