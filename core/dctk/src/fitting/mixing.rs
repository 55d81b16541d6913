//! Mixing studies in scripts: Rhai `mixing_rows(runs)` turns a study's runs into the rows a
//! BiMix, data-constrained BiMix or Ye et al. fit takes (one per evaluation × domain),
//! `fit(#{ law, runs, per: "domain" })` fits one law per domain from them in one call,
//! `predict_mixture(#{ fits, runs | mixture, ... })` predicts mixtures (held-out runs with
//! their MRE and R², or a mixture at a step) with bootstrap intervals, and
//! `optimize_mixture(#{ fits, at_step | steps, weights, bounds, budgets, ... })` finds the
//! mixture — and, over a step range, the total tokens — the fitted laws predict best
//! (`dctk_laws::mixture`: exact, via the KKT conditions).
//!
//! A row's proportion `r` is the domain's realized share of the run's training tokens
//! (`accounting.domains[i].tokens_served / accounting.tokens_served`): the mixture weight as
//! served, which differs from the asked weight only where an epoch limit exhausted a domain.
//! Its epochs `e` are r·tokens / the domain's epoch tokens (unique tokens plus separators, as
//! the accounting counts an epoch).
use anyhow::{anyhow, bail, Result};
use dctk_laws::{evaluate_mixture, optimize_mixture, optimize_mixture_and_steps, MixDomain, MixtureOptimum};
use rhai::{Array, Dynamic, Map};
use serde_json::Value;

/// One domain's share of a run: name, realized share, epoch tokens.
struct Share {
    name: String,
    r: f64,
    epoch_tokens: f64,
}

/// The rows of `runs` (result maps): for every evaluation after step 0 and every domain the
/// run trained on and evaluated, `#{ run, domain, step, tokens, epoch, r, e, unique_tokens,
/// loss }` plus `r_<domain>` for every domain of the run (Ye et al.'s inputs).
pub fn mixing_rows(runs: &Array) -> Result<Array> {
    let mut rows = Array::new();
    for (i, run) in runs.iter().enumerate() {
        let v: Value = rhai::serde::from_dynamic(run).map_err(|e| anyhow!("runs[{i}]: {e}"))?;
        let label = v.get("label").or(v.get("run_id")).and_then(|l| l.as_str()).unwrap_or_default().to_string();
        let what = if label.is_empty() { format!("runs[{i}]") } else { format!("run {label}") };
        let acc = v.get("accounting").ok_or_else(|| anyhow!("{what}: no \"accounting\" (is it a train result?)"))?;
        let total = acc.get("tokens_served").and_then(Value::as_f64).filter(|t| *t > 0.0).ok_or_else(|| anyhow!("{what}: no tokens served"))?;
        let shares: Vec<Share> = acc
            .get("domains")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some(Share {
                    name: d.get("name")?.as_str()?.to_string(),
                    r: d.get("tokens_served")?.as_f64()? / total,
                    epoch_tokens: d.get("epoch_tokens").and_then(Value::as_f64).unwrap_or(f64::NAN),
                })
            })
            .collect();
        let curve = v.get("curve").and_then(Value::as_array).ok_or_else(|| anyhow!("{what}: no \"curve\""))?;
        for p in curve {
            let step = p.get("step").and_then(Value::as_f64).unwrap_or(0.0);
            if step <= 0.0 {
                continue;
            }
            let tokens = p.get("tokens").and_then(Value::as_f64).unwrap_or(0.0);
            for share in &shares {
                let Some(loss) = p.get("val_loss_by_domain").and_then(|m| m.get(&share.name)).and_then(Value::as_f64) else { continue };
                if share.r <= 0.0 {
                    continue;
                }
                let mut row = Map::new();
                row.insert("run".into(), label.clone().into());
                row.insert("domain".into(), share.name.clone().into());
                row.insert("step".into(), Dynamic::from_float(step));
                row.insert("tokens".into(), Dynamic::from_float(tokens));
                row.insert("epoch".into(), Dynamic::from_float(p.get("epoch").and_then(Value::as_f64).unwrap_or(0.0)));
                row.insert("r".into(), Dynamic::from_float(share.r));
                row.insert("e".into(), Dynamic::from_float(share.r * tokens / share.epoch_tokens));
                row.insert("unique_tokens".into(), Dynamic::from_float(share.epoch_tokens));
                row.insert("loss".into(), Dynamic::from_float(loss));
                for other in &shares {
                    row.insert(format!("r_{}", other.name).into(), Dynamic::from_float(other.r));
                }
                rows.push(row.into());
            }
        }
    }
    if rows.is_empty() {
        bail!("no rows: the runs have no evaluation after step 0 with per-domain validation losses");
    }
    Ok(rows)
}

