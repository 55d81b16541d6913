//! Study-level records in `runs/studies/<study>/`: the last plan (labels, ids and inputs,
//! so the next plan can say why an id changed) and the results table (`results.csv`,
//! one row per cell).
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::inputs::{diff, CellInputs, Change};
use super::{safe_name, write_atomic};

/// One cell as a plan saw it. In a [`PlanRecord`], `inputs` holds only what is not in
/// the record's `common` inputs (see [`PlanRecord::inputs`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedCell {
    pub label: String,
    pub id: String,
    pub inputs: CellInputs,
    /// Settings that are not in the id but decide the data it names (`corpus`,
    /// `val_fraction`, `text_field`: they shape an automatic ingest): when the data
    /// fingerprint changes, the plan says which of these changed with it.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub data_settings: IndexMap<String, String>,
}

/// The settings of `spec` behind its data (see [`PlannedCell::data_settings`]).
pub fn data_settings(spec: &crate::train::TrainSpec) -> IndexMap<String, String> {
    let json = serde_json::to_value(spec).unwrap_or_default();
    ["corpus", "val_fraction", "text_field"]
        .iter()
        .filter_map(|k| json.get(*k).map(|v| (k.to_string(), v.to_string())))
        .collect()
}

/// The cells of a plan, in script order: the inputs every cell shares once, then each
/// cell's own. A 10,000-cell sweep shares versions, data hashes and most settings, so this
/// is far smaller (and faster to write and read) than every cell's full list.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PlanRecord {
    pub script: String,
    pub common: CellInputs,
    pub cells: Vec<PlannedCell>,
}

/// The record of the last plan that was run (written by `dctk run`): what the study's
/// results were computed from, and what `dctk plan` diffs against.
pub const RUN_PLAN: &str = "plan.json";
/// The record of the last `dctk plan`, diffed against before any plan was run.
pub const LAST_PLAN: &str = "last-plan.json";

/// `runs/studies/<stem>-<hash of the script's path>/`: one directory per study file.
pub fn study_dir(runs_root: &Path, script: &Path) -> PathBuf {
    let canonical = script.canonicalize().unwrap_or_else(|_| script.to_path_buf());
    let stem = script.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "study".into());
    let hash = super::content_id(&[canonical.display().to_string().as_bytes()]);
    runs_root.join("studies").join(format!("{}-{}", safe_name(&stem), &hash[..8]))
}

impl PlanRecord {
    /// A record of cells given with their full inputs.
    pub fn from_cells(script: String, mut cells: Vec<PlannedCell>) -> PlanRecord {
        let mut common = cells.first().map(|c| c.inputs.clone()).unwrap_or_default();
        for c in cells.iter().skip(1) {
            common.0.retain(|k, v| c.inputs.0.get(k) == Some(v));
        }
        for c in &mut cells {
            c.inputs.0.retain(|k, _| !common.0.contains_key(k));
        }
        PlanRecord { script, common, cells }
    }

