//! Reads what a report shows from the files a study left behind, and nothing else: the
//! study record (`runs/studies/<study>/`: `plan.json`, `results.csv`, `analyses.json`,
//! `changes.json`, `output.txt`) and each planned cell's directory (`status`,
//! `manifest.json`, `result.json`, `metrics.jsonl`, `error.txt`). A cell that is missing,
//! unfinished, failed or diverged is shown as such; an unreadable file is a note in the
//! report, never a failed report.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

use crate::study::records::{PlanRecord, RUN_PLAN};

/// One evaluation of a cell.
#[derive(Clone, Debug)]
pub struct Eval {
    pub step: u64,
    pub tokens: f64,
    pub epoch: f64,
    pub val_loss: f64,
    pub by_domain: IndexMap<String, f64>,
}

/// One logged training step (thinned when read).
#[derive(Clone, Debug)]
pub struct TrainPoint {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
}

/// A planned cell as its files describe it.
#[derive(Clone, Debug)]
pub struct CellView {
    pub label: String,
    pub id: String,
    /// done | diverged | failed | running | interrupted | not run
    pub status: String,
    /// The settings that vary across the study, by name (`lr`, `model`, …).
    pub settings: IndexMap<String, String>,
    pub manifest: Value,
    pub result: Value,
    /// error.txt, or why the cell's files could not be read.
    pub error: Option<String>,
    pub evals: Vec<Eval>,
    pub train: Vec<TrainPoint>,
}

impl CellView {
    pub fn num(&self, key: &str) -> Option<f64> {
        self.result.get(key).and_then(Value::as_f64).or_else(|| self.manifest.pointer(&format!("/spec/{key}")).and_then(Value::as_f64))
    }
    /// FLOPs of training: flops_per_token × tokens trained.
    pub fn flops(&self) -> Option<f64> {
        Some(self.num("flops_per_token")? * self.num("train_tokens")?)
    }
    /// A diverged cell's reason (`step 3: grad norm`).
    pub fn divergence(&self) -> Option<String> {
        let d = self.result.get("divergence").filter(|d| !d.is_null())?;
        Some(format!("diverged at step {}: {}", d["step"], d["cause"].as_str().unwrap_or("non-finite")))
    }
}

/// A study as its files describe it.
#[derive(Clone, Debug)]
pub struct StudyView {
    pub name: String,
    pub script: String,
    pub record_dir: PathBuf,
    pub cells: Vec<CellView>,
    /// Names of the settings that vary across cells, in plan order.
    pub varying: Vec<String>,
    pub results_csv: Option<String>,
    pub analyses: Vec<Value>,
    pub changes: Option<Value>,
    pub output: Option<String>,
    /// Files that could not be read, with why.
    pub notes: Vec<String>,
}

/// At most this many training points per cell: a curve of 10,000 steps drawn as 10,000
/// points only makes the page heavy.
const TRAIN_POINTS: usize = 200;

