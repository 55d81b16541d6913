//! Law fitting from the host: the glue between studies (runs, CSV files, script
//! maps) and `dctk-laws`, which owns the law forms and the fitter.
//!
//! Both `dctk fit` and Rhai's `fit(#{...})` end here, so they accept the same request
//! (`dctk_laws::FitSpec`) and give the same errors. A study can fit the results of its
//! own runs: each run's result map becomes one row of its numeric fields, and the
//! usual column mapping (`N=params,D=train_tokens,loss=final_val_loss`) picks from it.
//! The script side ([`fit_from_script`], [`hitchhiker_from_script`]) turns Rhai maps into
//! those requests and the reports back into maps.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rhai::{Array, Dynamic, Map};

use crate::study::sandbox::Sandbox;

use dctk_laws::{ColumnMap, Fit, FitSpec, LawForm, Points, BUILTIN_LAWS};

/// Fits `spec` to the CSV it names, or to `rows` (one map of numeric fields per run)
/// when given. A law name that is neither built in nor a formula is looked up among
/// the law plugins on the search path.
pub fn fit_spec(spec: &FitSpec, rows: Option<&[Vec<(String, f64)>]>) -> Result<Fit> {
    let law: Arc<dyn LawForm> = if spec.formula.is_some() || BUILTIN_LAWS.contains(&spec.law.as_str()) {
        spec.build_law()?
    } else {
        crate::plugin::law::load_law(&spec.law).with_context(|| {
            format!("law \"{}\" is not built in ({}) and no law plugin of that name loaded", spec.law, BUILTIN_LAWS.join(", "))
        })?
    };
    let points = match rows {
        None => spec.load_points()?,
        Some(rows) => {
            let map = ColumnMap::parse(spec.columns.as_deref().unwrap_or(""))?;
            Points::from_named_columns(common_columns(rows)?, "the runs passed to fit", &map)?
        }
    };
    let opts = spec.fit_options(law.as_ref())?;
    Ok(dctk_laws::fit(law, &points, &opts)?)
}

/// The numeric fields every row has (sorted by name), as columns. Fields only some runs
/// carry (e.g. `resumed_from_step`) are left out; a mapping that asks for one gets the
/// column-mapping error listing the columns that exist.
fn common_columns(rows: &[Vec<(String, f64)>]) -> Result<Vec<(String, Vec<f64>)>> {
    if rows.is_empty() {
        anyhow::bail!("no runs to fit");
    }
    let mut keys: BTreeSet<&str> = rows[0].iter().map(|(k, _)| k.as_str()).collect();
    for row in &rows[1..] {
        let here: BTreeSet<&str> = row.iter().map(|(k, _)| k.as_str()).collect();
        keys = keys.intersection(&here).copied().collect();
    }
    Ok(keys
        .into_iter()
        .map(|k| {
            let column = rows.iter().map(|row| row.iter().find(|(name, _)| name == k).map(|(_, v)| *v).unwrap_or(f64::NAN)).collect();
            (k.to_string(), column)
        })
        .collect())
}

/// Writes `<stem>.residuals.svg` and `<stem>.curve.svg` into `dir`; returns their paths.
pub fn write_plots(fit: &Fit, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let residuals = dir.join(format!("{stem}.residuals.svg"));
    let curve = dir.join(format!("{stem}.curve.svg"));
    fit.write_residual_svg(&residuals)?;
    fit.write_curve_svg(&curve)?;
    Ok((residuals, curve))
}

