//! `FitSpec`: one serde-deserialisable description of a fit, shared by the
//! `dctk fit` CLI (built from flags) and Rhai's `fit(#{ law, data, ... })`
//! (built from the map with `rhai::serde::from_dynamic`), so both entry
//! points accept the same fields and give the same errors.
//!
//! Beside what a fit is told ([`FitSpec::fit_options`]) the spec owns which points it
//! sees and how they are split: `where` (a row filter, see [`Points::filter_where`]),
//! `group_by` (one fit per distinct value of a column), `units` (read `2.8B` as 2.8e9)
//! and `starts` (an evenly spaced subset of the starting grid, [`evenly_spaced`]). It
//! also evaluates a law at given parameters ([`FitSpec::evaluate_named`]), which is what
//! fixing every parameter means, and parses the CLI's `--grid` ([`grid_from_axes`],
//! [`grid_from_csv`]).

use crate::data::{parse_number, read_csv_cells, ColumnMap, Points};
use crate::evaluate::{evaluate, params_by_name, Evaluation};
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
    /// Row filter: a Rhai expression over a row's columns, numbers as floats and text
    /// as strings, e.g. `domain == "ArXiv" && N >= 1e8` (key `where`).
    #[serde(default, rename = "where")]
    pub where_rows: Option<String>,
    /// One fit per distinct value of this column (text or number).
    #[serde(default)]
    pub group_by: Option<String>,
    /// Read unit suffixes where a number is expected: k/K = 1e3, M = 1e6, B/G = 1e9,
    /// T = 1e12 (`2.8B`). Off by default, so `2.8B` is text unless asked.
    #[serde(default)]
    pub units: bool,
    /// Fit from an evenly spaced subset of this many starts of the grid (the given
    /// `grid` or the law's default one).
    #[serde(default)]
    pub starts: Option<usize>,
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

    /// Load the spec's CSV with its column mapping (and unit suffixes when `units`).
    pub fn load_points(&self) -> Result<Points> {
        let path = self.data.as_deref().ok_or_else(|| LawError::BadOption("no data: give `data` (a CSV path) or pass points".into()))?;
        Points::from_csv_with_units(path, &ColumnMap::parse(self.columns.as_deref().unwrap_or(""))?, self.units)
    }

    /// The points the spec selects: those its `where` filter keeps (all without one).
    pub fn select_points(&self, points: Points) -> Result<Points> {
        match self.where_rows.as_deref().map(str::trim) {
            None | Some("") => Ok(points),
            Some(expr) => {
                let kept = points.filter_where(expr)?;
                if kept.is_empty() {
                    return Err(LawError::BadOption(format!("where {expr:?} keeps none of the {} rows of {}", points.len(), points.source)));
                }
                Ok(kept)
            }
        }
    }

    /// The groups to fit: one per distinct value of `group_by` (labelled by it), or the
    /// points as one unlabelled group.
    pub fn split_groups(&self, points: Points) -> Result<Vec<(Option<String>, Points)>> {
        match self.group_by.as_deref() {
            None => Ok(vec![(None, points)]),
            Some(col) => Ok(points.groups(col)?.into_iter().map(|(k, p)| (Some(k), p)).collect()),
        }
    }

    /// [`FitSpec::fit_options`] for fitting `law` to `points`, refusing a spec that fixes
    /// every parameter (that is an evaluation) and taking `starts` of the grid.
    pub fn options_for(&self, law: &dyn LawForm, points: &Points) -> Result<FitOptions> {
        let mut opts = self.fit_options(law)?;
        let specs = law.params();
        if !specs.is_empty() && specs.iter().all(|p| self.fixed.contains_key(&p.name)) {
            return Err(LawError::BadOption(format!(
                "every parameter of '{}' is fixed: nothing to fit. To evaluate the law at these parameters, use `dctk fit --eval --at NAME=V,...` (or --fix) or Rhai `evaluate(#{{ law, params: #{{...}}, ... }})`",
                law.name()
            )));
        }
        if let Some(n) = self.starts {
            let all = match (&self.grid, &self.formula) {
                (Some(g), None) => g.clone(),
                _ => law.default_grid(&points.law_inputs(law)?, &points.loss),
            };
            opts.grid = Some(evenly_spaced(&all, n)?);
        }
        Ok(opts)
    }

    /// Run the fit on `points` (e.g. the results of runs in a study), or on
    /// the spec's CSV when `points` is `None`, after the `where` filter. With
    /// `group_by`, use [`FitSpec::run_groups`].
    pub fn run(&self, points: Option<&Points>) -> Result<Fit> {
        if let Some(col) = &self.group_by {
            return Err(LawError::BadOption(format!("group_by {col:?} makes one fit per group: run the groups (run_groups)")));
        }
        let law = self.build_law()?;
        let points = self.select_points(match points {
            Some(p) => p.clone(),
            None => self.load_points()?,
        })?;
        let opts = self.options_for(law.as_ref(), &points)?;
        fit(law, &points, &opts)
    }

    /// One fit per group of `group_by` (one unlabelled fit without it), after `where`.
    pub fn run_groups(&self, points: Option<&Points>) -> Result<Vec<(Option<String>, Fit)>> {
        let law = self.build_law()?;
        let points = self.select_points(match points {
            Some(p) => p.clone(),
            None => self.load_points()?,
        })?;
        self.split_groups(points)?
            .into_iter()
            .map(|(g, p)| {
                let opts = self.options_for(law.as_ref(), &p)?;
                let f = fit(law.clone(), &p, &opts).map_err(|e| in_group(&g, e))?;
                Ok((g, f))
            })
            .collect()
    }

    /// `law` at the parameters `named` plus the spec's `fixed` ones (together every
    /// parameter, once) on `points`, with the spec's objective (loss, space, delta).
    pub fn evaluate_named(&self, law: &dyn LawForm, points: &Points, named: &[(String, f64)]) -> Result<Evaluation> {
        let mut all: Vec<(String, f64)> = named.to_vec();
        for (k, v) in &self.fixed {
            if named.iter().any(|(n, _)| n == k) {
                return Err(LawError::BadParam { name: k.clone(), message: "given both as a parameter and as fixed".into() });
            }
            all.push((k.clone(), *v));
        }
        let params = params_by_name(law, &all)?;
        evaluate(law, points, self.fit_options(law)?.objective, &params)
    }
}

