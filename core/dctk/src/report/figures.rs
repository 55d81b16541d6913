//! The figures of an analysis, computed when the analysis runs (the law is at hand then)
//! and kept as chart data in the study record (`analyses.json`), so a report is drawn from
//! files alone — by another lab, without the law's plugin.
//!
//! A fit gets: the data with the fitted law and its bootstrap band (predictions marked as
//! extrapolation), the residuals, and, for laws of model size `N` and tokens `D`, the
//! iso-loss contours over (N, D) with the compute-optimal frontier (C = 6ND); for laws of
//! `N`, `D` and unique tokens `U` (Muennighoff et al. 2023, eq. 5), loss against epochs
//! D/U at fixed U — the data-constrained view.
use dctk_laws::plot::{curve_chart, percentile_band, residual_chart, tick_label, Axis, Chart, Hue, Mark, Marker};
use dctk_laws::{Fit, Inputs, Points};
use serde_json::{json, Value};

/// One named chart of an analysis.
pub fn named(name: &str, chart: Chart) -> Value {
    json!({ "name": name, "chart": chart })
}

fn log_grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n).map(|i| 10f64.powf(lo.log10() + (hi.log10() - lo.log10()) * i as f64 / (n - 1) as f64)).collect()
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        f64::NAN
    } else {
        s[s.len() / 2]
    }
}

/// The law at points given column by column (in the law's input order).
fn predict(fit: &Fit, params: &[f64], cols: Vec<Vec<f64>>) -> Vec<f64> {
    fit.law.predict(params, &Inputs::new(fit.report.inputs.clone(), cols))
}

/// The charts of a fit (see the module doc); `predicted` = the points a script asked the
/// fit about and the predictions there.
pub fn fit_charts(fit: &Fit, predicted: Option<(&Points, &[f64])>) -> Vec<Value> {
    let level = fit.report.bootstrap.as_ref().map_or(0.95, |b| b.level);
    let params = fit.params();
    let mut out = Vec::new();
    match curve_chart(&fit.report, fit.law.as_ref(), &params, &fit.points, &fit.bootstrap_samples, level, predicted) {
        Ok(c) => out.push(named("fit", c)),
        Err(e) => chart_error(&mut out, "fit", &e.to_string()),
    }
    if let Ok(c) = residual_chart(&fit.report, &fit.points) {
        out.push(named("residuals", c));
    }
    let inputs = &fit.report.inputs;
    let has = |n: &str| inputs.iter().any(|i| i == n);
    if has("N") && has("D") {
        if let Some(c) = iso_loss(fit, &params) {
            out.push(named("iso_loss", c));
        }
    }
    if has("N") && has("D") && has("U") {
        if let Some(c) = epochs_view(fit, &params, level) {
            out.push(named("epochs", c));
        }
    }
    out
}

fn chart_error(out: &mut Vec<Value>, name: &str, why: &str) {
    out.push(json!({ "name": name, "error": why }));
}

/// Iso-loss contours of the fitted law over (N, D), the other inputs at their medians,
/// with the compute-optimal frontier: for each budget C = 6ND, the (N, D) of least loss.
fn iso_loss(fit: &Fit, params: &[f64]) -> Option<Chart> {
    let n = fit.points.column("N").ok()?.to_vec();
    let d = fit.points.column("D").ok()?.to_vec();
    let range = |v: &[f64]| v.iter().copied().filter(|x| x.is_finite() && *x > 0.0).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let (n0, n1) = range(&n);
    let (d0, d1) = range(&d);
    if !(n0.is_finite() && d0.is_finite()) {
        return None;
    }
    let (n0, n1, d0, d1) = (n0 / 3.0, n1 * 3.0, d0 / 3.0, d1 * 3.0);
    let gn = log_grid(n0, n1, 48);
    let gd = log_grid(d0, d1, 48);
    let others: Vec<(usize, f64)> = fit
        .report
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, name)| *name != "N" && *name != "D")
        .map(|(k, name)| (k, fit.points.column(name).map(|c| median(c)).unwrap_or(f64::NAN)))
        .collect();
    let at = |ns: &[f64], ds: &[f64]| -> Vec<f64> {
        let cols: Vec<Vec<f64>> = fit
            .report
            .inputs
            .iter()
            .enumerate()
            .map(|(k, name)| match name.as_str() {
                "N" => ns.to_vec(),
                "D" => ds.to_vec(),
                _ => vec![others.iter().find(|(j, _)| *j == k).map_or(f64::NAN, |o| o.1); ns.len()],
            })
            .collect();
        predict(fit, params, cols)
    };
    // z[j][i] at (N = gn[i], D = gd[j]).
    let (mut ns, mut ds) = (Vec::new(), Vec::new());
    for dj in &gd {
        for ni in &gn {
            ns.push(*ni);
            ds.push(*dj);
        }
    }
    let flat = at(&ns, &ds);
    let z: Vec<Vec<f64>> = flat.chunks(gn.len()).map(|r| r.to_vec()).collect();
    let mut finite: Vec<f64> = flat.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.len() < 4 {
        return None;
    }
    finite.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| finite[((finite.len() - 1) as f64 * p) as usize];
    let levels: Vec<f64> = (1..=6).map(|k| q(k as f64 / 7.0)).collect();
    // The frontier: budgets between the grid's corners, N on a fine grid.
    let fine_n = log_grid(n0, n1, 240);
    let mut frontier = Vec::new();
    for c in log_grid(6.0 * n0 * d0 * 10.0, 6.0 * n1 * d1 / 10.0, 24) {
        let dd: Vec<f64> = fine_n.iter().map(|n| c / (6.0 * n)).collect();
        let l = at(&fine_n, &dd);
        let valid: Vec<usize> = (0..fine_n.len()).filter(|&k| l[k].is_finite() && dd[k] >= d0 && dd[k] <= d1).collect();
        if let Some(&k) = valid.iter().min_by(|a, b| l[**a].total_cmp(&l[**b])) {
            // An optimum at the edge of the searched range is the range's, not the law's.
            if valid.len() > 2 && k != valid[0] && k != *valid.last().unwrap() {
                frontier.push((fine_n[k], dd[k]));
            }
        }
    }
    let fixed = others
        .iter()
        .map(|(k, v)| format!("{} = {}", fit.report.inputs[*k], tick_label(*v)))
        .collect::<Vec<_>>()
        .join(", ");
    let title = if fixed.is_empty() { format!("{}: iso-loss contours", fit.report.law) } else { format!("{}: iso-loss contours at {fixed} (medians)", fit.report.law) };
    let mut chart = Chart::new(title, Axis::log("N (parameters)"), Axis::log("D (training tokens)")).with(Mark::Contour { x: gn, y: gd, z, levels });
    if frontier.len() > 1 {
        chart.push(Mark::Line { points: frontier, hue: Hue::Category(3), label: Some("compute-optimal (C = 6ND)".into()), dashed: false });
    }
    chart.push(Mark::Points { points: n.into_iter().zip(d).collect(), hue: Hue::Black, label: Some("runs".into()), marker: Marker::Dot });
    Some(chart)
}