/// `fit(#{ law, data | runs, columns, ... })`: the keys of `dctk_laws::FitSpec`, plus
/// `runs` (an array of `train` results, each one row of its numeric fields) and
/// `plots` (a directory, relative to the script, for residual and curve SVGs).
/// Returns the fit report as a map (parameters with intervals, objective, diagnostics).
pub fn fit_from_script(sandbox: &Sandbox, mut request: Map) -> anyhow::Result<Map> {
    let runs = request.remove("runs");
    let plots = request.remove("plots").map(|p| p.to_string());
    let predict = request.remove("predict");
    let compute_optimal = request.remove("compute_optimal");
    let effective_data = request.remove("effective_data");
    if let Some(data) = request.get_mut("data") {
        let resolved = sandbox.resolve(&data.to_string(), "key \"data\"").map_err(anyhow::Error::msg)?;
        *data = resolved.display().to_string().into();
    }
    let spec: dctk_laws::FitSpec = rhai::serde::from_dynamic(&Dynamic::from_map(request))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows: Option<Vec<Vec<(String, f64)>>> = match runs {
        None => None,
        Some(runs) => {
            let runs = runs.try_cast::<Array>().ok_or_else(|| anyhow::anyhow!("key \"runs\" must be an array of train results"))?;
            Some(
                runs.into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let map = r.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("runs[{i}] is not a map"))?;
                        Ok(map
                            .into_iter()
                            .filter_map(|(k, v)| Some((k.to_string(), as_number(&v)?)))
                            .collect())
                    })
                    .collect::<anyhow::Result<_>>()?,
            )
        }
    };
    let fit = fit_spec(&spec, rows.as_deref())?;
    if let Some(dir) = plots {
        let dir = sandbox.resolve(&dir, "key \"plots\"").map_err(anyhow::Error::msg)?;
        write_plots(&fit, &dir, &spec.law)?;
    }
    let mut report = to_dyn(&fit.report)?.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("fit report is not a map"))?;
    if let Some(points) = predict {
        let rows = number_maps(points, "predict")?;
        let inputs = &fit.report.inputs;
        let columns = inputs
            .iter()
            .map(|name| {
                let col = rows.iter().enumerate().map(|(i, r)| {
                    r.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
                        .ok_or_else(|| anyhow::anyhow!("predict[{i}] lacks input \"{name}\" (the law's inputs: {})", inputs.join(", ")))
                });
                Ok((name.clone(), col.collect::<anyhow::Result<Vec<f64>>>()?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let predictions = fit.predict(&dctk_laws::Points::for_prediction(columns)?)?;
        let out: Array = rows
            .iter()
            .zip(&predictions)
            .map(|(row, p)| {
                let mut m: Map = row.iter().map(|(k, v)| (k.as_str().into(), Dynamic::from_float(*v))).collect();
                m.insert("loss".into(), Dynamic::from_float(p.value));
                if let Some(iv) = p.interval {
                    m.insert("lower".into(), Dynamic::from_float(iv.lower));
                    m.insert("upper".into(), Dynamic::from_float(iv.upper));
                }
                Dynamic::from_map(m)
            })
            .collect();
        report.insert("predictions".into(), out.into());
    }
    if let Some(flops) = compute_optimal {
        let budgets: Vec<f64> = match flops.clone().try_cast::<Array>() {
            Some(a) => a.iter().map(|x| number(x, "compute_optimal")).collect::<anyhow::Result<_>>()?,
            None => vec![number(&flops, "compute_optimal")?],
        };
        let out: Array = budgets
            .iter()
            .map(|&c| to_dyn(&dctk_laws::compute_optimal_from_fit(&fit, c)?))
            .collect::<anyhow::Result<_>>()?;
        report.insert("compute_optimal".into(), out.into());
    }
    if let Some(request) = effective_data {
        // #{ input: "D", loss: <the method's loss>, at: <the method's data>, fixed: #{N: ...} }
        let m = request.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("key \"effective_data\" must be a map #{{input, loss, at, fixed}}"))?;
        let get = |k: &str| m.get(k).ok_or_else(|| anyhow::anyhow!("effective_data: missing key \"{k}\""));
        let input = get("input")?.to_string();
        let fixed: Vec<(String, f64)> = match m.get("fixed") {
            Some(f) => number_maps(Dynamic::from_array(vec![f.clone()]), "effective_data.fixed")?.remove(0),
            None => vec![],
        };
        let mult = dctk_laws::effective_data_multiplier(&fit, &input, &fixed, number(get("loss")?, "effective_data.loss")?, number(get("at")?, "effective_data.at")?)?;
        report.insert("effective_data".into(), to_dyn(&mult)?);
    }
    Ok(report)
}

/// A Rhai number (int or float) as f64; `None` for anything else.
fn as_number(v: &Dynamic) -> Option<f64> {
    v.as_float().ok().or_else(|| v.as_int().ok().map(|i| i as f64))
}

/// A Rhai number as f64, or an error naming `what`.
fn number(v: &Dynamic, what: &str) -> anyhow::Result<f64> {
    as_number(v).ok_or_else(|| anyhow::anyhow!("key \"{what}\" must be a number, got {}", v.type_name()))
}

/// An array of maps of numbers (e.g. `[#{N: 1e9, D: 2e10}]`) as name/value rows.
fn number_maps(v: Dynamic, what: &str) -> anyhow::Result<Vec<Vec<(String, f64)>>> {
    let arr = v.try_cast::<Array>().ok_or_else(|| anyhow::anyhow!("key \"{what}\" must be an array of maps"))?;
    arr.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let m = r.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("{what}[{i}] is not a map"))?;
            m.iter().map(|(k, v)| Ok((k.to_string(), number(v, &format!("{what}[{i}].{k}"))?))).collect()
        })
        .collect()
}