/// A per-domain fit as the mixture tools use it: the domain (BiMix or data-constrained, no
/// weight, bounds or budget yet) and the bootstrap refits' parameter vectors.
struct DomainFit {
    domain: MixDomain,
    draws: Vec<Vec<f64>>,
}

/// The laws the mixture tools take, and their parameters in law order.
const MIX_LAWS: &[(&str, &[&str])] = &[("bimix", &["AB", "CB", "a", "b"]), ("bimix_dc", &["AB", "CB", "a", "b", "R_star"])];

impl DomainFit {
    /// The domain at bootstrap draw `j` (its settings kept).
    fn draw(&self, j: usize) -> MixDomain {
        let p = &self.draws[j];
        MixDomain { ab: p[0], cb: p[1], a: p[2], b: p[3], r_star: self.domain.r_star.map(|_| p[4]), ..self.domain.clone() }
    }
}

fn domain_from_params(name: &str, law: &str, p: &[f64]) -> MixDomain {
    MixDomain { r_star: (law == "bimix_dc").then(|| p[4]), ..MixDomain::bimix(name, p[0], p[1], p[2], p[3]) }
}

/// `fits` (the array `fit(#{ law, ..., per: "domain" })` returns) as domain fits.
fn domain_fits(fits: &Value) -> Result<Vec<DomainFit>> {
    let fits = fits.as_array().ok_or_else(|| anyhow!("missing key \"fits\" (the array of per-domain fits: fit(#{{ law: \"bimix\" | \"bimix_dc\", runs, per: \"domain\" }}))"))?;
    let mut out: Vec<DomainFit> = Vec::new();
    for (i, f) in fits.iter().enumerate() {
        let law = f.get("law").and_then(Value::as_str).unwrap_or_default();
        let Some((_, names)) = MIX_LAWS.iter().find(|(l, _)| *l == law) else {
            bail!("fits[{i}]: law {law:?}: the mixture tools take per-domain \"bimix\" or \"bimix_dc\" fits");
        };
        let name = match f.get("group") {
            Some(Value::String(s)) => s.clone(),
            Some(g) => g.to_string(),
            None => bail!("fits[{i}]: no \"group\": fit one law per domain (group_by: \"domain\" or per: \"domain\")"),
        };
        if out.iter().any(|d| d.domain.name == name) {
            bail!("fits[{i}]: a second fit for domain {name:?}");
        }
        let p = names
            .iter()
            .map(|n| {
                f.get("params")
                    .and_then(Value::as_array)
                    .and_then(|ps| ps.iter().find(|x| x.get("name").and_then(Value::as_str) == Some(n)))
                    .and_then(|x| x.get("value")?.as_f64())
                    .ok_or_else(|| anyhow!("fits[{i}] (domain {name:?}): no parameter {n:?}"))
            })
            .collect::<Result<Vec<f64>>>()?;
        let draws: Vec<Vec<f64>> = f
            .get("bootstrap_params")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_array()?.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
            .filter(|d| d.len() >= names.len())
            .collect();
        out.push(DomainFit { domain: domain_from_params(&name, law, &p), draws });
    }
    if out.is_empty() {
        bail!("key \"fits\" is empty");
    }
    Ok(out)
}

