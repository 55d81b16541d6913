//! Muennighoff et al. 2023, "Scaling Data-Constrained Language Models"
//! (arXiv 2305.16264; huggingface/datablations, README "Parametric Fit" and
//! `utils/parametric_fit.ipynb`): Chinchilla's form (Hoffmann et al. 2022,
//! eq. 2) evaluated at effective data D' and effective parameters N' (their
//! eqs. 5–6), which discount repeated epochs and excess parameters with decay
//! constants R_D*, R_N*.
//!
//! U_N depends on the base parameters through the compute-optimal G, and
//! min/max kinks make analytic derivatives error-prone for little gain (the
//! paper's second stage fits two parameters), so the Jacobian is the
//! trait's central finite difference, taken on ln L̂ directly.

use crate::law::{cartesian_grid, finite_difference_jacobian, Inputs, LawForm, ParamSpec};

/// L(N, D, U) = E + A/N'^α + B/D'^β with
/// D' = U + U·R_D*·(1 − exp(−R_D/R_D*)), R_D = max(D/U − 1, 0),
/// N' = U_N + U_N·R_N*·(1 − exp(−R_N/R_N*)), U_N = min(N, N_opt(U)),
/// N_opt(U) = (U·G)^{β/α}·G, G = (αA/(βB))^{1/(α+β)}, R_N = max(N/U_N − 1, 0).
///
/// Parameters `[a, b, e, alpha, beta, rd_star, rn_star]` (A = e^a, …), or
/// `[a, b, e, alpha, rd_star, rn_star]` with α = β tied. Inputs `N`, `D`
/// (total training tokens) and `U` (unique tokens).
#[derive(Debug, Clone, Default)]
pub struct Muennighoff {
    /// Tie α = β (the published fit does).
    pub tie_exponents: bool,
}

impl Muennighoff {
    /// The published parameters (a, b, e, α, β, R_D*, R_N*) from the
    /// datablations README.
    pub const PUBLISHED: [f64; 7] = [6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596, 15.387756, 5.309743];

    /// Expand a parameter vector to the untied 7-vector.
    fn full(&self, p: &[f64]) -> [f64; 7] {
        if self.tie_exponents {
            [p[0], p[1], p[2], p[3], p[3], p[4], p[5]]
        } else {
            [p[0], p[1], p[2], p[3], p[4], p[5], p[6]]
        }
    }

    /// ln L̂ at one point (N, D, U) for the untied parameters `q`.
    #[inline]
    pub fn log_loss_at(q: &[f64; 7], n: f64, d: f64, u: f64) -> f64 {
        let [a, b, e, alpha, beta, rd_star, rn_star] = *q;
        let (big_a, big_b) = (a.exp(), b.exp());
        let g = ((alpha * big_a) / (beta * big_b)).powf(1.0 / (alpha + beta));
        let n_opt = (u * g).powf(beta / alpha) * g;
        let u_n = n.min(n_opt);
        let r_n = (n / u_n - 1.0).max(0.0);
        let r_d = (d / u - 1.0).max(0.0);
        let d_eff = u + u * rd_star * (1.0 - (-r_d / rd_star).exp());
        let n_eff = u_n + u_n * rn_star * (1.0 - (-r_n / rn_star).exp());
        super::chinchilla::lse3(a - alpha * n_eff.ln(), b - beta * d_eff.ln(), e).0
    }
}

