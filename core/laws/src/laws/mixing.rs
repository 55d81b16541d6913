//! Data Mixing Laws (Ye et al. 2024, "Data Mixing Laws: Optimizing Data
//! Mixtures by Predicting Language Modeling Performance", arXiv 2403.16952):
//! the loss on one validation domain as an exponential of a linear function
//! of the training-mixture proportions.
//!
//! When all M proportions are passed and they sum to 1, one t_j is redundant
//! (a shift of every t_j is absorbed by k). Pass M−1 proportions (leave the
//! reference domain out) to get identifiable parameters.

use super::power::min_max;
use crate::law::{cartesian_grid, Inputs, LawForm, Objective, ParamSpec};

/// L(r_1..r_M) = c + k·exp(Σ_j t_j r_j). Parameters `[c, k, t1..tM]`;
/// inputs `r1..rM` (proportions, may be zero).
#[derive(Debug, Clone)]
pub struct MixingLaw {
    names: Vec<String>,
}

impl MixingLaw {
    /// A mixing law over `domains` proportion columns named `r1..rM`.
    pub fn new(domains: usize) -> MixingLaw {
        MixingLaw { names: (1..=domains).map(|j| format!("r{j}")).collect() }
    }
    /// A mixing law over proportion columns with the given names.
    pub fn with_inputs(names: Vec<String>) -> MixingLaw {
        MixingLaw { names }
    }
}

impl LawForm for MixingLaw {
    fn name(&self) -> &str {
        "mixing_law"
    }
    fn equation(&self) -> String {
        format!("L = c + k*exp(sum_j t_j*r_j) over {} proportion inputs", self.names.len())
    }
    fn citation(&self) -> String {
        "Ye et al. 2024, Data Mixing Laws: Optimizing Data Mixtures by Predicting Language Modeling Performance (arXiv 2403.16952)".into()
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![ParamSpec::new("c", 0.0, f64::INFINITY), ParamSpec::new("k", 0.0, f64::INFINITY)];
        v.extend((1..=self.names.len()).map(|j| ParamSpec::new(&format!("t{j}"), -50.0, 50.0)));
        v
    }
    fn inputs(&self) -> Vec<String> {
        self.names.clone()
    }
    fn input_must_be_positive(&self, _k: usize) -> bool {
        false
    }
    /// The paper's fitting details were not available; least squares on raw
    /// losses, like the other mixture laws here.
    fn default_objective(&self) -> Objective {
        Objective::LSQ_LINEAR
    }
    fn default_grid(&self, _inputs: &Inputs, loss: &[f64]) -> Vec<Vec<f64>> {
        let (ymin, ymax) = min_max(loss);
        let span = (ymax - ymin).max(1e-3 * ymax.abs().max(1.0));
        let t_axis = if self.names.len() <= 4 { vec![-2.0, 0.0, 2.0] } else { vec![-1.0, 1.0] };
        let mut axes = vec![vec![0.0, 0.5 * ymin, 0.9 * ymin], vec![span, 4.0 * span]];
        axes.extend(std::iter::repeat_n(t_axis, self.names.len()));
        cartesian_grid(&axes)
    }
    fn predict_into(&self, p: &[f64], inputs: &Inputs, out: &mut [f64]) {
        for (i, o) in out.iter_mut().enumerate() {
            let z: f64 = (0..self.names.len()).map(|j| p[2 + j] * inputs.col(j)[i]).sum();
            *o = p[0] + p[1] * z.exp();
        }
    }
    fn jacobian_into(&self, p: &[f64], inputs: &Inputs, pred: &mut [f64], jac: &mut [f64]) {
        let n = pred.len();
        for i in 0..n {
            let z: f64 = (0..self.names.len()).map(|j| p[2 + j] * inputs.col(j)[i]).sum();
            let ez = z.exp();
            pred[i] = p[0] + p[1] * ez;
            jac[i] = 1.0;
            jac[n + i] = ez;
            for j in 0..self.names.len() {
                jac[(2 + j) * n + i] = p[1] * ez * inputs.col(j)[i];
            }
        }
    }
}
