//! The `LawForm` trait: the single entry point through which built-in laws,
//! future plugin laws (the *law* plugin kind) and script-defined laws reach
//! the fitter. It is object-safe and `Send + Sync` so the fitter can share one
//! `Arc<dyn LawForm>` across parallel starts, and so a C-ABI plugin wrapper
//! can implement it later without changing the fitter.
//!
//! A law declares its parameters (names and box bounds), the input columns it
//! reads, a default grid of starting points, and a vectorised prediction.
//! Gradients are optional: the provided methods fall back to central finite
//! differences, which is what script laws use; built-in laws override them
//! with analytic derivatives because the fitter's speed depends on it.

use serde::{Deserialize, Serialize};

/// A parameter: its name and box bounds (use infinities for "unbounded";
/// in JSON/Rhai maps an absent or null bound means unbounded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    #[serde(default = "bound_serde::neg_inf", with = "bound_serde::lower")]
    pub lower: f64,
    #[serde(default = "bound_serde::pos_inf", with = "bound_serde::upper")]
    pub upper: f64,
}

/// Serde for bounds: JSON has no infinity, so an infinite bound is written
/// as `null` and `null` reads back as the matching infinity.
pub mod bound_serde {
    pub fn neg_inf() -> f64 {
        f64::NEG_INFINITY
    }
    pub fn pos_inf() -> f64 {
        f64::INFINITY
    }
    macro_rules! bound {
        ($m:ident, $inf:expr) => {
            pub mod $m {
                use serde::{Deserialize, Deserializer, Serializer};
                pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
                    if v.is_finite() {
                        s.serialize_some(v)
                    } else {
                        s.serialize_none()
                    }
                }
                pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
                    Ok(Option::<super::Num>::deserialize(d)?.map_or($inf, |n| n.0))
                }
            }
        };
    }
    bound!(lower, f64::NEG_INFINITY);
    bound!(upper, f64::INFINITY);

    /// A number that deserialises from an integer or a float: Rhai maps
    /// hold `0` as an integer where a bound or value is meant as 0.0, and
    /// Rhai's serde bridge does not convert by itself.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Num(pub f64);

    impl<'de> serde::Deserialize<'de> for Num {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Num;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a number")
                }
                fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                    Ok(Num(v))
                }
                fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                    Ok(Num(v as f64))
                }
                fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                    Ok(Num(v as f64))
                }
            }
            d.deserialize_any(V)
        }
    }
}

impl ParamSpec {
    /// A parameter with bounds.
    pub fn new(name: &str, lower: f64, upper: f64) -> ParamSpec {
        ParamSpec { name: name.into(), lower, upper }
    }
    /// An unbounded parameter.
    pub fn free(name: &str) -> ParamSpec {
        ParamSpec::new(name, f64::NEG_INFINITY, f64::INFINITY)
    }
}

/// The input columns of a law, in the order of `LawForm::inputs()`, with their
/// natural logarithms precomputed once (power laws work in log space; taking
/// the logs once per fit instead of once per evaluation halves their cost).
#[derive(Debug, Clone)]
pub struct Inputs {
    names: Vec<String>,
    cols: Vec<Vec<f64>>,
    log_cols: Vec<Vec<f64>>,
    len: usize,
}

impl Inputs {
    /// Build from columns; all must have the same length (shorter ones are
    /// an invariant violation the caller, `Points::inputs_for`, prevents).
    pub fn new(names: Vec<String>, cols: Vec<Vec<f64>>) -> Inputs {
        let len = cols.first().map_or(0, Vec::len);
        let log_cols = cols.iter().map(|c| c.iter().map(|v| v.ln()).collect()).collect();
        Inputs { names, cols, log_cols, len }
    }
    /// Number of points.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Column `k` (in `LawForm::inputs()` order).
    pub fn col(&self, k: usize) -> &[f64] {
        &self.cols[k]
    }
    /// Natural log of column `k`.
    pub fn log_col(&self, k: usize) -> &[f64] {
        &self.log_cols[k]
    }
    /// Input names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// The rows at `indices`.
    pub fn select(&self, indices: &[usize]) -> Inputs {
        let pick = |c: &Vec<f64>| indices.iter().map(|&i| c[i]).collect::<Vec<f64>>();
        Inputs {
            names: self.names.clone(),
            cols: self.cols.iter().map(pick).collect(),
            log_cols: self.log_cols.iter().map(pick).collect(),
            len: indices.len(),
        }
    }
}

/// Plain minimisation of the objective, or the Huber-likelihood MLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Method {
    /// Minimise Σ ρ(r_i).
    #[default]
    Minimise,
    /// Maximise the likelihood of ln L ~ HuberDensity(loc = ln L̂, scale = e^σ, δ)
    /// (Besiroglu et al. 2024's headline fit); adds the parameter `log_sigma`.
    HuberMle,
}

