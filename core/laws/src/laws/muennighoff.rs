//! Muennighoff et al. 2023, "Scaling Data-Constrained Language Models"
//! (arXiv 2305.16264; huggingface/datablations, README "Parametric Fit" and
//! `utils/parametric_fit.ipynb`): Chinchilla's form (Hoffmann et al. 2022,
//! eq. 2) evaluated at effective data D' and effective parameters N' (their
//! eqs. 5–6), which discount repeated epochs and excess parameters with decay
//! constants R_D*, R_N*.
//!
//! Speed. The Jacobian is analytic, in ln space, and the per-point kernel is
//! branch-free straight-line code over [`crate::fastmath`]'s `exp`/`ln`,
//! compiled for AVX-512/AVX2 by [`crate::simd::dispatch`]. The min/max kinks
//! need no branch: on the U_N = N side R_N = 0, where ∂ln N'/∂ln U_N =
//! 1 − e^{−R_N/R_N*}(N/U_N)/h_N vanishes, so the N_opt-side formula gives
//! the N side's (zero) derivatives too; likewise ∂ln D'/∂R_D* = 0 at R_D = 0.
//!
//! Why it used to be slow (measured on the 182-point benchmark set,
//! `bench/laws/muennighoff_182.csv`, 2-core EPYC, before this kernel): the
//! free fit from the 25,600-start default grid took > 11 min against ~0.5 s
//! for Chinchilla's 4,500 starts. Per start, three causes multiplied:
//! (1) the central finite-difference Jacobian cost 1 + 2·7 = 15 law
//! evaluations per gradient; (2) each evaluation ran libm `powf`/`exp`/`ln`
//! point by point (two `powf` per point, opaque calls, no vectorisation),
//! ~3× the cost of a fastmath evaluation; (3) the FD gradient's noise
//! (~1e-10 relative) sits right at the screening tolerance, so L-BFGS's line
//! searches failed or crawled: see `measured_reason` in the benchmark
//! output and RESULTS.md for the iteration and status counts per start.