/// A per-domain map key (`weights`, `bounds`, `budgets`, `max_epochs`) applied to the domains:
/// `parse` turns a value into the setting; a domain the map names without a fit is an error.
fn per_domain_key<T>(request: &Value, key: &str, fits: &mut [DomainFit], mut apply: impl FnMut(&mut MixDomain, &Value) -> Result<T>) -> Result<()> {
    let Some(v) = request.get(key) else { return Ok(()) };
    if let Some(m) = v.as_object() {
        if let Some(unknown) = m.keys().find(|k| !fits.iter().any(|d| &d.domain.name == *k)) {
            bail!("key \"{key}\": no fit for domain {unknown:?} (fitted: {})", fits.iter().map(|d| d.domain.name.as_str()).collect::<Vec<_>>().join(", "));
        }
        for f in fits.iter_mut() {
            if let Some(x) = m.get(&f.domain.name) {
                apply(&mut f.domain, x).map_err(|e| anyhow!("key \"{key}\": domain {:?}: {e}", f.domain.name))?;
            }
        }
    } else {
        // One value for every domain.
        for f in fits.iter_mut() {
            apply(&mut f.domain, v).map_err(|e| anyhow!("key \"{key}\": {e}"))?;
        }
    }
    Ok(())
}

fn num(v: &Value) -> Result<f64> {
    v.as_f64().ok_or_else(|| anyhow!("{v} is not a number"))
}

/// Applies `weights`, `bounds`, `budgets` and `max_epochs`; returns `tokens_per_step`.
fn settings(request: &Value, fits: &mut [DomainFit]) -> Result<Option<f64>> {
    per_domain_key(request, "weights", fits, |d, v| Ok(d.weight = num(v)?))?;
    per_domain_key(request, "bounds", fits, |d, v| match v.as_array().map(|a| a.iter().map(Value::as_f64).collect::<Vec<_>>()) {
        Some(a) if a.len() == 2 && a.iter().all(Option::is_some) => Ok((d.lower, d.upper) = (a[0].unwrap(), a[1].unwrap())),
        _ => bail!("{v} is not [lower, upper]"),
    })?;
    per_domain_key(request, "budgets", fits, |d, v| Ok(d.unique_tokens = Some(num(v)?)))?;
    per_domain_key(request, "max_epochs", fits, |d, v| Ok(d.max_epochs = Some(num(v)?)))?;
    let tps = request.get("tokens_per_step").map(num).transpose().map_err(|e| anyhow!("key \"tokens_per_step\": {e}"))?;
    for f in fits.iter() {
        if f.domain.r_star.is_some() && f.domain.unique_tokens.is_none() {
            bail!("domain {:?}: its data-constrained fit needs its unique tokens: key \"budgets\" (#{{domain: tokens}}, e.g. from a run's accounting.domains[i].epoch_tokens)", f.domain.name);
        }
    }
    if tps.is_none() && fits.iter().any(|f| f.domain.unique_tokens.is_some()) {
        bail!("key \"budgets\" needs \"tokens_per_step\" (total tokens per step, as a run's result.tokens_per_step), so epochs follow from the step");
    }
    Ok(tps)
}

fn request_value(request: Map, keys: &[&str]) -> Result<Value> {
    for k in request.keys() {
        if !keys.contains(&k.as_str()) {
            bail!("{}", crate::keys::unknown_key("", k, keys));
        }
    }
    rhai::serde::from_dynamic(&Dynamic::from_map(request)).map_err(|e| anyhow!("{e}"))
}

fn float_map<'a>(names: impl Iterator<Item = &'a str>, values: impl Iterator<Item = f64>) -> Map {
    names.zip(values).map(|(n, v)| (n.into(), Dynamic::from_float(v))).collect()
}

