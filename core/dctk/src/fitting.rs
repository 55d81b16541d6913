//! Law fitting from the host: the glue between studies (runs, CSV files, script
//! rows) and `dctk-laws`, which owns the law forms, the fitter and the evaluator.
//!
//! Both `dctk fit` and Rhai's `fit(#{...})` / `evaluate(#{...})` end here, so they accept
//! the same request (`dctk_laws::FitSpec`) and give the same errors. The points come from
//! the spec's CSV or from rows held in memory ([`Row`]: a study's runs, `read_csv` rows),
//! pass the spec's `where` filter, and are split by its `group_by` into one fit (or
//! evaluation) per group ([`fit_groups`], [`evaluate_groups`]); [`group_table`] renders
//! the groups as one table. A law name that is neither built in nor a formula is looked
//! up among the law plugins. A fit running longer than a second shows a progress bar on
//! stderr (when it is a terminal): see [`FitBar`]. The Rhai side (maps in, maps out) is
//! [`script`].
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use dctk_laws::{in_group, in_thread_pool, Column, Evaluation, Fit, FitPhase, FitProgress, FitSpec, LawForm, Points, ProgressHook, BUILTIN_LAWS};

pub mod mixing;
pub mod script;

/// One cell of an in-memory row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Number(f64),
    Text(String),
}

/// One in-memory row (a run's result, a `read_csv` row): named cells.
pub type Row = Vec<(String, Cell)>;

/// The law `spec` names: a formula, a built-in law or a law plugin.
pub fn resolve_law(spec: &FitSpec) -> Result<Arc<dyn LawForm>> {
    if spec.formula.is_some() || BUILTIN_LAWS.contains(&spec.law.as_str()) {
        return Ok(spec.build_law()?);
    }
    let law: Arc<dyn LawForm> = crate::plugin::law::load_law(&spec.law)
        .with_context(|| format!("law \"{}\" is not built in ({}) and no law plugin of that name loaded", spec.law, BUILTIN_LAWS.join(", ")))?;
    Ok(law)
}

/// The points `spec` selects: its CSV (or `rows`, when given) with its column mapping and
/// `units`, after its `where` filter.
pub fn spec_points(spec: &FitSpec, rows: Option<&[Row]>) -> Result<Points> {
    let points = match rows {
        None => spec.load_points()?,
        Some(rows) => {
            let map = dctk_laws::ColumnMap::parse(spec.columns.as_deref().unwrap_or(""))?;
            let (columns, n) = common_columns(rows, spec.units)?;
            Points::from_mixed_columns(columns, n, "the rows passed in", &map)?
        }
    };
    Ok(spec.select_points(points)?)
}

/// Fits `spec` to its points, one fit per group of `group_by` (one unlabelled fit without
/// it), on `threads` threads (all cores when `None`; the fit does not depend on it).
pub fn fit_groups(spec: &FitSpec, rows: Option<&[Row]>, threads: Option<usize>) -> Result<Vec<(Option<String>, Fit)>> {
    let law = resolve_law(spec)?;
    let groups = spec.split_groups(spec_points(spec, rows)?)?;
    groups
        .into_iter()
        .map(|(group, points)| {
            let mut opts = spec.options_for(law.as_ref(), &points).map_err(|e| in_group(&group, e))?;
            let bar = FitBar::on_stderr(group.as_deref());
            opts.progress = bar.as_ref().map(FitBar::hook);
            let fitted = in_thread_pool(threads, || dctk_laws::fit(law.clone(), &points, &opts))?;
            if let Some(bar) = bar {
                bar.bar.finish_and_clear();
            }
            Ok((group.clone(), fitted.map_err(|e| in_group(&group, e))?))
        })
        .collect()
}

/// The one fit of a spec without `group_by` (the study's `fit(#{...})` and `dctk fit`).
pub fn fit_spec(spec: &FitSpec, rows: Option<&[Row]>) -> Result<Fit> {
    let mut fits = fit_groups(spec, rows, None)?;
    Ok(fits.remove(0).1)
}

