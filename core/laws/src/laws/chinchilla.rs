//! Chinchilla Approach 3 (Hoffmann et al. 2022, "Training Compute-Optimal
//! Large Language Models", arXiv 2203.15556, eq. 2), in the log-sum-exp
//! parameterisation used by Epoch AI's replication (Besiroglu et al. 2024,
//! "Chinchilla Scaling: A replication attempt", arXiv 2404.10102).
//!
//! Fitting in (a, b, e) = (ln A, ln B, ln E) keeps the three terms on one
//! scale and makes ln L̂ a smooth log-sum-exp, whose gradient is a softmax:
//! that is what makes the 4,500-start grid cheap.

use crate::fastmath as fm;
use crate::lanes::{self, HuberLog};
use crate::law::{cartesian_grid, Inputs, LawForm, ParamSpec};

/// L(N, D) = E + A/N^α + B/D^β, fitted as ln L̂ = LSE(a − α ln N, b − β ln D, e).
/// Parameters `[a, b, e, alpha, beta]`; inputs `N` (parameters) and `D`
/// (training tokens).
#[derive(Debug, Clone, Default)]
pub struct Chinchilla;

/// ln(e^u1 + e^u2 + e^u3) and the softmax weights (w1, w2, w3).
#[inline(always)]
pub(crate) fn lse3(u1: f64, u2: f64, u3: f64) -> (f64, f64, f64, f64) {
    let m = u1.max(u2).max(u3);
    let (x1, x2, x3) = ((u1 - m).exp(), (u2 - m).exp(), (u3 - m).exp());
    let s = x1 + x2 + x3;
    let inv = 1.0 / s;
    (m + s.ln(), x1 * inv, x2 * inv, x3 * inv)
}

impl Chinchilla {
    /// Natural-unit parameters (A, B, E, α, β) from the fitted vector.
    pub fn natural(params: &[f64]) -> (f64, f64, f64, f64, f64) {
        (params[0].exp(), params[1].exp(), params[2].exp(), params[3], params[4])
    }
}