/// The percentile interval of the total predicted loss of mixture `r` at `step` over the
/// domains' bootstrap draws (draw j of every domain together); `None` without draws.
fn total_interval(fits: &[DomainFit], step: f64, tps: Option<f64>, r: &[f64], level: f64) -> Option<Map> {
    let n = fits.iter().map(|f| f.draws.len()).min()?;
    if n == 0 {
        return None;
    }
    let mut totals: Vec<f64> = (0..n)
        .map(|j| {
            let domains: Vec<MixDomain> = fits.iter().map(|f| f.draw(j)).collect();
            evaluate_mixture(&domains, step, tps, r).predicted_loss
        })
        .filter(|v| v.is_finite())
        .collect();
    let iv = dctk_laws::fit::percentile_interval(&mut totals, level);
    let mut m = Map::new();
    m.insert("lower".into(), Dynamic::from_float(iv.lower));
    m.insert("upper".into(), Dynamic::from_float(iv.upper));
    m.insert("level".into(), Dynamic::from_float(level));
    m.insert("draws".into(), (totals.len() as i64).into());
    Some(m)
}

fn optimum_map(fits: &[DomainFit], opt: &MixtureOptimum, level: f64) -> Map {
    let names = || fits.iter().map(|f| f.domain.name.as_str());
    let mut out = Map::new();
    out.insert("step".into(), Dynamic::from_float(opt.step));
    if let Some(t) = opt.tokens {
        out.insert("tokens".into(), Dynamic::from_float(t));
    }
    out.insert("proportions".into(), float_map(names(), opt.proportions.iter().copied()).into());
    out.insert("losses".into(), float_map(names(), opt.losses.iter().copied()).into());
    let epochs: Map = names().zip(&opt.epochs).filter_map(|(n, e)| Some((n.into(), Dynamic::from_float((*e)?)))).collect();
    if !epochs.is_empty() {
        out.insert("epochs".into(), epochs.into());
    }
    out.insert("predicted_loss".into(), Dynamic::from_float(opt.predicted_loss));
    let tps = opt.tokens.map(|t| t / opt.step);
    if let Some(iv) = total_interval(fits, opt.step, tps, &opt.proportions, level) {
        out.insert("interval".into(), iv.into());
    }
    out
}

fn level_of(request: &Value) -> Result<f64> {
    let level = request.get("level").map(num).transpose()?.unwrap_or(0.95);
    if !(level > 0.0 && level < 1.0) {
        bail!("key \"level\" must be in (0, 1), got {level}");
    }
    Ok(level)
}

pub const OPTIMIZE_KEYS: &[&str] = &["fits", "at_step", "steps", "weights", "bounds", "budgets", "tokens_per_step", "max_epochs", "level"];

/// `optimize_mixture(#{ fits, at_step | steps: [lo, hi], weights, bounds, budgets,
/// tokens_per_step, max_epochs, level })`. See `docs/script-api.md`. Returns `#{ step,
/// tokens, proportions, losses, epochs, predicted_loss, interval }` (`tokens` and `epochs`
/// with budgets; `interval` when the fits were bootstrapped).
pub fn optimize_from_script(request: Map) -> Result<Map> {
    let v = request_value(request, OPTIMIZE_KEYS)?;
    let mut fits = domain_fits(v.get("fits").unwrap_or(&Value::Null))?;
    let tps = settings(&v, &mut fits)?;
    let level = level_of(&v)?;
    let domains: Vec<MixDomain> = fits.iter().map(|f| f.domain.clone()).collect();
    let opt = match (v.get("at_step"), v.get("steps")) {
        (Some(s), None) => optimize_mixture(&domains, num(s).map_err(|e| anyhow!("key \"at_step\": {e}"))?, tps)?,
        (None, Some(r)) => {
            let range: Vec<f64> = r.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
            if range.len() != 2 {
                bail!("key \"steps\" must be [min_step, max_step], got {r}");
            }
            optimize_mixture_and_steps(&domains, range[0], range[1], tps)?
        }
        (Some(_), Some(_)) => bail!("give one of \"at_step\" (a fixed step) and \"steps\" ([min, max]: optimise the total tokens too), not both"),
        (None, None) => bail!("missing key \"at_step\" (the target step, in the fit's s units) or \"steps\" ([min, max])"),
    };
    Ok(optimum_map(&fits, &opt, level))
}