/// An error raised inside a group, naming the group.
pub fn in_group(group: &Option<String>, e: LawError) -> LawError {
    match group {
        None => e,
        Some(g) => LawError::BadOption(format!("group {g:?}: {e}")),
    }
}

/// `n` items of `all`, evenly spaced and deterministic: the first and last (for n ≥ 2)
/// and every ((len−1)/(n−1))-th between them, rounded; all of them when n ≥ len.
pub fn evenly_spaced<T: Clone>(all: &[T], n: usize) -> Result<Vec<T>> {
    if n == 0 {
        return Err(LawError::BadOption("starts must be at least 1".into()));
    }
    if all.is_empty() {
        return Err(LawError::BadOption("the grid of starting points is empty".into()));
    }
    if n >= all.len() {
        return Ok(all.to_vec());
    }
    if n == 1 {
        return Ok(vec![all[all.len() / 2].clone()]);
    }
    let last = (all.len() - 1) as f64;
    Ok((0..n).map(|i| all[(i as f64 * last / (n - 1) as f64).round() as usize].clone()).collect())
}

/// A grid of starts from axes, one per parameter of `law` (every one listed, any order):
/// `NAME=LO:HI:COUNT` (COUNT evenly spaced values from LO to HI; log-spaced when both are
/// > 0 and HI/LO ≥ 100, as for the scale parameters A, B) or `NAME=v1|v2|...`. The starts
/// are the Cartesian product, as full parameter vectors in the law's order.
pub fn grid_from_axes(law: &dyn LawForm, axes: &[String]) -> Result<Vec<Vec<f64>>> {
    let specs = law.params();
    let names = || specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut by_name: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for axis in axes {
        let bad = |m: String| LawError::BadOption(format!("grid axis {axis:?}: {m}"));
        let (name, values) = axis.split_once('=').ok_or_else(|| bad("expected NAME=LO:HI:COUNT or NAME=v1|v2|...".into()))?;
        let name = name.trim();
        if !specs.iter().any(|s| s.name == name) {
            return Err(LawError::UnknownParam { name: name.into(), law: law.name().into(), available: names() });
        }
        let num = |s: &str| s.trim().parse::<f64>().map_err(|_| bad(format!("{:?} is not a number", s.trim())));
        let vals: Vec<f64> = if values.contains(':') {
            let parts: Vec<&str> = values.split(':').collect();
            let [lo, hi, count] = parts[..] else { return Err(bad("expected LO:HI:COUNT".into())) };
            let (lo, hi) = (num(lo)?, num(hi)?);
            let count: usize = count.trim().parse().ok().filter(|c| *c >= 1).ok_or_else(|| bad(format!("COUNT {count:?} is not a positive integer")))?;
            let log = lo > 0.0 && hi / lo >= 100.0;
            (0..count)
                .map(|i| {
                    let t = if count == 1 { 0.0 } else { i as f64 / (count - 1) as f64 };
                    if log {
                        (lo.ln() + t * (hi.ln() - lo.ln())).exp()
                    } else {
                        lo + t * (hi - lo)
                    }
                })
                .collect()
        } else {
            values.split('|').map(num).collect::<Result<_>>()?
        };
        if by_name.insert(name.into(), vals).is_some() {
            return Err(bad(format!("parameter '{name}' has two axes")));
        }
    }
    let axes: Vec<Vec<f64>> = specs
        .iter()
        .map(|s| by_name.remove(&s.name).ok_or_else(|| LawError::BadParam { name: s.name.clone(), message: format!("no grid axis (a grid lists every parameter: {})", names()) }))
        .collect::<Result<_>>()?;
    Ok(crate::law::cartesian_grid(&axes))
}

