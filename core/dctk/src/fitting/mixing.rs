//! Mixing studies in scripts: Rhai `mixing_rows(runs)` turns a study's runs into the rows a
//! BiMix or Ye et al. fit takes (one per evaluation × domain), `fit(#{ law: "bimix", runs,
//! per: "domain" })` fits one law per domain from them in one call, and
//! `optimize_mixture(#{ fits, at_step, weights, bounds })` finds the mixture the fitted BiMix
//! laws predict best (`dctk_laws::mixture`: exact, via the KKT conditions).
//!
//! A row's proportion `r` is the domain's realized share of the run's training tokens
//! (`accounting.domains[i].tokens_served / accounting.tokens_served`): the mixture weight as
//! served, which differs from the asked weight only where an epoch limit exhausted a domain.
use anyhow::{anyhow, bail, Result};
use dctk_laws::{optimize_bimix, MixDomain};
use rhai::{Array, Dynamic, Map};
use serde_json::Value;

/// The rows of `runs` (result maps): for every evaluation after step 0 and every domain the
/// run trained on and evaluated, `#{ run, domain, step, tokens, epoch, r, loss }`.
pub fn mixing_rows(runs: &Array) -> Result<Array> {
    let mut rows = Array::new();
    for (i, run) in runs.iter().enumerate() {
        let v: Value = rhai::serde::from_dynamic(run).map_err(|e| anyhow!("runs[{i}]: {e}"))?;
        let label = v.get("label").or(v.get("run_id")).and_then(|l| l.as_str()).unwrap_or_default().to_string();
        let what = if label.is_empty() { format!("runs[{i}]") } else { format!("run {label}") };
        let acc = v.get("accounting").ok_or_else(|| anyhow!("{what}: no \"accounting\" (is it a train result?)"))?;
        let total = acc.get("tokens_served").and_then(Value::as_f64).filter(|t| *t > 0.0).ok_or_else(|| anyhow!("{what}: no tokens served"))?;
        let shares: Vec<(String, f64)> = acc
            .get("domains")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| Some((d.get("name")?.as_str()?.to_string(), d.get("tokens_served")?.as_f64()? / total)))
            .collect();
        let curve = v.get("curve").and_then(Value::as_array).ok_or_else(|| anyhow!("{what}: no \"curve\""))?;
        for p in curve {
            let step = p.get("step").and_then(Value::as_f64).unwrap_or(0.0);
            if step <= 0.0 {
                continue;
            }
            for (domain, r) in &shares {
                let Some(loss) = p.get("val_loss_by_domain").and_then(|m| m.get(domain)).and_then(Value::as_f64) else { continue };
                if *r <= 0.0 {
                    continue;
                }
                let mut row = Map::new();
                row.insert("run".into(), label.clone().into());
                row.insert("domain".into(), domain.clone().into());
                row.insert("step".into(), Dynamic::from_float(step));
                row.insert("tokens".into(), Dynamic::from_float(p.get("tokens").and_then(Value::as_f64).unwrap_or(0.0)));
                row.insert("epoch".into(), Dynamic::from_float(p.get("epoch").and_then(Value::as_f64).unwrap_or(0.0)));
                row.insert("r".into(), Dynamic::from_float(*r));
                row.insert("loss".into(), Dynamic::from_float(loss));
                rows.push(row.into());
            }
        }
    }
    if rows.is_empty() {
        bail!("no rows: the runs have no evaluation after step 0 with per-domain validation losses");
    }
    Ok(rows)
}

pub const OPTIMIZE_KEYS: &[&str] = &["fits", "at_step", "weights", "bounds"];

