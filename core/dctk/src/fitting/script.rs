//! The Rhai side of fitting: `fit`, `evaluate`, `hitchhiker`, `data_efficiency` and
//! `read_csv`. Each takes a script map (or path), turns it into the shared request
//! (`dctk_laws::FitSpec` and in-memory [`Row`]s), calls the glue in [`crate::fitting`],
//! and turns the reports back into maps. Paths go through the study's [`Sandbox`].
use std::sync::Arc;

use anyhow::Context;
use rhai::{Array, Dynamic, Map};

use super::{evaluate_groups, file_stem, fit_groups, resolve_law, write_plots, Cell, Row};
use crate::study::sandbox::Sandbox;
use dctk_laws::{Fit, FitSpec, LawForm, BUILTIN_LAWS};

/// Script maps (runs' results, `read_csv` rows) as rows: numbers and strings are cells;
/// other values (curves, nested maps, booleans) are left out.
fn rows_from_maps(items: Dynamic, key: &str) -> anyhow::Result<Vec<Row>> {
    let items = items.try_cast::<Array>().ok_or_else(|| anyhow::anyhow!("key \"{key}\" must be an array of runs or row maps"))?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let map = r.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("{key}[{i}] is not a map"))?;
            Ok(map
                .into_iter()
                .filter_map(|(k, v)| {
                    let cell = match as_number(&v) {
                        Some(x) => Cell::Number(x),
                        None => Cell::Text(v.into_string().ok()?),
                    };
                    Some((k.to_string(), cell))
                })
                .collect())
        })
        .collect()
}

/// Takes the data keys out of a request: `data` resolved in the sandbox, and `runs` or
/// `rows` (arrays of maps) as in-memory rows.
fn take_data(sandbox: &Sandbox, request: &mut Map) -> anyhow::Result<Option<Vec<Row>>> {
    if let Some(data) = request.get_mut("data") {
        let resolved = sandbox.resolve(&data.to_string(), "key \"data\"").map_err(anyhow::Error::msg)?;
        *data = resolved.display().to_string().into();
    }
    let (runs, rows) = (request.remove("runs"), request.remove("rows"));
    match (runs, rows) {
        (Some(_), Some(_)) => anyhow::bail!("give one of \"runs\" and \"rows\", not both"),
        (Some(v), None) => Ok(Some(rows_from_maps(v, "runs")?)),
        (None, Some(v)) => Ok(Some(rows_from_maps(v, "rows")?)),
        (None, None) => Ok(None),
    }
}

/// `threads` (a positive integer) taken out of a request.
fn take_threads(request: &mut Map) -> anyhow::Result<Option<usize>> {
    match request.remove("threads") {
        None => Ok(None),
        Some(v) => v.as_int().ok().filter(|n| *n >= 1).map(|n| Some(n as usize)).ok_or_else(|| anyhow::anyhow!("key \"threads\" must be a positive integer")),
    }
}

