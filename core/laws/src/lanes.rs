//! Fused objective kernels: a law's per-point prediction and derivatives and
//! the Huber loss on ln residuals in one pass over the points, reduced in
//! lanes of [`LANES`], with no Jacobian written to memory.
//!
//! Why: the unfused path (`LawForm::log_jacobian_into`, then the Huber
//! reduction, then one dot product per parameter) stores `p + 1` arrays per
//! evaluation and reads them back, and its per-point loops end in a scalar
//! remainder (LLVM vectorises them 8 or 16 points at a time, so 182 points
//! leave 22 to scalar `exp`/`ln`). Measured on the 4,500-start Chinchilla
//! grid fit (2-core Xeon, AVX-512): the unfused path spent 54% of its time
//! in the Jacobian kernel and 31% in the two reductions; see
//! `bench/laws/RESULTS.md` for the fused numbers.
//!
//! How: the fitter pads the points to a multiple of [`LANES`] (repeating the
//! last point, with weight 0), and a law's fused kernel
//! ([`crate::law::LawForm::log_huber_into`]) hands [`reduce`] a closure that
//! computes one point: (ln L̂, ∂ln L̂/∂p). [`reduce`] runs it over chunks of
//! exactly [`LANES`] points with one accumulator per lane, so LLVM
//! vectorises each chunk with no remainder, and ends with a fixed pairwise
//! sum over the lanes. The order of every floating-point operation is fixed
//! by this code, not by the vector width: an AVX-512, AVX2 or SSE2 build
//! gives bit-identical objectives and gradients.

/// Points per chunk: one AVX-512 register of f64 (two AVX2 registers).
pub const LANES: usize = 8;

/// The Huber loss on ln residuals as a fused kernel reads it. `target` and
/// `weight` are in chunks of [`LANES`] points, padded; padding has weight 0.
#[derive(Debug, Clone, Copy)]
pub struct HuberLog<'a> {
    /// ln y per point.
    pub target: &'a [[f64; LANES]],
    /// 1 for a real point, 0 for padding.
    pub weight: &'a [[f64; LANES]],
    /// 1/s: residuals are scaled as z = (ln L̂ − ln y)/s (s = 1 unless the
    /// Huber likelihood fits the scale).
    pub inv_s: f64,
    /// Huber δ.
    pub delta: f64,
}

impl HuberLog<'_> {
    /// Number of chunks of [`LANES`] points.
    pub fn chunks(&self) -> usize {
        self.target.len()
    }
}

/// The Huber loss ρ_δ(z), ψ(z)·z and ψ(z)/s at one point, times its weight.
/// Branch-free: ψ(z) = clamp(z, −δ, δ) and ρ_δ(z) = ψ·(z − ψ/2), which is
/// z²/2 inside δ and δ(|z| − δ/2) outside (a NaN residual still gives a
/// NaN loss, which the line search rejects).
#[inline(always)]
fn huber_point(log_pred: f64, target: f64, weight: f64, inv_s: f64, delta: f64) -> (f64, f64, f64) {
    let z = (log_pred - target) * inv_s;
    let psi = z.max(-delta).min(delta);
    (weight * (psi * (z - 0.5 * psi)), weight * (psi * z), weight * (psi * inv_s))
}

/// Pairwise sum of the lanes, in a fixed order.
#[inline(always)]
fn lane_sum(v: &[f64; LANES]) -> f64 {
    ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
}

/// Σ_i ρ_δ(z_i), Σ_i ψ(z_i)·z_i, and into `grad` the gradient
/// ∂/∂p_j Σ_i ρ_δ(z_i) = Σ_i ψ(z_i)/s · ∂ln L̂_i/∂p_j, where `point(c, k)`
/// returns (ln L̂, ∂ln L̂/∂p) at point `c·LANES + k`. `point` must be
/// `#[inline(always)]` and branch-free for the chunk to vectorise (see
/// [`crate::simd`]); call `reduce` inside [`crate::simd::dispatch`].
#[inline(always)]
pub fn reduce<const P: usize>(obj: &HuberLog, point: impl Fn(usize, usize) -> (f64, [f64; P]), grad: &mut [f64; P]) -> (f64, f64) {
    let mut rho = [0.0; LANES];
    let mut psi_z = [0.0; LANES];
    let mut g = [[0.0; LANES]; P];
    let (target, weight) = (obj.target, &obj.weight[..obj.target.len()]);
    for c in 0..target.len() {
        // Two loops per chunk: the law's point formulas as a plain map (which
        // LLVM vectorises as it does a Jacobian kernel), then the loss and
        // the lane accumulators. Measured: with the accumulation in the
        // first loop, LLVM left Muennighoff's kernel scalar (4× slower); with
        // the loss and the accumulation as separate loops, it vectorised them
        // 2 lanes wide and both kernels ran 2–4× slower.
        let mut log_pred = [0.0; LANES];
        let mut d = [[0.0; LANES]; P];
        for k in 0..LANES {
            let (lp, dk) = point(c, k);
            log_pred[k] = lp;
            for j in 0..P {
                d[j][k] = dk[j];
            }
        }
        let (t, w) = (&target[c], &weight[c]);
        for k in 0..LANES {
            let (r, pz, psi) = huber_point(log_pred[k], t[k], w[k], obj.inv_s, obj.delta);
            rho[k] += r;
            psi_z[k] += pz;
            for j in 0..P {
                g[j][k] += d[j][k] * psi;
            }
        }
    }
    for j in 0..P {
        grad[j] = lane_sum(&g[j]);
    }
    (lane_sum(&rho), lane_sum(&psi_z))
}