/// Which residual space and which loss the fit minimises.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Space {
    /// Residuals r = ln L̂ − ln L (Chinchilla, Epoch, datablations).
    Log,
    /// Residuals r = L̂ − L (`curve_fit`-style fits: BiMix, power laws).
    Linear,
}

/// The loss applied to each residual.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Loss {
    /// Huber_δ(r) = r²/2 if |r| ≤ δ, else δ(|r| − δ/2).
    Huber { delta: f64 },
    /// r² (sum of squared residuals).
    LeastSquares,
}

/// The fit objective: Σ loss(residual in space).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub loss: Loss,
    pub space: Space,
}

impl Objective {
    /// Huber on log residuals with δ = 1e-3: Chinchilla Approach 3 as
    /// replicated by Epoch AI and used by datablations.
    pub const HUBER_LOG: Objective = Objective { loss: Loss::Huber { delta: 1e-3 }, space: Space::Log };
    /// Ordinary least squares on raw losses, as `scipy.optimize.curve_fit`.
    pub const LSQ_LINEAR: Objective = Objective { loss: Loss::LeastSquares, space: Space::Linear };

    /// Loss value and its derivative ψ = dρ/dr at residual r.
    #[inline]
    pub fn rho_psi(&self, r: f64) -> (f64, f64) {
        match self.loss {
            Loss::Huber { delta } => {
                let a = r.abs();
                if a <= delta {
                    (0.5 * r * r, r)
                } else {
                    (delta * (a - 0.5 * delta), delta * r.signum())
                }
            }
            Loss::LeastSquares => (r * r, 2.0 * r),
        }
    }

    /// Short text such as `huber(delta=0.001) on ln residuals`.
    pub fn describe(&self) -> String {
        let loss = match self.loss {
            Loss::Huber { delta } => format!("huber(delta={delta})"),
            Loss::LeastSquares => "least squares".to_string(),
        };
        let space = match self.space {
            Space::Log => "ln residuals",
            Space::Linear => "raw residuals",
        };
        format!("{loss} on {space}")
    }
}

/// A scaling-law form. See the module docs. Jacobians are column-major:
/// `jac[j * n_points + i]` = ∂(prediction at point i)/∂(parameter j), so
/// each parameter's column is contiguous and the hot loops vectorise.
///
/// # Making a law fast
/// A grid fit calls `log_jacobian_into` (or `jacobian_into`) ~10^5–10^7
/// times, so that is where a law's speed is decided (Muennighoff's 25,600
/// starts went from > 11 min to seconds with the recipe below):
/// 1. override the Jacobian with an analytic one (the default central finite
///    differences cost 1 + 2·p evaluations);
/// 2. write the per-point loop as one `#[inline(always)]` kernel fn,
///    branch-free (`min`/`max` instead of `if`; a const-generic `JAC: bool`
///    lets one kernel serve prediction and Jacobian), using
///    [`crate::fastmath`]'s `exp`/`ln` (libm calls are opaque and keep the loop
///    scalar), and split the Jacobian with [`crate::simd::columns`];
/// 3. call it as `crate::simd::dispatch(#[inline(always)] || kernel(..))`,
///    which compiles it for AVX-512, AVX2 and the baseline and picks one at
///    run time (see [`crate::simd`]);
/// 4. for the Huber loss on ln residuals (the default objective), also
///    override [`LawForm::log_huber_into`] with the same per-point formulas
///    through [`crate::lanes::reduce`]: one pass, no Jacobian in memory, no
///    scalar remainder (Chinchilla's grid fit: 0.68 → 0.40 s with the FMA
///    polynomials, 2 cores).
///
/// `laws/power.rs` is the shortest example, `laws/muennighoff.rs` the one
/// with kinks.
pub trait LawForm: Send + Sync {
    /// Registry name, e.g. `chinchilla`.
    fn name(&self) -> &str;
    /// The equation, as text.
    fn equation(&self) -> String;
    /// The paper (and where relevant the code) the form comes from.
    fn citation(&self) -> String;
    /// Parameters with their bounds, in the order `params` slices use.
    fn params(&self) -> Vec<ParamSpec>;
    /// Input column names the law reads, e.g. `["N", "D"]`.
    fn inputs(&self) -> Vec<String>;
    /// Whether input `k` must be strictly positive (default: yes, sizes and
    /// token counts are; a mixture proportion may be zero).
    fn input_must_be_positive(&self, _k: usize) -> bool {
        true
    }
    /// Relational checks the column checks cannot express (e.g. U ≤ D).
    /// Returns the 0-based point index and a message on failure.
    fn check_inputs(&self, _inputs: &Inputs) -> std::result::Result<(), (usize, String)> {
        Ok(())
    }
    /// Default grid of starting points (each a full parameter vector). It may
    /// look at the data (the power law scales its start to the losses).
    fn default_grid(&self, inputs: &Inputs, loss: &[f64]) -> Vec<Vec<f64>>;
    /// The objective the law's paper fitted with (Huber on ln residuals unless
    /// the paper used least squares).
    fn default_objective(&self) -> Objective {
        Objective::HUBER_LOG
    }
    /// Predicted loss at every point into `out` (len = inputs.len()).
    fn predict_into(&self, params: &[f64], inputs: &Inputs, out: &mut [f64]);

