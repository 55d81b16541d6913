//! Reports: a study's results as one page a researcher reads — `dctk report STUDY.rhai`,
//! or `report(#{...})` in the script, written when the final pass completes.
//!
//! - [`figures`]: the chart data of an analysis (a fit's curve with its bootstrap band,
//!   residuals, iso-loss contours, loss vs epochs), computed when the analysis runs and
//!   kept in the study record's `analyses.json`;
//! - [`collect`]: what the report shows, read from the study record and the cells' files
//!   alone;
//! - [`html`]: the self-contained page (inline SVG from [`dctk_laws::plot`], inline CSS, a
//!   few lines of inline JavaScript).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

pub mod collect;
pub mod figures;
pub mod html;

use crate::study::records::{changed_ids, PlanRecord};

/// What a written report holds.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: usize,
    pub cells: usize,
    pub plots: usize,
}

/// Writes the report of the study recorded in `record_dir` (cells under `runs_root`) to
/// `out` (a directory: `out/report.html`; or a path ending in `.html`), atomically.
pub fn write_report(record_dir: &Path, runs_root: &Path, out: &Path, title: Option<&str>) -> Result<Written> {
    let study = collect::collect(record_dir, runs_root)?;
    let default_title = Path::new(&study.script).file_name().map(|f| format!("dctk report: {}", f.to_string_lossy())).unwrap_or_else(|| "dctk report".into());
    let page = html::render(&study, title.unwrap_or(&default_title));
    let path = if out.extension().is_some_and(|e| e == "html") { out.to_path_buf() } else { out.join("report.html") };
    crate::study::write_atomic(&path, page.as_bytes()).with_context(|| format!("writing the report {}", path.display()))?;
    let plots = page.matches("<figure class=\"plot\"").count();
    Ok(Written { path, bytes: page.len(), cells: study.cells.len(), plots })
}

/// `changes.json`: the cells whose ids changed between the previous run's plan and this
/// one's, with the inputs behind each change.
pub fn changes_json(previous: Option<&PlanRecord>, now: &PlanRecord) -> Value {
    let Some(previous) = previous else {
        return json!({ "previous_run": false, "changed": [] });
    };
    let changed: Vec<Value> = changed_ids(previous, now)
        .into_iter()
        .map(|c| {
            json!({
                "label": c.label, "before": c.before, "after": c.after,
                "changes": c.changes.iter().map(|x| x.to_string()).chain(c.data_causes.iter().map(|d| format!("data setting {d}"))).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "previous_run": true, "changed": changed })
}
