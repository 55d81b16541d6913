//! `dctk plan STUDY.rhai`: the study's cells without running anything: which are done,
//! pending, failed or running elsewhere; the estimated FLOPs and time of what is pending;
//! and, for every cell whose id changed since the last plan, exactly which inputs changed.
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::script::{Mode, RoundEnd, Session, Study};
use crate::study::cell::CellState;
use crate::study::executor::ExecutorOptions;
use crate::study::record::{changed_ids, study_dir, PlanRecord, PlannedCell, Table};

pub fn cli() -> Command {
    crate::cmd::run::study_args(Command::new("plan").about("Show a study's cells, their status, cost and what changed; runs nothing"))
        .arg(Arg::new("all").long("all").action(ArgAction::SetTrue).help("List every cell (default: the first 50 and every pending one)"))
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let script = args.get_one::<PathBuf>("script").unwrap().clone();
    let opts = crate::cmd::run::session_options(
        args,
        Mode::Plan,
        ExecutorOptions::new(1, 1, false, false),
        Arc::new(AtomicBool::new(false)),
    )?;
    let record_dir = study_dir(&opts.runs_root, &script);
    let study = Study::new(opts, &script);
    let end = study.plan()?;
    crate::cmd::export::report_bundle_differences(&study.session);
    let record = plan_record(&study.session);
    let previous = PlanRecord::load(&record_dir.join("plan.json"));
    print!("{}", render(&study.session, &end, previous.as_ref(), &record, args.get_flag("all")));
    record.save_merged(&record_dir.join("plan.json"), previous.as_ref())?;
    // A 10,000-cell plan holds a lot of small allocations: let the OS take them back.
    std::mem::forget(study);
    Ok(())
}

/// The planned cells of a session, as a plan record.
pub fn plan_record(s: &Session) -> PlanRecord {
    let cells = s.cells.lock().unwrap();
    PlanRecord::from_cells(
        s.script.display().to_string(),
        cells.values().map(|e| PlannedCell { label: e.cell.label.clone(), id: e.cell.id.clone(), inputs: e.cell.inputs.clone() }).collect(),
    )
}

fn human_flops(f: f64) -> String {
    format!("{f:.2e}")
}

fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The plan as text.
pub fn render(s: &Session, end: &RoundEnd, previous: Option<&PlanRecord>, record: &PlanRecord, all: bool) -> String {
    use std::fmt::Write;
    let cells = s.cells.lock().unwrap();
    let mut out = String::new();
    let count = |name: &str| cells.values().filter(|e| e.state.name() == name).count();
    let pending_flops: f64 = cells.values().filter(|e| !matches!(e.state, CellState::Finished(_))).map(|e| e.cell.flops).sum();
    // Throughput measured on this study's finished cells (FLOP/s of one cell process).
    let rates: Vec<f64> = cells
        .values()
        .filter_map(|e| match &e.state {
            CellState::Finished(r) if r.tokens_per_s > 0.0 => Some(r.flops_per_token * r.tokens_per_s),
            _ => None,
        })
        .collect();
    let _ = writeln!(
        out,
        "study {}: {} cell(s): {} done, {} diverged, {} failed, {} interrupted, {} running elsewhere, {} new",
        s.script.display(),
        cells.len(),
        count("done"),
        count("diverged"),
        count("failed"),
        count("interrupted"),
        count("running"),
        count("new"),
    );
    let _ = writeln!(out, "{:<12} {:<16} {:>11} {:>11} {:>7} {:>10}  label", "status", "id", "params", "unique", "epochs", "FLOPs");
    let mut shown = 0;
    let mut hidden = 0;
    for e in cells.values() {
        let m = &e.cell;
        let finished = matches!(e.state, CellState::Finished(_));
        if !all && shown >= 50 && finished {
            hidden += 1;
            continue;
        }
        shown += 1;
        let status = match &e.state {
            CellState::Interrupted(Some(step)) => format!("resume@{step}"),
            other => other.name().to_string(),
        };
        let _ = writeln!(
            out,
            "{:<12} {:<16} {:>11} {:>11} {:>7} {:>10}  {}",
            status,
            e.cell.id,
            m.params,
            m.spec.unique_tokens,
            m.spec.epochs,
            human_flops(e.cell.flops),
            e.cell.label
        );
        if let CellState::Failed(msg) = &e.state {
            let _ = writeln!(out, "{:<12} error: {}", "", msg.lines().next().unwrap_or(""));
        }
    }
    if hidden > 0 {
        let _ = writeln!(out, "… and {hidden} more finished cell(s) (--all lists them)");
    }
    let pending = cells.len() - count("done") - count("diverged");
    if pending > 0 {
        let time = if rates.is_empty() {
            "time unknown until a cell of this study has finished here".to_string()
        } else {
            let rate = rates.iter().sum::<f64>() / rates.len() as f64;
            format!(
                "about {} of training at {:.2e} FLOP/s per cell (measured on {} finished cell(s)); divide by --jobs on separate devices",
                human_seconds(pending_flops / rate),
                rate,
                rates.len()
            )
        };
        let _ = writeln!(out, "to run: {pending} cell(s), {} training FLOPs, {time}", human_flops(pending_flops));
    } else {
        let _ = writeln!(out, "nothing to run: every cell is finished");
    }
    if let Some(prev) = previous {
        let changes = changed_ids(prev, record);
        if !changes.is_empty() {
            let _ = writeln!(out, "ids changed since the last plan:");
            for c in &changes {
                let _ = writeln!(out, "  {}: {} → {}", c.label, c.before, c.after);
                for ch in &c.changes {
                    let _ = writeln!(out, "      {ch}");
                }
            }
        }
    }
    if let RoundEnd::Barrier(line, column) = end {
        let _ = writeln!(
            out,
            "the script reads a result of a pending cell at {}:{line}:{column}: cells it plans after that are known once the cells above have run",
            s.script.display()
        );
    }
    out
}

/// One row per cell, in plan order: what the study measured. Floats use Rust's shortest
/// round-trip form, so two equal tables mean bitwise-equal numbers. Timings are left out
/// (they differ between runs; they are in each cell's result.ron).
pub fn results_table(s: &Session) -> Table {
    let cells = s.cells.lock().unwrap();
    let domains: BTreeSet<String> = cells
        .values()
        .filter_map(|e| match &e.state {
            CellState::Finished(r) => Some(r.final_val_loss_by_domain.keys().cloned().collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut columns: Vec<String> = [
        "label", "id", "status", "model", "params", "unique_tokens", "epochs", "steps", "train_tokens", "final_val_loss", "best_val_loss",
        "final_train_loss",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    columns.extend(domains.iter().map(|d| format!("val_loss.{d}")));
    let rows = cells
        .values()
        .map(|e| {
            let m = &e.cell;
            let model = serde_json::to_value(&m.spec.model).map(|v| v.as_str().map(String::from).unwrap_or(v.to_string())).unwrap_or_default();
            let mut row = vec![e.cell.label.clone(), e.cell.id.clone(), e.state.name().to_string(), model, m.params.to_string()];
            row.push(m.spec.unique_tokens.to_string());
            row.push(m.spec.epochs.to_string());
            match &e.state {
                CellState::Finished(r) => {
                    row.extend([r.steps.to_string(), r.train_tokens.to_string(), r.final_val_loss.to_string(), r.best_val_loss.to_string(), r.final_train_loss.to_string()]);
                    row.extend(domains.iter().map(|d| r.final_val_loss_by_domain.get(d).map(|x| x.to_string()).unwrap_or_default()));
                }
                _ => row.extend(std::iter::repeat_n(String::new(), 5 + domains.len())),
            }
            row
        })
        .collect();
    Table { columns, rows }
}