/// A grid of starts from a CSV whose header names every parameter of `law` (any order),
/// one start per row; errors name the file, row and column.
pub fn grid_from_csv(law: &dyn LawForm, path: &str) -> Result<Vec<Vec<f64>>> {
    let file = std::fs::File::open(path).map_err(|source| LawError::Io { path: path.into(), source })?;
    let (headers, cells) = read_csv_cells(file, path)?;
    let specs = law.params();
    let names = || specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(h) = headers.iter().find(|h| !specs.iter().any(|s| &s.name == *h)) {
        return Err(LawError::UnknownParam { name: format!("{h} (column of {path})"), law: law.name().into(), available: names() });
    }
    let cols: Vec<usize> = specs
        .iter()
        .map(|s| headers.iter().position(|h| *h == s.name).ok_or_else(|| LawError::BadParam { name: s.name.clone(), message: format!("no column in the grid file {path} (it needs all of: {})", names()) }))
        .collect::<Result<_>>()?;
    let rows = cells.first().map_or(0, Vec::len);
    if rows == 0 {
        return Err(LawError::BadOption(format!("the grid file {path} has no starts")));
    }
    (0..rows)
        .map(|i| {
            cols.iter()
                .map(|&j| parse_number(&cells[j][i], false).ok_or_else(|| LawError::NotANumber { column: format!("{} (in {path})", headers[j]), row: i + 1, value: cells[j][i].clone(), hint: String::new() }))
                .collect()
        })
        .collect()
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

/// Runs `f` on a local rayon pool of `threads` threads (the global pool when `None`).
/// Fits do not depend on it: every start and resample is a pure function of its index.
pub fn in_thread_pool<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T> {
    match threads {
        None => Ok(f()),
        Some(0) => Err(LawError::BadOption("threads must be at least 1".into())),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().map_err(|e| LawError::BadOption(format!("threads {n}: {e}")))?;
            Ok(pool.install(f))
        }
    }
}
