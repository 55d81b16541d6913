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
use std::sync::Arc;

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
            let csv = rows_to_csv(rows)?;
            let map = ColumnMap::parse(spec.columns.as_deref().unwrap_or(""))?;
            Points::from_csv_reader(csv.as_bytes(), "the runs passed to fit", &map)?
        }
    };
    let opts = spec.fit_options(law.as_ref())?;
    Ok(dctk_laws::fit(law, &points, &opts)?)
}

/// A CSV whose columns are the numeric fields every row has (sorted). Fields only
/// some runs carry (e.g. `resumed_from_step`) are left out; a mapping that asks for
/// one gets the column-mapping error listing the columns that exist.
fn rows_to_csv(rows: &[Vec<(String, f64)>]) -> Result<String> {
    if rows.is_empty() {
        anyhow::bail!("no runs to fit");
    }
    let mut keys: BTreeSet<&str> = rows[0].iter().map(|(k, _)| k.as_str()).collect();
    for row in &rows[1..] {
        let here: BTreeSet<&str> = row.iter().map(|(k, _)| k.as_str()).collect();
        keys = keys.intersection(&here).copied().collect();
    }
    let mut out = keys.iter().copied().collect::<Vec<_>>().join(",");
    for row in rows {
        out.push('\n');
        let value = |k: &str| row.iter().find(|(name, _)| name == k).map(|(_, v)| format!("{v:?}")).unwrap();
        out.push_str(&keys.iter().map(|k| value(k)).collect::<Vec<_>>().join(","));
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