fn spec_of(request: Map) -> anyhow::Result<FitSpec> {
    rhai::serde::from_dynamic(&Dynamic::from_map(request)).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `fit(#{ law, data | runs | rows, columns, ... })`: the keys of `dctk_laws::FitSpec`
/// (`where`, `group_by`, `units`, `starts`, `bounds`, `grid`, … included), plus `runs` (an
/// array of `train` results, each one row of its number and string fields), `rows` (any
/// array of maps, e.g. from `read_csv`), `threads`, `plots` (a directory, relative to the
/// script, for residual and curve SVGs), `predict`, `compute_optimal` and `effective_data`.
/// Returns the fit report as a map (parameters with intervals, objective, metrics,
/// warnings, optima); with `group_by`, an array of them, each with its `group`.
pub fn fit_from_script(sandbox: &Sandbox, request: Map) -> anyhow::Result<Dynamic> {
    fit_from_script_recorded(sandbox, request, None)
}

/// [`fit_from_script`], also pushing each fit's report record (the fit report, its
/// predictions and its charts, [`crate::report::figures::fit_charts`]) onto `records`:
/// what `dctk report` shows of the fit.
pub fn fit_from_script_recorded(sandbox: &Sandbox, mut request: Map, mut records: Option<&mut Vec<serde_json::Value>>) -> anyhow::Result<Dynamic> {
    let rows = take_data(sandbox, &mut request)?;
    let threads = take_threads(&mut request)?;
    let plots = request.remove("plots").map(|p| p.to_string());
    let extras = Extras { predict: request.remove("predict"), compute_optimal: request.remove("compute_optimal"), effective_data: request.remove("effective_data") };
    let spec = spec_of(request)?;
    let fits = fit_groups(&spec, rows.as_deref(), threads)?;
    let mut reports = Vec::with_capacity(fits.len());
    for (group, fit) in &fits {
        if let Some(dir) = &plots {
            let dir = sandbox.resolve(dir, "key \"plots\"").map_err(anyhow::Error::msg)?;
            let stem = match group {
                Some(g) => format!("{}.{}", spec.law, file_stem(g)),
                None => spec.law.clone(),
            };
            write_plots(fit, &dir, &stem)?;
        }
        let in_group = || group.as_ref().map(|g| format!("group {g:?}")).unwrap_or_default();
        let predicted = extras.predicted(fit).with_context(in_group)?;
        let mut report = extras.report(fit, predicted.as_ref()).with_context(in_group)?;
        if let Some(g) = group {
            report.insert("group".into(), g.clone().into());
        }
        if let Some(records) = records.as_mut() {
            records.push(fit_record(fit, group.as_deref(), predicted.as_ref()));
        }
        reports.push(Dynamic::from_map(report));
    }
    Ok(match spec.group_by {
        Some(_) => Dynamic::from_array(reports),
        None => reports.remove(0),
    })
}

/// The report's record of one fit: its report, its predictions and the chart data of its
/// figures (where it was made is added by [`crate::study::session::Session::record_analysis`]).
fn fit_record(fit: &Fit, group: Option<&str>, predicted: Option<&Predicted>) -> serde_json::Value {
    let predictions: Vec<serde_json::Value> = predicted
        .map(|p| {
            p.rows
                .iter()
                .zip(&p.values)
                .map(|(row, pred)| {
                    let mut m: serde_json::Map<String, serde_json::Value> = row.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
                    m.insert("loss".into(), serde_json::json!(pred.value));
                    if let Some(iv) = pred.interval {
                        m.insert("lower".into(), serde_json::json!(iv.lower));
                        m.insert("upper".into(), serde_json::json!(iv.upper));
                    }
                    serde_json::Value::Object(m)
                })
                .collect()
        })
        .unwrap_or_default();
    let values: Vec<f64> = predicted.map(|p| p.values.iter().map(|x| x.value).collect()).unwrap_or_default();
    let charts = crate::report::figures::fit_charts(fit, predicted.map(|p| (&p.at, values.as_slice())));
    serde_json::json!({ "group": group, "report": fit.report, "predictions": predictions, "charts": charts })
}

/// The fit's predictions at the `predict` points: the rows as given, as points, and the
/// predictions there (computed once for the returned report and the report's record).
struct Predicted {
    rows: Vec<Vec<(String, f64)>>,
    at: dctk_laws::Points,
    values: Vec<dctk_laws::Prediction>,
}

/// What a fit report may be asked for beyond the fit.
struct Extras {
    predict: Option<Dynamic>,
    compute_optimal: Option<Dynamic>,
    effective_data: Option<Dynamic>,
}

impl Extras {
    fn predicted(&self, fit: &Fit) -> anyhow::Result<Option<Predicted>> {
        let Some(points) = &self.predict else { return Ok(None) };
        let rows = number_maps(points.clone(), "predict")?;
        let at = prediction_points(&rows, &fit.report.inputs)?;
        let values = fit.predict(&at)?;
        Ok(Some(Predicted { rows, at, values }))
    }

    fn report(&self, fit: &Fit, predicted: Option<&Predicted>) -> anyhow::Result<Map> {
        let mut report = to_dyn(&fit.report)?.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("fit report is not a map"))?;
        if !fit.bootstrap_samples.is_empty() {
            // The refits' parameter vectors (law order), for intervals on what is computed
            // from several fits at once (a mixture's total loss).
            let draws: Array = fit.bootstrap_samples.iter().map(|p| p.iter().map(|&x| Dynamic::from_float(x)).collect::<Array>().into()).collect();
            report.insert("bootstrap_params".into(), draws.into());
        }
        if let Some(p) = predicted {
            let out: Array = p
                .rows
                .iter()
                .zip(&p.values)
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
        if let Some(flops) = &self.compute_optimal {
            let budgets: Vec<f64> = match flops.clone().try_cast::<Array>() {
                Some(a) => a.iter().map(|x| number(x, "compute_optimal")).collect::<anyhow::Result<_>>()?,
                None => vec![number(flops, "compute_optimal")?],
            };
            let out: Array = budgets.iter().map(|&c| to_dyn(&dctk_laws::compute_optimal_from_fit(fit, c)?)).collect::<anyhow::Result<_>>()?;
            report.insert("compute_optimal".into(), out.into());
        }
        if let Some(request) = &self.effective_data {
            // #{ input: "D", loss: <the method's loss>, at: <the method's data>, fixed: #{N: ...} }
            let m = request.clone().try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("key \"effective_data\" must be a map #{{input, loss, at, fixed}}"))?;
            let get = |k: &str| m.get(k).ok_or_else(|| anyhow::anyhow!("effective_data: missing key \"{k}\""));
            let input = get("input")?.to_string();
            let fixed: Vec<(String, f64)> = match m.get("fixed") {
                Some(f) => number_maps(Dynamic::from_array(vec![f.clone()]), "effective_data.fixed")?.remove(0),
                None => vec![],
            };
            let mult = dctk_laws::effective_data_multiplier(fit, &input, &fixed, number(get("loss")?, "effective_data.loss")?, number(get("at")?, "effective_data.at")?)?;
            report.insert("effective_data".into(), to_dyn(&mult)?);
        }
        Ok(report)
    }
}

