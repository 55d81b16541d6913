//! Law fitting from the host: the glue between studies (runs, CSV files, script
//! maps) and `dctk-laws`, which owns the law forms and the fitter.
//!
//! Both `dctk fit` and Rhai's `fit(#{...})` end here, so they accept the same request
//! (`dctk_laws::FitSpec`) and give the same errors. A study can fit the results of its
//! own runs: each run's result map becomes one CSV row of its numeric fields, and the
//! usual column mapping (`N=params,D=train_tokens,loss=final_val_loss`) picks from it.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dctk_laws::{ColumnMap, Fit, FitSpec, Points};

/// Fits `spec` to the CSV it names, or to `rows` (one map of numeric fields per run)
/// when given.
pub fn fit_spec(spec: &FitSpec, rows: Option<&[Vec<(String, f64)>]>) -> Result<Fit> {
    match rows {
        None => Ok(spec.run(None)?),
        Some(rows) => {
            let csv = rows_to_csv(rows)?;
            let map = ColumnMap::parse(spec.columns.as_deref().unwrap_or(""))?;
            let points = Points::from_csv_reader(csv.as_bytes(), "the runs passed to fit", &map)?;
            Ok(spec.run(Some(&points))?)
        }
    }
}

/// A CSV whose columns are the union of the rows' keys (sorted); a key missing from a
/// row is an error naming both.
fn rows_to_csv(rows: &[Vec<(String, f64)>]) -> Result<String> {
    if rows.is_empty() {
        anyhow::bail!("fit: no runs to fit");
    }
    let keys: BTreeSet<&str> = rows.iter().flat_map(|r| r.iter().map(|(k, _)| k.as_str())).collect();
    let mut out = keys.iter().copied().collect::<Vec<_>>().join(",");
    for (i, row) in rows.iter().enumerate() {
        out.push('\n');
        let cells: Vec<String> = keys
            .iter()
            .map(|k| {
                row.iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| format!("{v:?}"))
                    .with_context(|| format!("fit: run {i} has no numeric field \"{k}\""))
            })
            .collect::<Result<_>>()?;
        out.push_str(&cells.join(","));
    }
    Ok(out)
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
