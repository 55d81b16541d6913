//! `dctk status STUDY.rhai [--watch SECS]`: the cells of a study's last run, from the files
//! alone, for any executor: done, diverged, failed (with the first line of why), running
//! (another process holds the cell's lock; with step/total, loss, tokens/s and ETA from its
//! logged steps), interrupted (resumable, at its checkpoint's step), pending (and the Slurm
//! array it was submitted in, if any).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{value_parser, Arg, ArgMatches, Command};

use super::args::runs_arg;
use crate::study::cache::CellState;
use crate::study::execute::progress::human_duration;
use crate::study::records::{study_dir, PlanRecord, LAST_PLAN, RUN_PLAN};

pub fn cli() -> Command {
    Command::new("status")
        .about("The cells of a study's last run and where each stands, from the files alone (any executor)")
        .arg(Arg::new("script").required(true).value_parser(value_parser!(PathBuf)).help("The study, a .rhai file"))
        .arg(runs_arg())
        .arg(Arg::new("watch").long("watch").value_parser(value_parser!(f64)).help("Print the table again every SECS seconds until every cell has ended"))
}

/// The last `kind: train` record of a cell's metrics.
fn last_step(dir: &Path) -> Option<serde_json::Value> {
    crate::study::last_json_line(&dir.join("metrics.jsonl"), |v| v["kind"] == "train")
}

/// Cell directory → Slurm job id, from the arrays submitted under `runs`.
fn submitted(runs: &Path) -> HashMap<PathBuf, String> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(runs.join(".slurm")) else { return out };
    for e in entries.flatten() {
        let record: Option<serde_json::Value> = std::fs::read(e.path().join("array.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let (Some(record), Ok(cells)) = (record, std::fs::read_to_string(e.path().join("cells.txt"))) else { continue };
        let id = record["job_id"].as_str().unwrap_or("?").to_string();
        for c in cells.lines() {
            out.insert(PathBuf::from(c), id.clone());
        }
    }
    out
}

/// One table of the study's cells; returns whether every cell has ended.
fn table(record: &PlanRecord, runs: &Path) -> (String, bool) {
    let arrays = submitted(runs);
    let mut rows = vec![["cell", "id", "status", "progress", "loss", "tokens/s", "ETA", "final_val_loss / why"].map(String::from).to_vec()];
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    let mut all_ended = true;
    for c in &record.cells {
        let dir = crate::study::run_dir(runs, &c.id);
        let state = CellState::read(&dir);
        let mut name = state.name();
        let (mut progress, mut loss, mut speed, mut eta, mut tail) = Default::default();
        match &state {
            CellState::Finished(r) => tail = format!("{}", r.final_val_loss),
            CellState::Generated(_) => tail = "generated".into(),
            CellState::Failed(m) => tail = m.lines().next().unwrap_or("").to_string(),
            CellState::Interrupted(step) => {
                all_ended = false;
                progress = step.map(|s| format!("checkpoint at step {s}")).unwrap_or_else(|| "no checkpoint".into());
            }
            CellState::New => {
                all_ended = false;
                name = "pending";
                let canonical = dir.canonicalize().unwrap_or(dir.clone());
                tail = arrays.get(&canonical).map(|j| format!("submitted in Slurm job array {j}")).unwrap_or_default();
            }
            CellState::Busy(_) => {
                all_ended = false;
                let manifest: Option<serde_json::Value> = std::fs::read(dir.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
                let total = manifest.as_ref().and_then(|m| m["plan"]["total_steps"].as_u64());
                let per_step = manifest.as_ref().and_then(|m| m["plan"]["tokens_per_step"].as_f64());
                if let Some(s) = last_step(&dir) {
                    let step = s["step"].as_u64().unwrap_or(0);
                    let tps = s["tokens_per_s"].as_f64().unwrap_or(0.0);
                    progress = match total {
                        Some(t) => format!("step {step}/{t} ({:.0}%)", 100.0 * step as f64 / t.max(1) as f64),
                        None => format!("step {step}"),
                    };
                    loss = format!("{:.4}", s["loss"].as_f64().unwrap_or(f64::NAN));
                    speed = format!("{tps:.0}");
                    if let (Some(t), Some(p)) = (total, per_step) {
                        if tps > 0.0 {
                            eta = human_duration(std::time::Duration::from_secs_f64((t.saturating_sub(step)) as f64 * p / tps));
                        }
                    }
                } else {
                    progress = "starting".into();
                }
            }
        }
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some(x) => x.1 += 1,
            None => counts.push((name, 1)),
        }
        rows.push(vec![c.label.clone(), c.id.clone(), name.to_string(), progress, loss, speed, eta, tail]);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|k| rows.iter().map(|r| r[k].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let summary: Vec<String> = counts.iter().map(|(n, k)| format!("{k} {n}")).collect();
    out.push_str(&format!("{} cell(s): {}\n", record.cells.len(), summary.join(", ")));
    (out, all_ended)
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let script = args.get_one::<PathBuf>("script").unwrap();
    if !script.is_file() {
        bail!("{}: no such study script", script.display());
    }
    let runs = args.get_one::<PathBuf>("runs").unwrap();
    let dir = study_dir(runs, script);
    let path = dir.join(RUN_PLAN);
    // The last plan that was run; before any run, the last `dctk plan`.
    let record = PlanRecord::load(&path)
        .or_else(|| PlanRecord::load(&dir.join(LAST_PLAN)))
        .with_context(|| format!("{}: no study record here; plan or run the study first (`dctk plan`, `dctk run`)", path.display()))?;
    let watch = args.get_one::<f64>("watch").copied().filter(|w| *w > 0.0);
    loop {
        let (text, ended) = table(&record, runs);
        print!("{text}");
        match watch {
            Some(w) if !ended => {
                println!();
                std::thread::sleep(std::time::Duration::from_secs_f64(w));
            }
            _ => return Ok(()),
        }
    }
}