/// Prediction rows (`[#{N: 1e9, D: 2e10}]`) as points with the law's `inputs`.
fn prediction_points(rows: &[Vec<(String, f64)>], inputs: &[String]) -> anyhow::Result<dctk_laws::Points> {
    let columns = inputs
        .iter()
        .map(|name| {
            let col = rows.iter().enumerate().map(|(i, r)| {
                r.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| anyhow::anyhow!("predict[{i}] lacks input \"{name}\" (the law's inputs: {})", inputs.join(", ")))
            });
            Ok((name.clone(), col.collect::<anyhow::Result<Vec<f64>>>()?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(dctk_laws::Points::for_prediction(columns)?)
}

/// `evaluate(#{ law, params: #{NAME: value, …}, data | runs | rows, columns, … })`: the law
/// at the given parameters (a published fit, or any), with `fixed` counted among them, on
/// the points the request selects (`where`, `group_by`, `units` as for `fit`), with its
/// objective (`loss`, `space`, `delta`). Returns #{ law, equation, objective,
/// objective_value, params, n_points, metrics: #{ r2_loss, rss_loss, rss_fit_space,
/// fit_space, rmse_loss, mean_abs_rel_error, max_abs_rel_error, mean_rel_error }, points:
/// [#{ row, observed, predicted, residual }] } and, with `predict`, the law's predictions
/// there; with `group_by`, an array of them, each with its `group`.
pub fn evaluate_from_script(sandbox: &Sandbox, mut request: Map) -> anyhow::Result<Dynamic> {
    let rows = take_data(sandbox, &mut request)?;
    let params = request.remove("params").ok_or_else(|| anyhow::anyhow!("missing key \"params\" (#{{NAME: value, …}}, the parameters to evaluate at)"))?;
    let named: Vec<(String, f64)> = number_maps(Dynamic::from_array(vec![params]), "params")?.remove(0);
    let predict = request.remove("predict").map(|p| number_maps(p, "predict")).transpose()?;
    let spec = spec_of(request)?;
    let law = resolve_law(&spec)?;
    let evals = evaluate_groups(&spec, rows.as_deref(), &named)?;
    let mut out = Vec::with_capacity(evals.len());
    for (group, e) in evals {
        let mut m = Map::new();
        m.insert("law".into(), e.law.clone().into());
        m.insert("equation".into(), e.equation.clone().into());
        m.insert("objective".into(), e.objective.clone().into());
        m.insert("objective_value".into(), e.objective_value.into());
        let params: Map = e.params.iter().map(|(k, v)| (k.as_str().into(), Dynamic::from_float(*v))).collect();
        m.insert("params".into(), params.into());
        m.insert("n_points".into(), (e.n_points as i64).into());
        m.insert("metrics".into(), to_dyn(&e.metrics)?);
        let points: Array = (0..e.n_points)
            .map(|i| {
                let mut p = Map::new();
                p.insert("row".into(), (e.rows[i] as i64).into());
                p.insert("observed".into(), e.observed[i].into());
                p.insert("predicted".into(), e.predicted[i].into());
                p.insert("residual".into(), e.residuals[i].into());
                Dynamic::from_map(p)
            })
            .collect();
        m.insert("points".into(), points.into());
        if let Some(rows) = &predict {
            let values: Vec<f64> = e.params.iter().map(|(_, v)| *v).collect();
            let at = prediction_points(rows, &law.inputs())?;
            let predicted = law.predict(&values, &at.law_inputs(law.as_ref())?);
            let preds: Array = rows
                .iter()
                .zip(predicted)
                .map(|(row, y)| {
                    let mut p: Map = row.iter().map(|(k, v)| (k.as_str().into(), Dynamic::from_float(*v))).collect();
                    p.insert("loss".into(), y.into());
                    Dynamic::from_map(p)
                })
                .collect();
            m.insert("predictions".into(), preds.into());
        }
        if let Some(g) = group {
            m.insert("group".into(), g.into());
        }
        out.push(Dynamic::from_map(m));
    }
    Ok(match spec.group_by {
        Some(_) => Dynamic::from_array(out),
        None => out.remove(0),
    })
}

/// `read_csv(path)`: a CSV file (inside the study directory or a data root) as an array of
/// row maps keyed by its header; a cell that is a plain number is a float, any other a
/// string (`"2.8B"` stays text: `fit`'s `units: true` reads it as 2.8e9). The rows work
/// as `fit`'s and `evaluate`'s `rows` and in `table`.
pub fn read_csv_from_script(sandbox: &Sandbox, path: &str) -> anyhow::Result<Array> {
    let file = sandbox.resolve(path, "read_csv").map_err(anyhow::Error::msg)?;
    let reader = std::fs::File::open(&file).with_context(|| format!("read_csv: {}", file.display()))?;
    let source = file.display().to_string();
    let (headers, cells) = dctk_laws::read_csv_cells(reader, &source).map_err(|e| anyhow::anyhow!("read_csv: {e}"))?;
    let n = cells.first().map_or(0, Vec::len);
    Ok((0..n)
        .map(|i| {
            let row: Map = headers
                .iter()
                .zip(&cells)
                .map(|(h, col)| {
                    let cell = &col[i];
                    let v = match dctk_laws::parse_number(cell, false) {
                        Some(x) => Dynamic::from_float(x),
                        None => Dynamic::from(cell.clone()),
                    };
                    (h.as_str().into(), v)
                })
                .collect();
            Dynamic::from_map(row)
        })
        .collect())
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
/// paper; lower it for small studies) and scored on the target's last 30%. Returns the
/// held-out errors, the fitted parameters (with intervals under `bootstrap`), the held-out
/// predictions and the fit's warnings; `compare_final_only: true` also fits on each
/// smaller run's final checkpoint only and scores the same points (`final_only`).
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
    if let Some(v) = request.remove("compare_final_only") {
        opts.compare_final_only = v.as_bool().map_err(|t| anyhow::anyhow!("key \"compare_final_only\" must be true or false, got {t}"))?;
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

/// The keys `data_efficiency(#{...})` accepts.
pub const DATA_EFFICIENCY_KEYS: &[&str] = &["baseline", "method", "law", "metric", "bootstrap", "seed", "level"];

/// How `data_efficiency` reads the multiplier, returned as its `reading`.
pub const DATA_EFFICIENCY_READING: &str = "our reading (the formula is not in Kim et al. 2026's released code, arXiv 2603.18534; it follows Kim et al. 2025, arXiv 2509.14786): fit the real-only baseline's loss against unique real tokens D as L(D) = E + A·D^-β, solve L(D_eq) = L_method(D₀), multiplier = D_eq / D₀";

/// `data_efficiency(#{ baseline: [runs], method: run | [runs], law, metric, bootstrap, seed,
/// level })`: the data-efficiency multiplier of a method against real-only baseline runs at
/// several unique-token budgets (see [`dctk_laws::data_efficiency`] for the math and
/// [`DATA_EFFICIENCY_READING`] for the reading). `baseline` and `method` are result maps
/// (the script side turns run handles into them). D is each run's `real_unique_tokens`
/// (its `unique_tokens` for results written before it existed); the loss is `metric`:
/// `"val_loss"` (default: `final_val_loss`, the mean held-out loss over the *real* domains
/// — synthetic streams are never evaluated), `"val_loss.<domain>"` (one domain's final
/// held-out loss) or any numeric result key. Several method runs (seeds) must share D₀;
/// their losses are averaged. `law` is `"power_law"` (default) or any one-input law the
/// fitter knows (built-in or plugin); `bootstrap` resamples (default 200, 0 for none) of
/// the baseline runs with replacement, seeded by `seed` (default 0), give the `level`
/// (default 0.95) percentile `interval`.
pub fn data_efficiency_from_script(request: Map) -> anyhow::Result<Map> {
    for k in request.keys() {
        if !DATA_EFFICIENCY_KEYS.contains(&k.as_str()) {
            anyhow::bail!("{}", crate::keys::unknown_key("", k, DATA_EFFICIENCY_KEYS));
        }
    }
    let runs = |key: &str| -> anyhow::Result<Vec<Map>> {
        let v = request.get(key).cloned().ok_or_else(|| anyhow::anyhow!("missing required key \"{key}\""))?;
        let items = if v.is_array() { v.cast::<Array>() } else { vec![v] };
        items
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.try_cast::<Map>().ok_or_else(|| anyhow::anyhow!("key \"{key}\"[{i}]: expected a run (what train returns)")))
            .collect()
    };
    let (baseline, method) = (runs("baseline")?, runs("method")?);
    if method.is_empty() {
        anyhow::bail!("key \"method\": give at least one run");
    }
    let metric = request.get("metric").map(|m| m.to_string()).unwrap_or_else(|| "val_loss".into());
    let law_name = request.get("law").map(|m| m.to_string()).unwrap_or_else(|| "power_law".into());
    let count = |key: &str, default: i64| -> anyhow::Result<i64> {
        match request.get(key) {
            None => Ok(default),
            Some(v) => v.as_int().ok().filter(|n| *n >= 0).ok_or_else(|| anyhow::anyhow!("key \"{key}\" must be a non-negative integer")),
        }
    };
    let (resamples, seed) = (count("bootstrap", 200)? as usize, count("seed", 0)? as u64);
    let level = match request.get("level") {
        None => 0.95,
        Some(v) => number(v, "level").and_then(|l| if l > 0.0 && l < 1.0 { Ok(l) } else { anyhow::bail!("key \"level\" must be in (0, 1), got {l}") })?,
    };
    let label = |m: &Map, key: &str, i: usize| {
        let id = m.get("label").or(m.get("run_id")).map(|v| v.to_string()).unwrap_or_default();
        format!("{key}[{i}] ({id})")
    };
    let loss_of = |m: &Map, what: &str| -> anyhow::Result<f64> {
        let v = if metric == "val_loss" {
            m.get("final_val_loss").and_then(as_number)
        } else if let Some(domain) = metric.strip_prefix("val_loss.") {
            let by = m.get("final_val_loss_by_domain").and_then(|d| d.read_lock::<Map>().map(|d| d.clone()));
            by.and_then(|d| d.get(domain).and_then(as_number))
        } else {
            m.get(metric.as_str()).and_then(as_number)
        };
        match v {
            Some(x) if x.is_finite() => Ok(x),
            Some(x) => anyhow::bail!("{what}: metric \"{metric}\" is {x} (a diverged run?)"),
            None => anyhow::bail!("{what}: no numeric metric \"{metric}\" (\"val_loss\", \"val_loss.<domain>\" or a numeric result key)"),
        }
    };
    let unique_of = |m: &Map, what: &str| -> anyhow::Result<f64> {
        let real = m.get("real_unique_tokens").and_then(as_number).filter(|x| *x > 0.0);
        real.or_else(|| m.get("unique_tokens").and_then(as_number)).ok_or_else(|| anyhow::anyhow!("{what}: no \"real_unique_tokens\" (is it a run?)"))
    };
    let (mut d, mut loss) = (Vec::new(), Vec::new());
    for (i, m) in baseline.iter().enumerate() {
        let what = label(m, "baseline", i);
        if m.get("synthetic_tokens_seen").and_then(as_number).is_some_and(|s| s > 0.0) {
            anyhow::bail!("{what}: trained on synthetic tokens; the baseline must be real-data-only runs");
        }
        d.push(unique_of(m, &what)?);
        loss.push(loss_of(m, &what)?);
    }
    let d_method = unique_of(&method[0], &label(&method[0], "method", 0))?;
    let mut losses = Vec::new();
    for (i, m) in method.iter().enumerate() {
        let what = label(m, "method", i);
        let here = unique_of(m, &what)?;
        if here != d_method {
            anyhow::bail!("{what}: {here} unique real tokens, but method[0] has {d_method}; the method's runs must share D₀ (their losses are averaged)");
        }
        losses.push(loss_of(m, &what)?);
    }
    let loss_method = losses.iter().sum::<f64>() / losses.len() as f64;
    let law: Arc<dyn LawForm> = if BUILTIN_LAWS.contains(&law_name.as_str()) {
        dctk_laws::builtin(&law_name, &dctk_laws::LawOptions::default())?
    } else {
        crate::plugin::law::load_law(&law_name)
            .with_context(|| format!("key \"law\": \"{law_name}\" is not built in ({}) and no law plugin of that name loaded", BUILTIN_LAWS.join(", ")))?
    };
    let n_params = law.params().len();
    if d.len() < n_params {
        anyhow::bail!("key \"baseline\": {} runs for law \"{law_name}\" with {n_params} parameters; give at least {n_params} real-only runs at different unique_tokens", d.len());
    }
    let boot = (resamples > 0).then_some(dctk_laws::BootstrapOptions { resamples, seed, level });
    let e = dctk_laws::data_efficiency(law.clone(), &d, &loss, d_method, loss_method, boot).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Map::new();
    out.insert("multiplier".into(), e.multiplier.into());
    out.insert(
        "interval".into(),
        match e.interval {
            Some([lo, hi]) => Dynamic::from_array(vec![lo.into(), hi.into()]),
            None => Dynamic::UNIT,
        },
    );
    out.insert("d_equivalent".into(), e.d_equivalent.into());
    out.insert("d_method".into(), e.d_method.into());
    out.insert("loss_method".into(), e.loss_method.into());
    out.insert("asymptote".into(), e.asymptote.into());
    let mut params = Map::new();
    for (k, v) in &e.params {
        params.insert(k.into(), (*v).into());
    }
    let mut fit = Map::new();
    fit.insert("law".into(), law_name.into());
    fit.insert("equation".into(), law.equation().into());
    fit.insert("params".into(), params.into());
    fit.insert("points".into(), (d.len() as i64).into());
    out.insert("fit".into(), fit.into());
    out.insert("metric".into(), metric.into());
    out.insert("bootstrap_used".into(), (e.bootstrap_used as i64).into());
    out.insert("note".into(), e.note.map_or(Dynamic::UNIT, |n| n.into()));
    out.insert("reading".into(), DATA_EFFICIENCY_READING.into());
    Ok(out)
}