/// Loss against epochs (D/U) at each run's (N, U), the law's curve with its band.
fn epochs_view(fit: &Fit, params: &[f64], level: f64) -> Option<Chart> {
    let n = fit.points.column("N").ok()?.to_vec();
    let d = fit.points.column("D").ok()?.to_vec();
    let u = fit.points.column("U").ok()?.to_vec();
    let mut groups: Vec<(f64, f64)> = Vec::new();
    for (a, b) in n.iter().zip(&u) {
        if !groups.contains(&(*a, *b)) {
            groups.push((*a, *b));
        }
    }
    groups.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    // Six curves at most: the smallest and largest of each axis and their neighbours.
    if groups.len() > 6 {
        let step = (groups.len() - 1) as f64 / 5.0;
        groups = (0..6).map(|k| groups[(k as f64 * step).round() as usize]).collect();
    }
    let e: Vec<f64> = d.iter().zip(&u).map(|(d, u)| d / u).collect();
    let (e0, e1) = e.iter().copied().filter(|x| x.is_finite() && *x > 0.0).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !e0.is_finite() {
        return None;
    }
    let grid = log_grid(e0, e1 * 4.0, 60);
    let mut chart = Chart::new(format!("{}: loss against epochs at fixed unique tokens", fit.report.law), Axis::log("epochs (D / U)"), Axis::linear("loss"));
    for (g, (gn, gu)) in groups.iter().enumerate() {
        let hue = Hue::Category(g);
        let cols = |ps: &[f64]| -> Vec<Vec<f64>> {
            fit.report
                .inputs
                .iter()
                .map(|name| match name.as_str() {
                    "N" => vec![*gn; ps.len()],
                    "U" => vec![*gu; ps.len()],
                    _ => ps.iter().map(|e| e * gu).collect(),
                })
                .collect()
        };
        if fit.bootstrap_samples.len() >= 10 {
            let draws: Vec<Vec<f64>> = fit.bootstrap_samples.iter().map(|p| predict(fit, p, cols(&grid))).collect();
            let (lower, upper) = percentile_band(&draws, level);
            chart.push(Mark::Band { x: grid.clone(), lower, upper, hue, label: None });
        }
        let y = predict(fit, params, cols(&grid));
        let (inside, beyond): (Vec<(f64, f64)>, Vec<(f64, f64)>) = grid.iter().copied().zip(y).partition(|p| p.0 <= e1);
        chart.push(Mark::Line { points: inside.clone(), hue, label: Some(format!("N = {}, U = {}", tick_label(*gn), tick_label(*gu))), dashed: false });
        let mut beyond = beyond;
        if let Some(last) = inside.last() {
            beyond.insert(0, *last);
        }
        if beyond.len() > 1 {
            chart.push(Mark::Line { points: beyond, hue, label: None, dashed: true });
        }
        let obs: Vec<(f64, f64)> = (0..n.len()).filter(|&i| n[i] == *gn && u[i] == *gu).map(|i| (e[i], fit.report.observed[i])).collect();
        chart.push(Mark::Points { points: obs, hue, label: None, marker: Marker::Dot });
    }
    Some(chart)
}