    /// Predicted loss as a new vector.
    fn predict(&self, params: &[f64], inputs: &Inputs) -> Vec<f64> {
        let mut out = vec![0.0; inputs.len()];
        self.predict_into(params, inputs, &mut out);
        out
    }

    /// ln of the predicted loss (override when the law is naturally computed
    /// in log space, as the log-sum-exp forms are).
    fn log_predict_into(&self, params: &[f64], inputs: &Inputs, out: &mut [f64]) {
        self.predict_into(params, inputs, out);
        for v in out.iter_mut() {
            *v = v.ln();
        }
    }

    /// Prediction and its Jacobian. Default: central finite differences.
    fn jacobian_into(&self, params: &[f64], inputs: &Inputs, pred: &mut [f64], jac: &mut [f64]) {
        self.predict_into(params, inputs, pred);
        finite_difference_jacobian(params, inputs.len(), jac, |p, out| self.predict_into(p, inputs, out));
    }

    /// ln prediction and its Jacobian. Default: from `jacobian_into` by the
    /// chain rule, ∂ln L̂ = ∂L̂ / L̂.
    fn log_jacobian_into(&self, params: &[f64], inputs: &Inputs, logpred: &mut [f64], jac: &mut [f64]) {
        self.jacobian_into(params, inputs, logpred, jac);
        let n = logpred.len();
        for col in jac.chunks_exact_mut(n) {
            for (j, v) in col.iter_mut().zip(logpred.iter()) {
                *j /= *v;
            }
        }
        for v in logpred.iter_mut() {
            *v = v.ln();
        }
    }

    /// Optional fast path for the most common objective, the Huber loss on
    /// ln residuals: one fused pass computing ln L̂, its derivatives and the
    /// loss, written with [`crate::lanes::reduce`]. Returns
    /// (Σ ρ_δ(z_i), Σ ψ(z_i)·z_i) and writes ∂Σρ/∂p_j for every law
    /// parameter into `grad` (len = `params().len()`). `inputs` are padded to
    /// a multiple of [`crate::lanes::LANES`] points (see
    /// [`crate::lanes::chunked`]). The default, `None`, makes the fitter use
    /// `log_jacobian_into` and separate reductions; a law that overrides this
    /// must agree with its Jacobian (`lanes`' tests check the built-in ones).
    fn log_huber_into(&self, _params: &[f64], _inputs: &Inputs, _objective: &crate::lanes::HuberLog, _grad: &mut [f64]) -> Option<(f64, f64)> {
        None
    }

    /// Derived quantities worth reporting with intervals (e.g. A = e^a).
    fn derived(&self, _params: &[f64]) -> Vec<(String, f64)> {
        Vec::new()
    }
}

/// Central-difference Jacobian of `f` (which writes n outputs) at `params`,
/// with a relative step: used by script laws and laws with kinks (min/max)
/// where analytic derivatives would not be cheaper to get right.
pub fn finite_difference_jacobian(
    params: &[f64],
    n: usize,
    jac: &mut [f64],
    mut f: impl FnMut(&[f64], &mut [f64]),
) {
    let p = params.len();
    let mut x = params.to_vec();
    let mut plus = vec![0.0; n];
    let mut minus = vec![0.0; n];
    for j in 0..p {
        // cbrt(eps) ≈ 6e-6 balances truncation and rounding for central differences.
        let h = 6.0e-6 * params[j].abs().max(1.0);
        x[j] = params[j] + h;
        f(&x, &mut plus);
        x[j] = params[j] - h;
        f(&x, &mut minus);
        x[j] = params[j];
        let inv = 1.0 / (2.0 * h);
        for i in 0..n {
            jac[j * n + i] = (plus[i] - minus[i]) * inv;
        }
    }
}

/// Cartesian product of per-parameter value lists (first parameter varies
/// slowest, like nested loops / `itertools.product`).
pub fn cartesian_grid(axes: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = vec![Vec::new()];
    for axis in axes {
        let mut next = Vec::with_capacity(out.len() * axis.len());
        for prefix in &out {
            for &v in axis {
                let mut p = prefix.clone();
                p.push(v);
                next.push(p);
            }
        }
        out = next;
    }
    out
}

impl std::fmt::Debug for dyn LawForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LawForm({})", self.name())
    }
}