    /// A cell's full inputs.
    pub fn inputs(&self, cell: &PlannedCell) -> CellInputs {
        let mut all = self.common.clone();
        all.0.extend(cell.inputs.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    pub fn load(path: &Path) -> Option<PlanRecord> {
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Saves this plan, keeping earlier cells it does not mention (a plan that stopped at
    /// a pending result does not know the cells after it). Nothing is written when the
    /// previous record already says exactly this.
    pub fn save_merged(&self, path: &Path, previous: Option<&PlanRecord>) -> Result<()> {
        let Some(prev) = previous else {
            return write_atomic(path, &serde_json::to_vec(self)?);
        };
        let labels: HashSet<&str> = self.cells.iter().map(|c| c.label.as_str()).collect();
        let kept: Vec<&PlannedCell> = prev.cells.iter().filter(|c| !labels.contains(c.label.as_str())).collect();
        let unchanged = kept.len() + self.cells.len() == prev.cells.len()
            && self.cells.iter().zip(&prev.cells).all(|(a, b)| a.label == b.label && a.id == b.id);
        if unchanged {
            return Ok(());
        }
        if kept.is_empty() {
            return write_atomic(path, &serde_json::to_vec(self)?);
        }
        let mut all: Vec<PlannedCell> = self
            .cells
            .iter()
            .map(|c| PlannedCell { inputs: self.inputs(c), ..c.clone() })
            .collect();
        all.extend(kept.into_iter().map(|c| PlannedCell { inputs: prev.inputs(c), ..c.clone() }));
        let merged = PlanRecord::from_cells(self.script.clone(), all);
        write_atomic(path, &serde_json::to_vec(&merged)?)
    }
}

/// A cell whose id differs from the one with the same label in `previous`, and why.
pub struct IdChange {
    pub label: String,
    pub before: String,
    pub after: String,
    pub changes: Vec<Change>,
    /// The settings outside the id that changed with the data (`val_fraction: 0.05 → 0.1`).
    pub data_causes: Vec<String>,
}

/// Which data settings differ between two planned cells, as `name: before → after`.
fn data_causes(before: &PlannedCell, after: &PlannedCell) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in &after.data_settings {
        match before.data_settings.get(k) {
            Some(b) if b == v => {}
            Some(b) => out.push(format!("{k}: {b} → {v}")),
            None => out.push(format!("{k}: (not recorded) → {v}")),
        }
    }
    out
}

/// The cells of `now` whose ids changed since `previous`: matched by label, and, for a
/// new label (a sweep names cells after their settings), matched to the closest cell of
/// the previous plan that is no longer planned (fewest differing inputs).
pub fn changed_ids(previous: &PlanRecord, now_record: &PlanRecord) -> Vec<IdChange> {
    let now = &now_record.cells;
    let mut out: Vec<IdChange> = Vec::new();
    let mut unmatched_new = Vec::new();
    let by_label: HashMap<&str, &PlannedCell> = previous.cells.iter().map(|p| (p.label.as_str(), p)).collect();
    let previous_ids: HashSet<&str> = previous.cells.iter().map(|p| p.id.as_str()).collect();
    for c in now {
        match by_label.get(c.label.as_str()) {
            Some(old) if old.id != c.id => out.push(IdChange {
                label: c.label.clone(),
                before: old.id.clone(),
                after: c.id.clone(),
                changes: diff(&previous.inputs(old), &now_record.inputs(c)),
                data_causes: data_causes(old, c),
            }),
            Some(_) => {}
            None if !previous_ids.contains(c.id.as_str()) => unmatched_new.push(c),
            None => {}
        }
    }
    let now_labels: HashSet<&str> = now.iter().map(|c| c.label.as_str()).collect();
    let now_ids: HashSet<&str> = now.iter().map(|c| c.id.as_str()).collect();
    let gone: Vec<&PlannedCell> = previous
        .cells
        .iter()
        .filter(|p| !now_labels.contains(p.label.as_str()) && !now_ids.contains(p.id.as_str()))
        .collect();
    // Pairing new labels with gone ones is quadratic: only for edits of a modest size.
    if !gone.is_empty() && unmatched_new.len() * gone.len() <= 250_000 {
        for c in unmatched_new {
            let full = now_record.inputs(c);
            let best = gone.iter().map(|p| (diff(&previous.inputs(p), &full), p)).min_by_key(|(d, _)| d.len());
            if let Some((changes, old)) = best {
                out.push(IdChange {
                    label: format!("{} (was {})", c.label, old.label),
                    before: old.id.clone(),
                    after: c.id.clone(),
                    changes,
                    data_causes: data_causes(old, c),
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
    pub fn to_csv(&self) -> Result<String> {
        let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
        w.write_record(&self.columns)?;
        for r in &self.rows {
            w.write_record(r)?;
        }
        Ok(String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_csv()?.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_quotes_what_csv_needs_and_nothing_else() {
        let t = Table { columns: vec!["label".into(), "x".into()], rows: vec![vec!["a,b".into(), "1.5".into()], vec!["say \"hi\"".into(), "".into()]] };
        assert_eq!(t.to_csv().unwrap(), "label,x\n\"a,b\",1.5\n\"say \"\"hi\"\"\",\n");
    }
}