/// [`reduce`] compiled for the CPU's vector unit ([`crate::simd::dispatch`]):
/// what a law's [`crate::law::LawForm::log_huber_into`] calls, with `point`
/// written as an `#[inline(always)]` closure argument.
#[inline(always)]
pub fn fused<const P: usize>(obj: &HuberLog, point: impl Fn(usize, usize) -> (f64, [f64; P]), grad: &mut [f64; P]) -> (f64, f64) {
    crate::simd::dispatch(
        #[inline(always)]
        || reduce(obj, point, grad),
    )
}

/// The columns of a padded input, in chunks of [`LANES`] (the fitter pads
/// every column to a multiple of [`LANES`], so nothing is left over).
#[inline(always)]
pub fn chunked(col: &[f64]) -> &[[f64; LANES]] {
    col.as_chunks::<LANES>().0
}

/// Points padded to a multiple of [`LANES`] for the fused kernels: the
/// inputs (the last point repeated), ln y and the weights.
#[derive(Debug, Clone)]
pub(crate) struct Padded {
    pub inputs: crate::law::Inputs,
    pub target: Vec<[f64; LANES]>,
    pub weight: Vec<[f64; LANES]>,
}

impl Padded {
    /// Pad `inputs` and `target` (ln y); `None` when there are no points.
    pub fn new(inputs: &crate::law::Inputs, target: &[f64]) -> Option<Padded> {
        let n = inputs.len();
        if n == 0 || target.len() != n {
            return None;
        }
        let padded_n = n.div_ceil(LANES) * LANES;
        let idx: Vec<usize> = (0..padded_n).map(|i| i.min(n - 1)).collect();
        let mut t = vec![[0.0; LANES]; padded_n / LANES];
        let mut w = vec![[0.0; LANES]; padded_n / LANES];
        for (i, &src) in idx.iter().enumerate() {
            t[i / LANES][i % LANES] = target[src];
            w[i / LANES][i % LANES] = if i < n { 1.0 } else { 0.0 };
        }
        Some(Padded {
            inputs: inputs.select(&idx),
            target: t,
            weight: w,
        })
    }

