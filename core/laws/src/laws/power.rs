//! The power law with asymptote, L(x) = A/x^B + C, used for loss-vs-size
//! asymptotes and ensemble-size curves in the synthetic-megadocs work (Kim et
//! al. 2026, arXiv 2603.18534; marin `PowerScalingLaw`, fitted there with
//! `scipy.optimize.curve_fit`, bounds [0, ∞)³). C is the asymptote.

use crate::law::{cartesian_grid, Inputs, LawForm, Objective, ParamSpec};

/// L(x) = A/x^B + C. Parameters `[A, B, C]` (all ≥ 0); input `x`.
#[derive(Debug, Clone, Default)]
pub struct PowerLaw;

impl LawForm for PowerLaw {
    fn name(&self) -> &str {
        "power_law"
    }
    fn equation(&self) -> String {
        "L(x) = A/x^B + C".into()
    }
    fn citation(&self) -> String {
        "Kim et al. 2026, synthetic megadocs (arXiv 2603.18534); marin PowerScalingLaw".into()
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("A", 0.0, f64::INFINITY),
            ParamSpec::new("B", 0.0, f64::INFINITY),
            ParamSpec::new("C", 0.0, f64::INFINITY),
        ]
    }
    fn inputs(&self) -> Vec<String> {
        vec!["x".into()]
    }
    /// least squares on raw losses, as `curve_fit`.
    fn default_objective(&self) -> Objective {
        Objective::LSQ_LINEAR
    }
    /// marin's p0 = [(max y − min y)·max(x)^0.5, 0.5, min y], plus starts that
    /// put the curve through the largest loss at the smallest x for several
    /// exponents and asymptotes (p0 alone fails when x spans decades).
    fn default_grid(&self, inputs: &Inputs, loss: &[f64]) -> Vec<Vec<f64>> {
        let x = inputs.col(0);
        let (ymin, ymax) = min_max(loss);
        let (xmin, xmax) = min_max(x);
        let mut grid = vec![vec![(ymax - ymin) * xmax.sqrt(), 0.5, ymin]];
        for v in cartesian_grid(&[vec![0.1, 0.3, 0.5, 1.0, 2.0], vec![0.0, 0.5, 0.9]]) {
            let (b, c) = (v[0], v[1] * ymin);
            grid.push(vec![((ymax - c) * xmin.powf(b)).max(1e-12), b, c]);
        }
        grid
    }
    fn predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        let lx = inputs.log_col(0);
        crate::simd::dispatch(#[inline(always)] || kernel::<false>(p, lx, out, &mut []));
    }
    /// Analytic, through the vectorised [`kernel`].
    fn jacobian_into(&self, p: &[f64], inputs: &Inputs, pred: &mut [f64], jac: &mut [f64]) {
        let lx = inputs.log_col(0);
        crate::simd::dispatch(#[inline(always)] || kernel::<true>(p, lx, pred, jac));
    }
}

/// L̂ = A·e^{−B ln x} + C at every point and, when `JAC`, its three Jacobian
/// columns; branch-free over [`crate::fastmath`] so it vectorises.
#[inline(always)]
fn kernel<const JAC: bool>(p: &[f64], lx: &[f64], pred: &mut [f64], jac: &mut [f64]) {
    let n = pred.len();
    let lx = &lx[..n];
    let [c0, c1, c2] = crate::simd::columns::<3>(jac, if JAC { n } else { 0 });
    for i in 0..n {
        let t = crate::fastmath::exp(-p[1] * lx[i]);
        pred[i] = p[0] * t + p[2];
        if JAC {
            c0[i] = t;
            c1[i] = -p[0] * t * lx[i];
            c2[i] = 1.0;
        }
    }
}

pub(crate) fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}
