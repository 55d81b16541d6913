//! `FitSpec`: one serde-deserialisable description of a fit, shared by the
//! `dctk fit` CLI (built from flags) and Rhai's `fit(#{ law, data, ... })`
//! (built from the map with `rhai::serde::from_dynamic`), so both entry
//! points accept the same fields and give the same errors.

use crate::data::{ColumnMap, Points};
use crate::error::{LawError, Result};
use crate::fit::{fit, BootstrapOptions, Fit, FitOptions, Method};
use crate::law::{LawForm, Loss, Objective, ParamSpec, Space};
use crate::laws::{builtin, ExprLaw, LawOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A fit request. Only `law` is required; with `formula` (plus `params` and
/// `inputs`) `law` is just the name of a user-defined law.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitSpec {
    /// Built-in law name (`chinchilla`, `kaplan`, `muennighoff`, `bimix`,
    /// `mixing_law`, `power_law`) or the name of a formula law.
    pub law: String,
    /// User-defined law: a Rhai expression over `params` and `inputs`.
    #[serde(default)]
    pub formula: Option<String>,
    /// User-defined law: parameters with bounds.
    #[serde(default)]
    pub params: Option<Vec<ParamSpec>>,
    /// User-defined law: input column names.
    #[serde(default)]
    pub inputs: Option<Vec<String>>,
    /// CSV file (when the host does not pass points).
    #[serde(default)]
    pub data: Option<String>,
    /// Column mapping, e.g. `N=params,D=tokens,loss=loss`.
    #[serde(default)]
    pub columns: Option<String>,
    /// `huber` (default for N–D laws) or `lsq`.
    #[serde(default)]
    pub loss: Option<String>,
    /// Huber δ (default 1e-3).
    #[serde(default, deserialize_with = "num::opt")]
    pub delta: Option<f64>,
    /// `log` or `linear` residuals.
    #[serde(default)]
    pub space: Option<String>,
    /// Huber-likelihood MLE with a scale parameter.
    #[serde(default)]
    pub mle: bool,
    /// Frozen parameters.
    #[serde(default, deserialize_with = "num::map")]
    pub fixed: BTreeMap<String, f64>,
    /// Bound overrides: name -> [lower, upper].
    #[serde(default, deserialize_with = "num::pairs")]
    pub bounds: BTreeMap<String, [f64; 2]>,
    /// Starting points (full parameter vectors).
    #[serde(default, deserialize_with = "num::grid")]
    pub grid: Option<Vec<Vec<f64>>>,
    /// Bootstrap resamples (0 or absent: none).
    #[serde(default)]
    pub bootstrap: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Interval level (default 0.95).
    #[serde(default, deserialize_with = "num::opt")]
    pub level: Option<f64>,
    /// Options of some built-in laws (tie_exponents, domains, mixture_columns).
    #[serde(default)]
    pub law_options: LawOptions,
}

impl FitSpec {
    /// The law this spec names (built-in or formula).
    pub fn build_law(&self) -> Result<Arc<dyn LawForm>> {
        match &self.formula {
            Some(formula) => {
                let params = self.params.clone().ok_or_else(|| LawError::BadOption("a formula law needs `params` (name, lower, upper)".into()))?;
                let inputs = self.inputs.clone().ok_or_else(|| LawError::BadOption("a formula law needs `inputs` (column names)".into()))?;
                let mut law = ExprLaw::new(&self.law, params, inputs, formula)?;
                if let Some(g) = &self.grid {
                    law = law.with_grid(g.clone())?;
                }
                Ok(Arc::new(law))
            }
            None => builtin(&self.law, &self.law_options),
        }
    }

    /// Fit options from the spec, with `law`'s default objective where the
    /// spec leaves it open.
    pub fn fit_options(&self, law: &dyn LawForm) -> Result<FitOptions> {
        let default = law.default_objective();
        let loss = match self.loss.as_deref() {
            None => match default.loss {
                Loss::Huber { delta } => Loss::Huber { delta: self.delta.unwrap_or(delta) },
                l => {
                    if self.delta.is_some() {
                        Loss::Huber { delta: self.delta.unwrap_or(1e-3) }
                    } else {
                        l
                    }
                }
            },
            Some("huber") => Loss::Huber { delta: self.delta.unwrap_or(1e-3) },
            Some("lsq") | Some("least_squares") => Loss::LeastSquares,
            Some(other) => return Err(LawError::BadOption(format!("loss must be 'huber' or 'lsq', got '{other}'"))),
        };
        let space = match self.space.as_deref() {
            None => default.space,
            Some("log") => Space::Log,
            Some("linear") => Space::Linear,
            Some(other) => return Err(LawError::BadOption(format!("space must be 'log' or 'linear', got '{other}'"))),
        };
        Ok(FitOptions {
            objective: Some(Objective { loss, space }),
            method: if self.mle { Method::HuberMle } else { Method::Minimise },
            grid: if self.formula.is_some() { None } else { self.grid.clone() },
            fixed: self.fixed.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            bounds: self.bounds.iter().map(|(k, v)| (k.clone(), v[0], v[1])).collect(),
            bootstrap: match self.bootstrap {
                Some(n) if n > 0 => Some(BootstrapOptions { resamples: n, seed: self.seed.unwrap_or(42), level: self.level.unwrap_or(0.95) }),
                _ => None,
            },
            ..FitOptions::default()
        })
    }

    /// Load the spec's CSV with its column mapping.
    pub fn load_points(&self) -> Result<Points> {
        let path = self.data.as_deref().ok_or_else(|| LawError::BadOption("no data: give `data` (a CSV path) or pass points".into()))?;
        Points::from_csv(path, &ColumnMap::parse(self.columns.as_deref().unwrap_or(""))?)
    }

    /// Run the fit on `points` (e.g. the results of runs in a study), or on
    /// the spec's CSV when `points` is `None`.
    pub fn run(&self, points: Option<&Points>) -> Result<Fit> {
        let law = self.build_law()?;
        let opts = self.fit_options(law.as_ref())?;
        match points {
            Some(p) => fit(law, p, &opts),
            None => fit(law, &self.load_points()?, &opts),
        }
    }
}

/// Lenient number fields: integers are accepted where floats are meant
/// (Rhai writes `0`, not `0.0`, and its serde bridge does not convert).
mod num {
    use crate::law::bound_serde::Num;
    use serde::{Deserialize, Deserializer};
    use std::collections::BTreeMap;

    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Option::<Num>::deserialize(d)?.map(|n| n.0))
    }
    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        Ok(BTreeMap::<String, Num>::deserialize(d)?.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
    pub fn pairs<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, [f64; 2]>, D::Error> {
        Ok(BTreeMap::<String, [Num; 2]>::deserialize(d)?.into_iter().map(|(k, [a, b])| (k, [a.0, b.0])).collect())
    }
    pub fn grid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Vec<f64>>>, D::Error> {
        Ok(Option::<Vec<Vec<Num>>>::deserialize(d)?.map(|g| g.into_iter().map(|r| r.into_iter().map(|n| n.0).collect()).collect()))
    }
}