pub const PREDICT_KEYS: &[&str] = &["fits", "runs", "mixture", "at_step", "weights", "budgets", "tokens_per_step", "level"];

/// Relative and R² error of predictions against observations.
fn errors(pairs: &[(f64, f64)]) -> Map {
    let n = pairs.len() as f64;
    let mean = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let ss_tot: f64 = pairs.iter().map(|p| (p.0 - mean).powi(2)).sum();
    let ss_res: f64 = pairs.iter().map(|p| (p.0 - p.1).powi(2)).sum();
    let mre = pairs.iter().map(|p| ((p.1 - p.0) / p.0).abs()).sum::<f64>() / n;
    let mut m = Map::new();
    m.insert("n".into(), (pairs.len() as i64).into());
    m.insert("mre".into(), Dynamic::from_float(mre));
    m.insert("r2".into(), Dynamic::from_float(if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { f64::NAN }));
    m.insert("max_abs_rel_error".into(), Dynamic::from_float(pairs.iter().map(|p| ((p.1 - p.0) / p.0).abs()).fold(0.0, f64::max)));
    m
}

/// `predict_mixture(#{ fits, runs, weights, level })`: every evaluation of the (held-out)
/// runs predicted by the fits, with the errors (MRE, R²) over all rows, over each run's final
/// evaluation, and per domain, and each run's final total predicted vs measured (with an
/// interval when the fits were bootstrapped). `predict_mixture(#{ fits, mixture: #{domain:
/// r}, at_step, weights, budgets, tokens_per_step, level })`: the mixture's predicted losses.
pub fn predict_from_script(request: Map, runs: Option<Array>) -> Result<Map> {
    let v = request_value(request, PREDICT_KEYS)?;
    let mut fits = domain_fits(v.get("fits").unwrap_or(&Value::Null))?;
    let level = level_of(&v)?;
    if let Some(runs) = runs {
        if v.get("mixture").is_some() || v.get("at_step").is_some() {
            bail!("give \"runs\" (held-out runs) or \"mixture\" with \"at_step\", not both");
        }
        per_domain_key(&v, "weights", &mut fits, |d, x| Ok(d.weight = num(x)?))?;
        return held_out(&fits, &mixing_rows(&runs)?, level);
    }
    let tps = settings(&v, &mut fits)?;
    let mix = v.get("mixture").and_then(Value::as_object).ok_or_else(|| anyhow!("missing key \"runs\" (held-out runs) or \"mixture\" (#{{domain: proportion}})"))?;
    if let Some(unknown) = mix.keys().find(|k| !fits.iter().any(|f| &f.domain.name == *k)) {
        bail!("key \"mixture\": no fit for domain {unknown:?}");
    }
    let r: Vec<f64> = fits.iter().map(|f| mix.get(&f.domain.name).map(num).transpose().map(|x| x.unwrap_or(0.0))).collect::<Result<_>>()?;
    let step = v.get("at_step").map(num).transpose()?.ok_or_else(|| anyhow!("missing key \"at_step\""))?;
    let domains: Vec<MixDomain> = fits.iter().map(|f| f.domain.clone()).collect();
    Ok(optimum_map(&fits, &evaluate_mixture(&domains, step, tps, &r), level))
}

fn field(row: &Dynamic, key: &str) -> Option<Dynamic> {
    row.read_lock::<Map>()?.get(key).cloned()
}