/// `optimize_mixture(#{ fits, at_step, weights, bounds })`: `fits` the array `fit(#{ law:
/// "bimix", ..., group_by or per })` returns (each report's `group` names its domain),
/// `at_step` the target step (in the fit's `s` units), `weights` `#{domain: w}` (default 1 each),
/// `bounds` `#{domain: [lower, upper]}` (default [0, 1]). Returns `#{ step, proportions:
/// #{domain: r}, losses: #{domain: L}, predicted_loss }`.
pub fn optimize_from_script(request: Map) -> Result<Map> {
    for k in request.keys() {
        if !OPTIMIZE_KEYS.contains(&k.as_str()) {
            bail!("{}", crate::keys::unknown_key("", k, OPTIMIZE_KEYS));
        }
    }
    let v: Value = rhai::serde::from_dynamic(&Dynamic::from_map(request)).map_err(|e| anyhow!("{e}"))?;
    let fits = v.get("fits").and_then(Value::as_array).ok_or_else(|| anyhow!("missing key \"fits\" (the array of per-domain BiMix fits)"))?;
    let step = v.get("at_step").and_then(Value::as_f64).ok_or_else(|| anyhow!("missing key \"at_step\" (the target step, in the fit's s units)"))?;
    let weights = v.get("weights").cloned().unwrap_or(Value::Null);
    let bounds = v.get("bounds").cloned().unwrap_or(Value::Null);
    let mut domains = Vec::new();
    for (i, f) in fits.iter().enumerate() {
        let law = f.get("law").and_then(Value::as_str).unwrap_or_default();
        if law != "bimix" {
            bail!("fits[{i}]: law {law:?}: optimize_mixture needs BiMix fits (law: \"bimix\")");
        }
        let name = match f.get("group") {
            Some(Value::String(s)) => s.clone(),
            Some(g) => g.to_string(),
            None => bail!("fits[{i}]: no \"group\": fit one law per domain (group_by: \"domain\" or per: \"domain\")"),
        };
        let param = |p: &str| -> Result<f64> {
            f.get("params")
                .and_then(Value::as_array)
                .and_then(|ps| ps.iter().find(|x| x.get("name").and_then(Value::as_str) == Some(p)))
                .and_then(|x| x.get("value")?.as_f64())
                .ok_or_else(|| anyhow!("fits[{i}] (domain {name:?}): no parameter {p:?}"))
        };
        let weight = match weights.get(&name) {
            None => 1.0,
            Some(w) => w.as_f64().ok_or_else(|| anyhow!("key \"weights\": domain {name:?}: {w} is not a number"))?,
        };
        let (lower, upper) = match bounds.get(&name) {
            None => (0.0, 1.0),
            Some(b) => match b.as_array().map(|a| a.iter().map(Value::as_f64).collect::<Vec<_>>()) {
                Some(a) if a.len() == 2 && a.iter().all(Option::is_some) => (a[0].unwrap(), a[1].unwrap()),
                _ => bail!("key \"bounds\": domain {name:?}: {b} is not [lower, upper]"),
            },
        };
        domains.push(MixDomain { ab: param("AB")?, cb: param("CB")?, a: param("a")?, b: param("b")?, weight, lower, upper, name });
    }
    for (key, map) in [("weights", &weights), ("bounds", &bounds)] {
        if let Some(m) = map.as_object() {
            if let Some(unknown) = m.keys().find(|k| !domains.iter().any(|d| &d.name == *k)) {
                bail!("key \"{key}\": no fit for domain {unknown:?} (fitted: {})", domains.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "));
            }
        }
    }
    let opt = optimize_bimix(&domains, step)?;
    let (mut proportions, mut losses) = (Map::new(), Map::new());
    for (i, d) in domains.iter().enumerate() {
        proportions.insert(d.name.as_str().into(), Dynamic::from_float(opt.proportions[i]));
        losses.insert(d.name.as_str().into(), Dynamic::from_float(opt.losses[i]));
    }
    let mut out = Map::new();
    out.insert("step".into(), Dynamic::from_float(opt.step));
    out.insert("proportions".into(), proportions.into());
    out.insert("losses".into(), losses.into());
    out.insert("predicted_loss".into(), Dynamic::from_float(opt.predicted_loss));
    Ok(out)
}