/// `spec`'s law at the parameters `named` (plus the spec's `fixed`) on its points, per
/// group of `group_by`: predictions, residuals, R² on the loss scale, the objective.
pub fn evaluate_groups(spec: &FitSpec, rows: Option<&[Row]>, named: &[(String, f64)]) -> Result<Vec<(Option<String>, Evaluation)>> {
    let law = resolve_law(spec)?;
    let groups = spec.split_groups(spec_points(spec, rows)?)?;
    groups
        .into_iter()
        .map(|(group, points)| {
            let e = spec.evaluate_named(law.as_ref(), &points, named).map_err(|e| in_group(&group, e))?;
            Ok((group, e))
        })
        .collect()
}

/// The columns every row has (in the first row's order), with their row count. A column
/// whose cells are all numbers is numeric; any other is read as text, then as numbers if
/// every cell parses (with unit suffixes when `units`: `2.8B`). Fields only some rows
/// carry (e.g. `resumed_from_step`) are left out; a mapping that asks for one gets the
/// column-mapping error listing the columns that exist.
fn common_columns(rows: &[Row], units: bool) -> Result<(Vec<(String, Column)>, usize)> {
    if rows.is_empty() {
        anyhow::bail!("no rows (runs) to fit");
    }
    let mut keys: BTreeSet<&str> = rows[0].iter().map(|(k, _)| k.as_str()).collect();
    for row in &rows[1..] {
        let here: BTreeSet<&str> = row.iter().map(|(k, _)| k.as_str()).collect();
        keys = keys.intersection(&here).copied().collect();
    }
    let ordered = rows[0].iter().map(|(k, _)| k.as_str()).filter(|k| keys.contains(k));
    let columns = ordered
        .map(|k| {
            let cells: Vec<&Cell> = rows.iter().map(|row| row.iter().find(|(name, _)| name == k).map(|(_, c)| c).expect("a common key")).collect();
            let numbers: Option<Vec<f64>> = cells.iter().map(|c| if let Cell::Number(x) = c { Some(*x) } else { None }).collect();
            let column = match numbers {
                Some(v) => Column::Numbers(v),
                None => Column::from_cells(
                    cells
                        .iter()
                        .map(|c| match c {
                            Cell::Number(x) => x.to_string(),
                            Cell::Text(s) => s.clone(),
                        })
                        .collect(),
                    units,
                ),
            };
            (k.to_string(), column)
        })
        .collect();
    Ok((columns, rows.len()))
}

/// A number in a table: 6 significant digits, scientific outside [1e-3, 1e6).
fn fmt_num(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 1e-3 && v.abs() < 1e6) {
        format!("{v:.6}")
    } else {
        format!("{v:.6e}")
    }
}