fn held_out(fits: &[DomainFit], rows: &Array, level: f64) -> Result<Map> {
    let f64_of = |row: &Dynamic, k: &str| field(row, k).and_then(|x| x.as_float().ok()).unwrap_or(f64::NAN);
    let mut all = Vec::new();
    let mut per_domain: indexmap::IndexMap<String, Vec<(f64, f64)>> = indexmap::IndexMap::new();
    // run -> (final step, domain -> (observed, predicted, row))
    let mut finals: indexmap::IndexMap<String, (f64, Vec<(usize, f64, f64, Dynamic)>)> = indexmap::IndexMap::new();
    let mut out_rows = Array::new();
    for row in rows {
        let domain = field(row, "domain").map(|d| d.to_string()).unwrap_or_default();
        let Some(fi) = fits.iter().position(|f| f.domain.name == domain) else {
            bail!("held-out run {}: domain {domain:?} has no fit (fitted: {})", field(row, "run").map(|r| r.to_string()).unwrap_or_default(), fits.iter().map(|f| f.domain.name.as_str()).collect::<Vec<_>>().join(", "));
        };
        let (step, r, e, observed) = (f64_of(row, "step"), f64_of(row, "r"), f64_of(row, "e"), f64_of(row, "loss"));
        // The row carries its own epochs: L(s, r, e) directly.
        let predicted = fits[fi].domain.loss_at_epochs(step, r, Some(e));
        all.push((observed, predicted));
        per_domain.entry(domain.clone()).or_default().push((observed, predicted));
        let run = field(row, "run").map(|r| r.to_string()).unwrap_or_default();
        let entry = finals.entry(run).or_insert((f64::NEG_INFINITY, vec![]));
        if step > entry.0 {
            *entry = (step, vec![]);
        }
        if step == entry.0 {
            entry.1.push((fi, observed, predicted, row.clone()));
        }
        let mut m = row.read_lock::<Map>().map(|m| m.clone()).unwrap_or_default();
        m.insert("predicted".into(), Dynamic::from_float(predicted));
        out_rows.push(m.into());
    }
    let final_pairs: Vec<(f64, f64)> = finals.values().flat_map(|(_, v)| v.iter().map(|(_, o, p, _)| (*o, *p))).collect();
    let mut run_totals = Array::new();
    for (run, (step, doms)) in &finals {
        let wsum: f64 = doms.iter().map(|(fi, ..)| fits[*fi].domain.weight).sum();
        let measured = doms.iter().map(|(fi, o, ..)| fits[*fi].domain.weight * o).sum::<f64>() / wsum;
        let predicted = doms.iter().map(|(fi, _, p, _)| fits[*fi].domain.weight * p).sum::<f64>() / wsum;
        let mut m = Map::new();
        m.insert("run".into(), run.clone().into());
        m.insert("step".into(), Dynamic::from_float(*step));
        m.insert("measured".into(), Dynamic::from_float(measured));
        m.insert("predicted".into(), Dynamic::from_float(predicted));
        // Interval: the bootstrap draws of the domains this run evaluated, at its rows.
        let n = doms.iter().map(|(fi, ..)| fits[*fi].draws.len()).min().unwrap_or(0);
        if n > 0 {
            let mut totals: Vec<f64> = (0..n)
                .map(|j| {
                    doms.iter()
                        .map(|(fi, _, _, row)| {
                            let f = &fits[*fi];
                            f.domain.weight * f.draw(j).loss_at_epochs(f64_of(row, "step"), f64_of(row, "r"), Some(f64_of(row, "e")))
                        })
                        .sum::<f64>()
                        / wsum
                })
                .filter(|v| v.is_finite())
                .collect();
            let iv = dctk_laws::fit::percentile_interval(&mut totals, level);
            m.insert("lower".into(), Dynamic::from_float(iv.lower));
            m.insert("upper".into(), Dynamic::from_float(iv.upper));
        }
        run_totals.push(m.into());
    }
    let mut out = Map::new();
    out.insert("all".into(), errors(&all).into());
    out.insert("final".into(), errors(&final_pairs).into());
    out.insert("per_domain".into(), per_domain.iter().map(|(d, p)| (d.as_str().into(), Dynamic::from_map(errors(p)))).collect::<Map>().into());
    out.insert("runs".into(), run_totals.into());
    out.insert("rows".into(), out_rows.into());
    Ok(out)
}
