//! Study-level records in `runs/studies/<study>/`: the last plan (labels, ids and inputs,
//! so the next plan can say why an id changed) and the results table.
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::inputs::{diff, CellInputs, Change};
use super::{safe_name, write_atomic, write_ron_atomic};

/// One cell as a plan saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedCell {
    pub label: String,
    pub id: String,
    pub inputs: CellInputs,
}

/// The cells of a plan, in script order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PlanRecord {
    pub script: String,
    pub cells: Vec<PlannedCell>,
}

/// `runs/studies/<stem>-<hash of the script's path>/`: one directory per study file.
pub fn study_dir(runs_root: &Path, script: &Path) -> PathBuf {
    let canonical = script.canonicalize().unwrap_or_else(|_| script.to_path_buf());
    let stem = script.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "study".into());
    let hash = super::content_id(&[canonical.display().to_string().as_bytes()]);
    runs_root.join("studies").join(format!("{}-{}", safe_name(&stem), &hash[..8]))
}

impl PlanRecord {
    pub fn load(path: &Path) -> Option<PlanRecord> {
        ron::from_str(&fs::read_to_string(path).ok()?).ok()
    }

    /// Saves this plan, keeping earlier cells it does not mention (a plan that stopped at
    /// a pending result does not know the cells after it).
    pub fn save_merged(&self, path: &Path, previous: Option<&PlanRecord>) -> Result<()> {
        let mut merged = self.clone();
        if let Some(prev) = previous {
            for c in &prev.cells {
                if !merged.cells.iter().any(|m| m.label == c.label) {
                    merged.cells.push(c.clone());
                }
            }
        }
        write_ron_atomic(path, &merged)
    }
}

/// A cell whose id differs from the one with the same label in `previous`, and why.
pub struct IdChange {
    pub label: String,
    pub before: String,
    pub after: String,
    pub changes: Vec<Change>,
}

/// The cells of `now` whose ids changed since `previous`: matched by label, and, for a
/// new label (a sweep names cells after their settings), matched to the closest cell of
/// the previous plan that is no longer planned (fewest differing inputs).
pub fn changed_ids(previous: &PlanRecord, now: &[PlannedCell]) -> Vec<IdChange> {
    let mut out: Vec<IdChange> = Vec::new();
    let mut unmatched_new = Vec::new();
    for c in now {
        match previous.cells.iter().find(|p| p.label == c.label) {
            Some(old) if old.id != c.id => out.push(IdChange {
                label: c.label.clone(),
                before: old.id.clone(),
                after: c.id.clone(),
                changes: diff(&old.inputs, &c.inputs),
            }),
            Some(_) => {}
            None if !previous.cells.iter().any(|p| p.id == c.id) => unmatched_new.push(c),
            None => {}
        }
    }
    let gone: Vec<&PlannedCell> = previous
        .cells
        .iter()
        .filter(|p| !now.iter().any(|c| c.label == p.label || c.id == p.id))
        .collect();
    if !gone.is_empty() && unmatched_new.len() <= 1000 {
        for c in unmatched_new {
            let best = gone.iter().map(|p| (diff(&p.inputs, &c.inputs), p)).min_by_key(|(d, _)| d.len());
            if let Some((changes, old)) = best {
                out.push(IdChange {
                    label: format!("{} (was {})", c.label, old.label),
                    before: old.id.clone(),
                    after: c.id.clone(),
                    changes,
                });
            }
        }
    }
    out
}

/// A results table: a header and rows of strings, written as CSV (floats in Rust's
/// shortest round-trip form, so equal files mean bitwise-equal numbers).
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn to_csv(&self) -> String {
        let esc = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let mut out = self.columns.iter().map(|c| esc(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
        for r in &self.rows {
            out.push_str(&r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_csv().as_bytes()).with_context(|| format!("writing {}", path.display()))
    }
}