/// `hitchhiker(#{ law, runs, ... })`: Choshen et al.'s protocol on a study's runs. Each run
/// contributes its logged validation curve (`curve`: tokens, val_loss) and size
/// (`params`); the largest run is the target. The law is fitted on the smaller runs'
/// checkpoints (dropping those before `cut_beginning_tokens`, default 1e10 as in the
/// paper; lower it for small studies) and scored on the target's last 30%.
pub fn hitchhiker_from_script(request: Map) -> anyhow::Result<Map> {
    let mut request = request;
    let runs = request.remove("runs").ok_or_else(|| anyhow::anyhow!("missing key \"runs\" (train results)"))?;
    let mut opts = dctk_laws::HitchhikerOptions::default();
    for (key, slot) in [
        ("cut_beginning_tokens", &mut opts.cut_beginning_tokens),
        ("train_fraction", &mut opts.train_fraction),
        ("test_from_fraction", &mut opts.test_from_fraction),
    ] {
        if let Some(v) = request.remove(key) {
            *slot = number(&v, key)?;
        }
    }
    let runs = runs.try_cast::<Array>().ok_or_else(|| anyhow::anyhow!("key \"runs\" must be an array of train results"))?;
    let curves = runs
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let m = r.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("runs[{i}] is not a map"))?;
            let params = number(m.get("params").ok_or_else(|| anyhow::anyhow!("runs[{i}] has no \"params\""))?, "params")?;
            let curve = m.get("curve").cloned().ok_or_else(|| anyhow::anyhow!("runs[{i}] has no \"curve\""))?;
            let points = curve.try_cast::<Array>().ok_or_else(|| anyhow::anyhow!("runs[{i}].curve is not an array"))?;
            let (mut tokens, mut loss) = (Vec::new(), Vec::new());
            for p in points {
                let p = p.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("runs[{i}].curve has a non-map point"))?;
                let t = number(p.get("tokens").unwrap_or(&Dynamic::UNIT), "curve.tokens")?;
                if t > 0.0 {
                    tokens.push(t);
                    loss.push(number(p.get("val_loss").unwrap_or(&Dynamic::UNIT), "curve.val_loss")?);
                }
            }
            let name = m.get("run_id").map(|v| v.to_string()).unwrap_or_else(|| format!("run {i}"));
            Ok(dctk_laws::Curve { name, params, tokens, loss })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec: dctk_laws::FitSpec = rhai::serde::from_dynamic(&Dynamic::from_map(request)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let law = spec.build_law()?;
    let fit_opts = spec.fit_options(law.as_ref())?;
    let result = dctk_laws::hitchhiker(law, &curves, &opts, &fit_opts)?;
    to_dyn(&result)?.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("not a map"))
}

/// Any serde value (a decision result) as a Rhai value.
fn to_dyn<T: serde::Serialize>(value: &T) -> anyhow::Result<Dynamic> {
    rhai::serde::to_dynamic(value).map_err(|e| anyhow::anyhow!("{e}"))
}