/// Right-aligned columns under a header, two spaces apart.
fn render(header: &[String], body: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len()).map(|i| body.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let line = |cells: &[String]| cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ");
    let mut out = line(header);
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    out.push('\n');
    for r in body {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// One table for a grouped fit: a row per group with its points, parameters (fixed ones
/// marked `*`), objective, R² on the loss scale, mean |relative error| and warning count;
/// then every group's warnings, each naming its group.
pub fn group_table(group_by: &str, fits: &[(Option<String>, Fit)]) -> String {
    let Some((_, first)) = fits.first() else { return String::new() };
    let r = &first.report;
    let mut header: Vec<String> = vec![group_by.into(), "points".into()];
    header.extend(r.params.iter().map(|p| if p.fixed { format!("{}*", p.name) } else { p.name.clone() }));
    header.extend(["objective", "R²(loss)", "ARE", "warnings"].map(String::from));
    let body: Vec<Vec<String>> = fits
        .iter()
        .map(|(g, f)| {
            let r = &f.report;
            let mut row = vec![g.clone().unwrap_or_default(), r.n_points.to_string()];
            row.extend(r.params.iter().map(|p| fmt_num(p.value)));
            row.extend([format!("{:.6e}", r.objective_value), format!("{:.6}", r.metrics.r2_loss), format!("{:.4e}", r.metrics.mean_abs_rel_error), r.warnings.len().to_string()]);
            row
        })
        .collect();
    let mut out = format!("law        {}\nequation   {}\nobjective  {}\n", r.law, r.equation, r.objective);
    out += &format!("groups     {} by {group_by}; ARE = mean |ŷ−y|/y on the loss scale; * = fixed\n\n", fits.len());
    out += &render(&header, &body);
    for (g, f) in fits {
        for w in &f.report.warnings {
            out += &format!("WARNING    {group_by}={}: {}\n", g.as_deref().unwrap_or(""), w.message);
        }
    }
    out
}

/// One table for a grouped evaluation: a row per group with its points, objective and
/// the metrics, each named by its scale.
pub fn evaluation_table(group_by: &str, evals: &[(Option<String>, Evaluation)]) -> String {
    let Some((_, first)) = evals.first() else { return String::new() };
    // The fit-space RSS is its own column only when it differs from the loss-scale one.
    let ln = first.metrics.fit_space == dctk_laws::FitSpace::Ln;
    let mut header: Vec<String> = vec![group_by.into(), "points".into(), "objective".into(), "R²(loss)".into(), "RSS(loss)".into()];
    if ln {
        header.push("RSS(ln)".into());
    }
    header.extend(["ARE".into(), "max ARE".into()]);
    let body: Vec<Vec<String>> = evals
        .iter()
        .map(|(g, e)| {
            let m = &e.metrics;
            let mut row = vec![g.clone().unwrap_or_default(), e.n_points.to_string(), format!("{:.6e}", e.objective_value), format!("{:.6}", m.r2_loss), format!("{:.6e}", m.rss_loss)];
            if ln {
                row.push(format!("{:.6e}", m.rss_fit_space));
            }
            row.extend([format!("{:.4e}", m.mean_abs_rel_error), format!("{:.4e}", m.max_abs_rel_error)]);
            row
        })
        .collect();
    let params = first.params.iter().map(|(n, v)| format!("{n}={}", fmt_num(*v))).collect::<Vec<_>>().join(" ");
    let mut out = format!("law        {}\nequation   {}\nobjective  {}\n", first.law, first.equation, first.objective);
    out += &format!("evaluated  at {params} (nothing fitted), {} groups by {group_by}; ARE = mean |ŷ−y|/y\n\n", evals.len());
    out += &render(&header, &body);
    out
}

/// Predictions as one table: the group (with `group_by`), the inputs, then `loss` and,
/// when the fits have intervals, their bounds; `per_group` holds each group's predictions
/// at the points `at` (columns named `inputs`).
pub fn prediction_table(group_by: Option<&str>, inputs: &[String], at: &[Vec<f64>], per_group: &[(Option<String>, Vec<dctk_laws::Prediction>)]) -> String {
    let mut header: Vec<String> = group_by.map(|by| vec![by.to_string()]).unwrap_or_default();
    header.extend(inputs.iter().cloned());
    header.push("loss".into());
    let intervals = per_group.iter().any(|(_, ps)| ps.iter().any(|p| p.interval.is_some()));
    if intervals {
        header.extend(["lower".into(), "upper".into()]);
    }
    let mut body: Vec<Vec<String>> = Vec::new();
    for (group, predictions) in per_group {
        for (i, p) in predictions.iter().enumerate() {
            let mut row: Vec<String> = group_by.map(|_| vec![group.clone().unwrap_or_default()]).unwrap_or_default();
            row.extend(at.iter().map(|col| fmt_num(col[i])));
            row.push(format!("{:.6}", p.value));
            if intervals {
                let (lo, hi) = p.interval.map_or(("-".into(), "-".into()), |iv| (format!("{:.6}", iv.lower), format!("{:.6}", iv.upper)));
                row.extend([lo, hi]);
            }
            body.push(row);
        }
    }
    render(&header, &body)
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
    fn on_stderr(group: Option<&str>) -> Option<FitBar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::hidden();
        let label = group.map_or("fit".to_string(), |g| format!("fit {g}"));
        bar.set_style(ProgressStyle::with_template(&format!("{label}: {{msg}} [{{bar:30}}] {{pos}}/{{len}} ({{elapsed}})")).ok()?.progress_chars("=> "));
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

/// Writes `<stem>.residuals.svg` and `<stem>.curve.svg` into `dir`; returns their paths.
pub fn write_plots(fit: &Fit, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let residuals = dir.join(format!("{stem}.residuals.svg"));
    let curve = dir.join(format!("{stem}.curve.svg"));
    fit.write_residual_svg(&residuals)?;
    fit.write_curve_svg(&curve)?;
    Ok((residuals, curve))
}

/// A file-name-safe form of a group label (for per-group plot files).
pub fn file_stem(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}