    /// The objective view at scale 1/`inv_s` and Huber `delta`.
    pub fn huber(&self, inv_s: f64, delta: f64) -> HuberLog<'_> {
        HuberLog {
            target: &self.target,
            weight: &self.weight,
            inv_s,
            delta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_points_carry_zero_weight_and_reduce_to_the_plain_sums() {
        let inputs = crate::law::Inputs::new(vec!["x".into()], vec![(1..=11).map(|v| v as f64).collect()]);
        // Residuals z_i = −0.0003·(i − 5): inside δ = 1e-3 for i = 2..8, outside for the rest.
        let target: Vec<f64> = (0..11).map(|i| 0.002 * (i + 1) as f64 + 0.004 + 0.0003 * (i as f64 - 5.0)).collect();
        let p = Padded::new(&inputs, &target).unwrap();
        assert_eq!(p.inputs.len(), 16);
        assert_eq!(p.weight.iter().flatten().sum::<f64>(), 11.0);
        let x = chunked(p.inputs.col(0));
        // ln L̂ = 0.002·x + 0.004, derivative x (the closure returns ∂/∂(slope) only).
        let mut g = [0.0; 1];
        let obj = p.huber(1.0, 1e-3);
        let (f, pz) = crate::simd::dispatch(
            #[inline(always)]
            || {
                reduce(
                    &obj,
                    #[inline(always)]
                    |c, k| (0.002 * x[c][k] + 0.004, [x[c][k]]),
                    &mut g,
                )
            },
        );
        let (mut f0, mut pz0, mut g0) = (0.0, 0.0, 0.0);
        for (i, &t) in target.iter().enumerate() {
            let xi = (i + 1) as f64;
            let z: f64 = 0.002 * xi + 0.004 - t;
            let (rho, psi) = if z.abs() <= 1e-3 {
                (0.5 * z * z, z)
            } else {
                (1e-3 * (z.abs() - 0.5e-3), 1e-3f64.copysign(z))
            };
            f0 += rho;
            pz0 += psi * z;
            g0 += psi * xi;
        }
        assert!((f - f0).abs() <= 1e-15 * f0.abs().max(1e-300), "{f} vs {f0}");
        assert!((pz - pz0).abs() <= 1e-15 * pz0.abs().max(1e-300));
        assert!((g[0] - g0).abs() <= 1e-14 * g0.abs().max(1e-300), "{} vs {g0}", g[0]);
    }
    /// The built-in laws' fused kernels agree with their Jacobians and a
    /// plain Huber sum, at parameters on and off the optimum and with points
    /// on both sides of Muennighoff's kinks (N < N_opt and N > N_opt; D = U
    /// and D > U), for 11 points (so padded) and a scale s ≠ 1.
    #[test]
    fn fused_kernels_match_the_jacobian_path() {
        use crate::law::LawForm;
        use crate::laws::{Chinchilla, Muennighoff};
        let n_pts = 11;
        let n: Vec<f64> = (0..n_pts).map(|i| 1e7 * 3f64.powi(i)).collect();
        let d: Vec<f64> = (0..n_pts).map(|i| 2e9 * 2f64.powi(i)).collect();
        let u: Vec<f64> = (0..n_pts)
            .map(|i| if i % 3 == 0 { d[i as usize] } else { d[i as usize] / (1.0 + 7.0 * i as f64) })
            .collect();
        let y: Vec<f64> = (0..n_pts).map(|i| 2.0 + 3.0 / (1.0 + i as f64)).collect();
        let ln_y: Vec<f64> = y.iter().map(|v| v.ln()).collect();
        // (law, its inputs, parameter vectors to check at)
        type Case = (Box<dyn LawForm>, crate::law::Inputs, Vec<Vec<f64>>);
        let cases: Vec<Case> = vec![
            (
                Box::new(Chinchilla),
                crate::law::Inputs::new(vec!["N".into(), "D".into()], vec![n.clone(), d.clone()]),
                vec![vec![6.17, 7.67, 0.597, 0.347, 0.367], vec![2.0, 9.0, -0.5, 0.1, 0.5]],
            ),
            (
                Box::new(Muennighoff { tie_exponents: false }),
                crate::law::Inputs::new(vec!["N".into(), "D".into(), "U".into()], vec![n.clone(), d.clone(), u.clone()]),
                vec![Muennighoff::PUBLISHED.to_vec(), vec![5.0, 8.0, 0.3, 0.5, 0.25, 3.0, 40.0]],
            ),
            (
                Box::new(Muennighoff { tie_exponents: true }),
                crate::law::Inputs::new(vec!["N".into(), "D".into(), "U".into()], vec![n.clone(), d.clone(), u.clone()]),
                vec![vec![6.26, 7.30, 0.625, 0.353, 15.4, 5.3], vec![5.0, 8.0, 0.3, 0.5, 3.0, 40.0]],
            ),
        ];
        for (law, inputs, params) in &cases {
            let padded = Padded::new(inputs, &ln_y).unwrap();
            for p in params {
                for (inv_s, delta) in [(1.0, 1e-3), (40.0, 0.5)] {
                    let mut g = vec![0.0; p.len()];
                    let (f, pz) = law
                        .log_huber_into(p, &padded.inputs, &padded.huber(inv_s, delta), &mut g)
                        .expect("a fused kernel");
                    let mut lp = vec![0.0; inputs.len()];
                    let mut jac = vec![0.0; inputs.len() * p.len()];
                    law.log_jacobian_into(p, inputs, &mut lp, &mut jac);
                    let (mut f0, mut pz0, mut g0) = (0.0, 0.0, vec![0.0; p.len()]);
                    for i in 0..inputs.len() {
                        let z: f64 = (lp[i] - ln_y[i]) * inv_s;
                        let (rho, psi) = if z.abs() <= delta {
                            (0.5 * z * z, z)
                        } else {
                            (delta * (z.abs() - 0.5 * delta), delta.copysign(z))
                        };
                        f0 += rho;
                        pz0 += psi * z;
                        for j in 0..p.len() {
                            g0[j] += psi * inv_s * jac[j * inputs.len() + i];
                        }
                    }
                    let close = |a: f64, b: f64, scale: f64| (a - b).abs() <= 1e-12 * scale.max(1e-300);
                    assert!(close(f, f0, f0.abs()), "{}: f {f} vs {f0}", law.name());
                    assert!(close(pz, pz0, pz0.abs()), "{}: psi z {pz} vs {pz0}", law.name());
                    let g_scale = g0.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    for j in 0..p.len() {
                        assert!(close(g[j], g0[j], g_scale), "{} at {p:?}: grad[{j}] {} vs {}", law.name(), g[j], g0[j]);
                    }
                }
            }
        }
    }
}