use crate::fastmath as fm;
use crate::lanes::{self, HuberLog};
use crate::law::{cartesian_grid, Inputs, LawForm, ParamSpec};

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

    /// ln L̂ at one point (N, D, U) for the untied parameters `q`, written
    /// as the equation reads with libm `powf`/`exp`/`ln`: the scalar
    /// reference the fitter's kernel is tested against.
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
        let cols = Columns::of(inputs);
        crate::simd::dispatch(#[inline(always)] || kernel::<false, false>(&q, &cols, out, &mut []));
    }
    /// Analytic ln-space Jacobian (see the module docs), 7 columns, or 6
    /// with α = β tied (∂/∂α + ∂/∂β).
    fn log_jacobian_into(&self, p: &[f64], inputs: &Inputs, logpred: &mut [f64], jac: &mut [f64]) {
        let q = self.full(p);
        let cols = Columns::of(inputs);
        if self.tie_exponents {
            crate::simd::dispatch(#[inline(always)] || kernel::<true, true>(&q, &cols, logpred, jac));
        } else {
            crate::simd::dispatch(#[inline(always)] || kernel::<true, false>(&q, &cols, logpred, jac));
        }
    }
    fn jacobian_into(&self, p: &[f64], inputs: &Inputs, pred: &mut [f64], jac: &mut [f64]) {
        self.log_jacobian_into(p, inputs, pred, jac);
        super::log_to_linear(pred, jac, p.len());
    }
    /// The kernel's per-point formulas fused with the Huber loss
    /// ([`crate::lanes`]): the grid fit's hot path.
    fn log_huber_into(&self, p: &[f64], inputs: &Inputs, objective: &HuberLog, grad: &mut [f64]) -> Option<(f64, f64)> {
        let q = self.full(p);
        let c = objective.chunks();
        let cols = [inputs.log_col(0), inputs.log_col(2), inputs.col(1), inputs.col(2)].map(|col| &lanes::chunked(col)[..c]);
        let consts = Consts::of(&q);
        if self.tie_exponents {
            let grad: &mut [f64; 6] = grad.get_mut(..6)?.try_into().ok()?;
            Some(lanes::fused(
                objective,
                #[inline(always)]
                |c, k| {
                    let (lp, d) = point_at(&consts, &cols, c, k);
                    (lp, [d[0], d[1], d[2], d[3] + d[4], d[5], d[6]])
                },
                grad,
            ))
        } else {
            let grad: &mut [f64; 7] = grad.get_mut(..7)?.try_into().ok()?;
            Some(lanes::fused(objective, #[inline(always)] |c, k| point_at(&consts, &cols, c, k), grad))
        }
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

/// The input columns the kernel reads: ln N, ln D, ln U, and D, U raw (D/U
/// is taken from the raw values, as the equation writes it).
struct Columns<'a> {
    ln_n: &'a [f64],
    ln_u: &'a [f64],
    d: &'a [f64],
    u: &'a [f64],
}

impl<'a> Columns<'a> {
    fn of(inputs: &'a Inputs) -> Columns<'a> {
        Columns { ln_n: inputs.log_col(0), ln_u: inputs.log_col(2), d: inputs.col(1), u: inputs.col(2) }
    }
}

/// Per-call constants of the kernel (functions of the parameters only).
struct Consts {
    q: [f64; 7],
    inv_alpha: f64,
    inv_beta: f64,
    inv_rd: f64,
    inv_rn: f64,
    c_opt: f64,
    big_e: f64,
}

impl Consts {
    #[inline(always)]
    fn of(q: &[f64; 7]) -> Consts {
        let [a, b, e, alpha, beta, rd, rn] = *q;
        Consts { q: *q, inv_alpha: 1.0 / alpha, inv_beta: 1.0 / beta, inv_rd: 1.0 / rd, inv_rn: 1.0 / rn, c_opt: alpha.ln() - beta.ln() + a - b, big_e: e.exp() }
    }
}

/// ln L̂ at one point and, when `JAC`, its 7 derivatives (untied order; all
/// zero otherwise). The formulas are those of [`kernel`]'s doc.
#[inline(always)]
fn point_with<const JAC: bool>(k: &Consts, ln_n: f64, ln_u: f64, d: f64, u: f64) -> (f64, [f64; 7]) {
    let [a, b, _, alpha, beta, rd, rn] = k.q;
    let ln_nopt = (beta * ln_u + k.c_opt) * k.inv_alpha;
    let ln_un = ln_n.min(ln_nopt);
    let ratio_n = fm::exp(ln_n - ln_un);
    let r_n = ratio_n - 1.0;
    let e_n = fm::exp(-r_n * k.inv_rn);
    let h_n = 1.0 + rn * (1.0 - e_n);
    let ln_neff = ln_un + fm::ln(h_n);
    let r_d = (d / u - 1.0).max(0.0);
    let e_d = fm::exp(-r_d * k.inv_rd);
    let h_d = 1.0 + rd * (1.0 - e_d);
    let ln_deff = ln_u + fm::ln(h_d);
    let (x1, x2, x3) = (fm::exp(a - alpha * ln_neff), fm::exp(b - beta * ln_deff), k.big_e);
    let sum = x1 + x2 + x3;
    let log_pred = fm::ln(sum);
    if !JAC {
        return (log_pred, [0.0; 7]);
    }
    let inv = 1.0 / sum;
    let (w1, w2, w3) = (x1 * inv, x2 * inv, x3 * inv);
    // One reciprocal for both quotients by h_N (a division is the slowest
    // vector instruction here).
    let inv_hn = 1.0 / h_n;
    let s = 1.0 - e_n * ratio_n * inv_hn;
    let dn_drn = ((1.0 - e_n) - r_n * k.inv_rn * e_n) * inv_hn;
    let dd_drd = ((1.0 - e_d) - r_d * k.inv_rd * e_d) / h_d;
    let d_alpha = -w1 * (ln_neff + s * (1.0 - alpha * ln_nopt) * k.inv_alpha);
    let d_beta = -w1 * s * (ln_u - k.inv_beta) - w2 * ln_deff;
    (log_pred, [w1 * (1.0 - s), w2 + w1 * s, w3, d_alpha, d_beta, -w2 * beta * dd_drd, -w1 * alpha * dn_drn])
}

/// [`point_with`] with derivatives: the fused kernel's per-point closure.
#[inline(always)]
fn point(k: &Consts, ln_n: f64, ln_u: f64, d: f64, u: f64) -> (f64, [f64; 7]) {
    point_with::<true>(k, ln_n, ln_u, d, u)
}

/// [`point`] at point `lane` of chunk `c` of the padded columns (ln N, ln U, D, U).
#[inline(always)]
fn point_at(k: &Consts, cols: &[&[[f64; lanes::LANES]]; 4], c: usize, lane: usize) -> (f64, [f64; 7]) {
    point(k, cols[0][c][lane], cols[1][c][lane], cols[2][c][lane], cols[3][c][lane])
}

/// ln L̂ at every point and, when `JAC`, its column-major Jacobian (7
/// columns; 6 when `TIED`, the α column then holding ∂/∂α + ∂/∂β).
///
/// In ln space, with c = ln α − ln β + a − b:
/// ln N_opt = (β ln U + c)/α, ln U_N = min(ln N, ln N_opt),
/// ln N' = ln U_N + ln h_N, h_N = 1 + R_N*(1 − e^{−R_N/R_N*});
/// ln D' = ln U + ln h_D, h_D = 1 + R_D*(1 − e^{−R_D/R_D*});
/// ln L̂ = LSE(a − α ln N', b − β ln D', e) with softmax weights w1, w2, w3.
/// With s = ∂ln N'/∂ln U_N = 1 − e^{−R_N/R_N*}(N/U_N)/h_N and
/// ∂ln N_opt/∂(a, b, α, β) = (1, −1, (1 − α ln N_opt)/α, ln U − 1/β)/α:
/// ∂a = w1(1 − s), ∂b = w2 + w1·s, ∂e = w3,
/// ∂α = −w1(ln N' + s(1 − α ln N_opt)/α), ∂β = −w1·s(ln U − 1/β) − w2 ln D',
/// ∂R_D* = −w2·β·((1 − e_D) − (R_D/R_D*)e_D)/h_D,
/// ∂R_N* = −w1·α·((1 − e_N) − (R_N/R_N*)e_N)/h_N.
/// Eight `exp`/`ln` per point. As in Chinchilla's kernel the LSE is not
/// max-shifted (that would cost a ninth): `fastmath::exp` clamps instead of
/// overflowing, and parameters where a term nears e^709 have a huge
/// objective the line search backs away from.
#[inline(always)]
fn kernel<const JAC: bool, const TIED: bool>(q: &[f64; 7], cols: &Columns, logpred: &mut [f64], jac: &mut [f64]) {
    let n = logpred.len();
    let consts = Consts::of(q);
    let (ln_n, ln_u, d, u) = (&cols.ln_n[..n], &cols.ln_u[..n], &cols.d[..n], &cols.u[..n]);
    let n_cols = if TIED { 6 } else { 7 };
    let jac: &mut [f64] = if JAC { &mut jac[..n_cols * n] } else { &mut [] };
    let (c0, rest) = jac.split_at_mut(if JAC { n } else { 0 });
    let (c1, rest) = rest.split_at_mut(if JAC { n } else { 0 });
    let (c2, rest) = rest.split_at_mut(if JAC { n } else { 0 });
    let (c3, rest) = rest.split_at_mut(if JAC { n } else { 0 });
    let (c4, rest) = rest.split_at_mut(if JAC { n } else { 0 });
    let (c5, c6) = rest.split_at_mut(if JAC { n } else { 0 });
    // Exact lengths, so the loop's stores need no bounds checks.
    let c6 = &mut c6[..if JAC && !TIED { n } else { 0 }];
    for i in 0..n {
        let (lp, dv) = point_with::<JAC>(&consts, ln_n[i], ln_u[i], d[i], u[i]);
        logpred[i] = lp;
        if JAC {
            c0[i] = dv[0];
            c1[i] = dv[1];
            c2[i] = dv[2];
            if TIED {
                c3[i] = dv[3] + dv[4];
                c4[i] = dv[5];
                c5[i] = dv[6];
            } else {
                c3[i] = dv[3];
                c4[i] = dv[4];
                c5[i] = dv[5];
                c6[i] = dv[6];
            }
        }
    }
}