impl LawForm for Muennighoff {
    fn name(&self) -> &str {
        "muennighoff"
    }
    fn equation(&self) -> String {
        "L(N,D,U) = E + A/N'^alpha + B/D'^beta; D' = U + U*rd_star*(1-exp(-R_D/rd_star)), R_D = max(D/U-1,0); \
         N' = U_N + U_N*rn_star*(1-exp(-R_N/rn_star)), U_N = min(N, (U*G)^(beta/alpha)*G), R_N = max(N/U_N-1,0); \
         G = (alpha*A/(beta*B))^(1/(alpha+beta)); A=e^a, B=e^b, E=e^e"
            .to_string()
            + if self.tie_exponents { "; alpha = beta" } else { "" }
    }
    fn citation(&self) -> String {
        "Muennighoff et al. 2023, Scaling Data-Constrained Language Models (arXiv 2305.16264), huggingface/datablations"
            .into()
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![
            ParamSpec::free("a"),
            ParamSpec::free("b"),
            ParamSpec::free("e"),
            // α = 0 makes G undefined, hence the small positive lower bound.
            ParamSpec::new("alpha", 1e-3, 5.0),
        ];
        if !self.tie_exponents {
            v.push(ParamSpec::new("beta", 1e-3, 5.0));
        }
        v.push(ParamSpec::new("rd_star", 1e-3, 1e4));
        v.push(ParamSpec::new("rn_star", 1e-3, 1e4));
        v
    }
    fn inputs(&self) -> Vec<String> {
        vec!["N".into(), "D".into(), "U".into()]
    }
    fn check_inputs(&self, inputs: &Inputs) -> std::result::Result<(), (usize, String)> {
        let (d, u) = (inputs.col(1), inputs.col(2));
        for i in 0..inputs.len() {
            if u[i] > d[i] {
                return Err((i, format!("unique tokens U = {} exceed total tokens D = {} (the law needs U <= D)", u[i], d[i])));
            }
        }
        Ok(())
    }
    /// datablations' grid: a, b ∈ linspace(0, 25, 5), e ∈ linspace(−1, 1, 4),
    /// α (= β when tied) ∈ linspace(0, 2, 4) with 0 replaced by 0.05 (G is
    /// undefined at α = 0), R_D*, R_N* ∈ linspace(0, 20, 4) with 0 replaced
    /// by 0.5. With the base frozen (stage 2) the fitter collapses it to the
    /// 16 (R_D*, R_N*) starts.
    fn default_grid(&self, _inputs: &Inputs, _loss: &[f64]) -> Vec<Vec<f64>> {
        let ab: Vec<f64> = (0..5).map(|i| 6.25 * i as f64).collect();
        let e: Vec<f64> = (0..4).map(|i| -1.0 + 2.0 * i as f64 / 3.0).collect();
        let exps = vec![0.05, 2.0 / 3.0, 4.0 / 3.0, 2.0];
        let r = vec![0.5, 20.0 / 3.0, 40.0 / 3.0, 20.0];
        if self.tie_exponents {
            cartesian_grid(&[ab.clone(), ab, e, exps, r.clone(), r])
        } else {
            cartesian_grid(&[ab.clone(), ab, e, exps.clone(), exps, r.clone(), r])
        }
    }
    fn predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        self.log_predict_into(p, inputs, out);
        for v in out.iter_mut() {
            *v = v.exp();
        }
    }
    fn log_predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        let q = self.full(p);
        let (n, d, u) = (inputs.col(0), inputs.col(1), inputs.col(2));
        for i in 0..out.len() {
            out[i] = Muennighoff::log_loss_at(&q, n[i], d[i], u[i]);
        }
    }
    fn log_jacobian_into(&self, p: &[f64], inputs: &Inputs, logpred: &mut [f64], jac: &mut [f64]) {
        self.log_predict_into(p, inputs, logpred);
        finite_difference_jacobian(p, inputs.len(), jac, |q, out| self.log_predict_into(q, inputs, out));
    }
    fn jacobian_into(&self, p: &[f64], inputs: &Inputs, pred: &mut [f64], jac: &mut [f64]) {
        self.log_jacobian_into(p, inputs, pred, jac);
        super::log_to_linear(pred, jac, p.len());
    }
    fn derived(&self, p: &[f64]) -> Vec<(String, f64)> {
        let q = self.full(p);
        let (a, b) = (q[0].exp(), q[1].exp());
        vec![
            ("A".into(), a),
            ("B".into(), b),
            ("E".into(), q[2].exp()),
            ("G".into(), ((q[3] * a) / (q[4] * b)).powf(1.0 / (q[3] + q[4]))),
        ]
    }
}
