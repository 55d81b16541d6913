//! Law fitting from the host: the glue between studies (runs, CSV files, script
//! maps) and `dctk-laws`, which owns the law forms and the fitter.
//!
//! Both `dctk fit` and Rhai's `fit(#{...})` end here, so they accept the same request
//! (`dctk_laws::FitSpec`) and give the same errors. A study can fit the results of its
//! own runs: each run's result map becomes one row of its numeric fields, and the
//! usual column mapping (`N=params,D=train_tokens,loss=final_val_loss`) picks from it.
//! The script side ([`fit_from_script`], [`hitchhiker_from_script`]) turns Rhai maps into
//! those requests and the reports back into maps. A fit running longer than a second
//! shows a progress bar on stderr (when it is a terminal): see [`FitBar`].
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rhai::{Array, Dynamic, Map};

use crate::study::sandbox::Sandbox;

use dctk_laws::{ColumnMap, Fit, FitPhase, FitProgress, FitSpec, LawForm, Points, ProgressHook, BUILTIN_LAWS};

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
    let mut opts = spec.fit_options(law.as_ref())?;
    let bar = FitBar::on_stderr();
    opts.progress = bar.as_ref().map(FitBar::hook);
    let fitted = dctk_laws::fit(law, &points, &opts);
    if let Some(bar) = bar {
        bar.bar.finish_and_clear();
    }
    Ok(fitted?)
}

/// A fit lasting longer than this gets a progress bar; shorter ones print nothing.
const FIT_BAR_AFTER: Duration = Duration::from_secs(1);

/// The progress bar of a long fit on stderr: starts done / total of the
/// fitter's current phase (screen, polish, bootstrap). Hidden until the fit
/// has run [`FIT_BAR_AFTER`], and never made when stderr is not a terminal
/// (logs and pipes stay clean).
struct FitBar {
    bar: ProgressBar,
    /// Current phase, highest `done` seen in it (reports arrive from several
    /// threads, not always in order), and whether the bar is drawn yet.
    state: Arc<Mutex<(Option<FitPhase>, u64, bool)>>,
    started: Instant,
}

impl FitBar {
    fn on_stderr() -> Option<FitBar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::hidden();
        bar.set_style(ProgressStyle::with_template("fit: {msg} [{bar:30}] {pos}/{len} ({elapsed})").ok()?.progress_chars("=> "));
        Some(FitBar { bar, state: Arc::default(), started: Instant::now() })
    }

    fn hook(&self) -> ProgressHook {
        let (bar, state, started) = (self.bar.clone(), self.state.clone(), self.started);
        ProgressHook::new(move |p: FitProgress| {
            let Ok(mut s) = state.lock() else { return };
            if s.0 != Some(p.phase) {
                *s = (Some(p.phase), 0, s.2);
                bar.set_length(p.total as u64);
                bar.set_message(p.phase.name());
            }
            s.1 = s.1.max(p.done as u64);
            bar.set_position(s.1);
            if !s.2 && started.elapsed() >= FIT_BAR_AFTER {
                s.2 = true;
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
        })
    }
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