#[derive(Deserialize)]
struct MetricLine {
    kind: String,
    #[serde(default)]
    step: u64,
    #[serde(default)]
    tokens: Option<f64>,
    #[serde(default)]
    epoch: Option<f64>,
    #[serde(default)]
    val_loss: Option<f64>,
    #[serde(default)]
    val_loss_by_domain: Option<IndexMap<String, Option<f64>>>,
    #[serde(default)]
    loss: Option<f64>,
    #[serde(default)]
    lr: Option<f64>,
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn read_metrics(path: &Path) -> (Vec<Eval>, Vec<TrainPoint>) {
    let Ok(text) = std::fs::read_to_string(path) else { return (vec![], vec![]) };
    let (mut evals, mut train) = (Vec::new(), Vec::new());
    for line in text.lines() {
        // A line cut by a kill is skipped (the cell rewrites from its checkpoint).
        let Ok(m) = serde_json::from_str::<MetricLine>(line) else { continue };
        match m.kind.as_str() {
            "eval" => evals.push(Eval {
                step: m.step,
                tokens: m.tokens.unwrap_or(f64::NAN),
                epoch: m.epoch.unwrap_or(f64::NAN),
                val_loss: m.val_loss.unwrap_or(f64::NAN),
                by_domain: m.val_loss_by_domain.unwrap_or_default().into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect(),
            }),
            "train" => train.push(TrainPoint { step: m.step, loss: m.loss.unwrap_or(f64::NAN), lr: m.lr.unwrap_or(f64::NAN) }),
            _ => {}
        }
    }
    (evals, dctk_laws::plot::thin(&train, TRAIN_POINTS))
}

fn read_cell(runs_root: &Path, label: &str, id: &str, settings: IndexMap<String, String>) -> CellView {
    let dir = crate::study::run_dir(runs_root, id);
    let status = match std::fs::read_to_string(dir.join("status")) {
        Ok(s) => match s.trim() {
            "running" if dir.join("ckpt").is_dir() => "interrupted".to_string(),
            s => s.to_string(),
        },
        Err(_) => "not run".to_string(),
    };
    let (evals, train) = read_metrics(&dir.join("metrics.jsonl"));
    let error = std::fs::read_to_string(dir.join("error.txt")).ok().filter(|e| !e.trim().is_empty()).map(|e| e.trim().to_string());
    CellView {
        label: label.to_string(),
        id: id.to_string(),
        status,
        settings,
        manifest: read_json(&dir.join("manifest.json")).unwrap_or(Value::Null),
        result: read_json(&dir.join("result.json")).unwrap_or(Value::Null),
        error,
        evals,
        train,
    }
}

/// The study whose record is `record_dir`, its cells under `runs_root`.
pub fn collect(record_dir: &Path, runs_root: &Path) -> Result<StudyView> {
    let plan_path = record_dir.join(RUN_PLAN);
    let plan = PlanRecord::load(&plan_path).with_context(|| {
        format!("{}: no study record here (or it is unreadable); run the study first (`dctk run`), then report it", plan_path.display())
    })?;
    // The settings that vary: those a cell has in its own inputs (not in the shared ones),
    // by their top-level name (a model shape's `model.d_model` and a preset's `model` are
    // one setting, `model`).
    let mut raw: Vec<String> = Vec::new();
    for c in &plan.cells {
        for k in c.inputs.0.keys() {
            if let Some(name) = k.strip_prefix("spec.") {
                if name != "name" && !raw.iter().any(|v| v == name) {
                    raw.push(name.to_string());
                }
            }
        }
    }
    let top = |k: &str| k.split('.').next().unwrap_or(k).to_string();
    let mut varying: Vec<String> = Vec::new();
    for k in &raw {
        if !varying.contains(&top(k)) {
            varying.push(top(k));
        }
    }
    let planned: Vec<(String, String, IndexMap<String, String>)> = plan
        .cells
        .iter()
        .map(|c| {
            let inputs = plan.inputs(c);
            let settings = varying
                .iter()
                .map(|v| {
                    let value = match inputs.0.get(&format!("spec.{v}")) {
                        Some(x) => x.clone(),
                        None => {
                            let prefix = format!("spec.{v}.");
                            let parts: Vec<String> = inputs.0.iter().filter_map(|(k, x)| k.strip_prefix(&prefix).map(|sub| format!("{sub}={}", x.trim_matches('"')))).collect();
                            parts.join(",")
                        }
                    };
                    (v.clone(), value)
                })
                .collect();
            (c.label.clone(), c.id.clone(), settings)
        })
        .collect();
    // Reading 1,000 cells' metrics is I/O and JSON: spread it over the cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let chunk = planned.len().div_ceil(threads).max(1);
    let cells: Vec<CellView> = std::thread::scope(|scope| {
        let handles: Vec<_> = planned
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|(l, id, s)| read_cell(runs_root, l, id, s.clone())).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut notes = Vec::new();
    let analyses = match std::fs::read_to_string(record_dir.join(ANALYSES)) {
        Ok(text) => match serde_json::from_str::<Vec<Value>>(&text) {
            Ok(v) => v,
            Err(e) => {
                notes.push(format!("{}: unreadable ({e}); fits are not shown", record_dir.join(ANALYSES).display()));
                vec![]
            }
        },
        Err(_) => vec![],
    };
    let name = record_dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    Ok(StudyView {
        name,
        script: plan.script.clone(),
        record_dir: record_dir.to_path_buf(),
        cells,
        varying,
        results_csv: std::fs::read_to_string(record_dir.join("results.csv")).ok(),
        analyses,
        changes: read_json(&record_dir.join(CHANGES)),
        output: std::fs::read_to_string(record_dir.join(crate::study::session::OUTPUT_RECORD)).ok(),
        notes,
    })
}

/// The study record's file of analyses (fits, data-efficiency multipliers, mixture optima)
/// made by the last complete run's final pass, with their chart data.
pub const ANALYSES: &str = "analyses.json";
/// What changed since the run before the last (ids and why), written by `dctk run`.
pub const CHANGES: &str = "changes.json";