impl LawForm for Chinchilla {
    fn name(&self) -> &str {
        "chinchilla"
    }
    fn equation(&self) -> String {
        "L(N,D) = E + A/N^alpha + B/D^beta, fitted as ln L = LSE(a - alpha ln N, b - beta ln D, e), A=e^a, B=e^b, E=e^e".into()
    }
    fn citation(&self) -> String {
        "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models (arXiv 2203.15556), Approach 3; \
         LSE/Huber fit as replicated by Besiroglu et al. 2024 (Epoch AI, arXiv 2404.10102)"
            .into()
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::free("a"),
            ParamSpec::free("b"),
            ParamSpec::free("e"),
            ParamSpec::new("alpha", 0.0, f64::INFINITY),
            ParamSpec::new("beta", 0.0, f64::INFINITY),
        ]
    }
    fn inputs(&self) -> Vec<String> {
        vec!["N".into(), "D".into()]
    }
    /// The 4,500-start grid of Chinchilla/Epoch: a, b ∈ {0,5,…,25},
    /// e ∈ {−1,−0.5,…,1}, α, β ∈ {0,0.5,…,2}.
    fn default_grid(&self, _inputs: &Inputs, _loss: &[f64]) -> Vec<Vec<f64>> {
        let ab: Vec<f64> = (0..6).map(|i| 5.0 * i as f64).collect();
        let e: Vec<f64> = (0..5).map(|i| -1.0 + 0.5 * i as f64).collect();
        let exps: Vec<f64> = (0..5).map(|i| 0.5 * i as f64).collect();
        cartesian_grid(&[ab.clone(), ab, e, exps.clone(), exps])
    }
    fn predict_into(&self, params: &[f64], inputs: &Inputs, out: &mut [f64]) {
        self.log_predict_into(params, inputs, out);
        for v in out.iter_mut() {
            *v = v.exp();
        }
    }
    fn log_predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        let (ln_n, ln_d) = (inputs.log_col(0), inputs.log_col(1));
        let big_e = p[2].exp();
        for ((o, &x), &y) in out.iter_mut().zip(ln_n).zip(ln_d) {
            *o = fm::ln(fm::exp(p[0] - p[3] * x) + fm::exp(p[1] - p[4] * y) + big_e);
        }
    }
    /// Hot path of every Chinchilla fit: an analytic, vectorised kernel
    /// (two exp and one ln per point) compiled for AVX-512/AVX2 by
    /// [`crate::simd::dispatch`].
    fn log_jacobian_into(&self, p: &[f64], inputs: &Inputs, logpred: &mut [f64], jac: &mut [f64]) {
        let (ln_n, ln_d) = (inputs.log_col(0), inputs.log_col(1));
        crate::simd::dispatch(#[inline(always)] || jacobian_kernel(p, ln_n, ln_d, logpred, jac));
    }
    fn jacobian_into(&self, p: &[f64], inputs: &Inputs, pred: &mut [f64], jac: &mut [f64]) {
        self.log_jacobian_into(p, inputs, pred, jac);
        super::log_to_linear(pred, jac, 5);
    }
    /// The grid fit's hot path: the kernel's per-point formulas fused with
    /// the Huber loss ([`crate::lanes`]).
    fn log_huber_into(&self, p: &[f64], inputs: &Inputs, objective: &HuberLog, grad: &mut [f64]) -> Option<(f64, f64)> {
        let chunks = objective.chunks();
        let (ln_n, ln_d) = (&lanes::chunked(inputs.log_col(0))[..chunks], &lanes::chunked(inputs.log_col(1))[..chunks]);
        let grad: &mut [f64; 5] = grad.get_mut(..5)?.try_into().ok()?;
        let (a, b, big_e, alpha, beta) = (p[0], p[1], p[2].exp(), p[3], p[4]);
        Some(lanes::fused(
            objective,
            #[inline(always)]
            |c, k| {
                let (x, y) = (ln_n[c][k], ln_d[c][k]);
                let t1 = fm::exp(a - alpha * x);
                let t2 = fm::exp(b - beta * y);
                let s = t1 + t2 + big_e;
                let inv = 1.0 / s;
                let (w1, w2) = (t1 * inv, t2 * inv);
                (fm::ln(s), [w1, w2, big_e * inv, -w1 * x, -w2 * y])
            },
            grad,
        ))
    }
    fn derived(&self, p: &[f64]) -> Vec<(String, f64)> {
        let (a, b, e, alpha, beta) = Chinchilla::natural(p);
        vec![
            ("A".into(), a),
            ("B".into(), b),
            ("E".into(), e),
            ("G".into(), ((alpha * a) / (beta * b)).powf(1.0 / (alpha + beta))),
            ("beta/(alpha+beta)".into(), beta / (alpha + beta)),
        ]
    }
}

/// ln L̂ and its column-major Jacobian: two exp and one ln per point (E is
/// one exp per call), branch-free so the loop vectorises. No max-shift is
/// needed: extreme parameters give a huge or non-finite objective, which
/// the line search treats as "too far".
#[inline(always)]
fn jacobian_kernel(p: &[f64], ln_n: &[f64], ln_d: &[f64], logpred: &mut [f64], jac: &mut [f64]) {
    let n = logpred.len();
    let (ln_n, ln_d) = (&ln_n[..n], &ln_d[..n]);
    let big_e = p[2].exp();
    let (c0, rest) = jac.split_at_mut(n);
    let (c1, rest) = rest.split_at_mut(n);
    let (c2, rest) = rest.split_at_mut(n);
    let (c3, c4) = rest.split_at_mut(n);
    let c4 = &mut c4[..n];
    for i in 0..n {
        let t1 = fm::exp(p[0] - p[3] * ln_n[i]);
        let t2 = fm::exp(p[1] - p[4] * ln_d[i]);
        let s = t1 + t2 + big_e;
        let inv = 1.0 / s;
        logpred[i] = fm::ln(s);
        let (w1, w2) = (t1 * inv, t2 * inv);
        c0[i] = w1;
        c1[i] = w2;
        c2[i] = big_e * inv;
        c3[i] = -w1 * ln_n[i];
        c4[i] = -w2 * ln_d[i];
    }
}
