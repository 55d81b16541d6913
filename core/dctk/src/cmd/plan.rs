//! `dctk plan STUDY.rhai`: the study's cells without running anything: which are done,
//! pending, failed or running elsewhere; the estimated FLOPs and time of what is pending;
//! and, for every cell whose id changed since the last plan, exactly which inputs changed.
use std::path::PathBuf;

use anyhow::Result;
use clap::{Arg, ArgAction, ArgMatches, Command};

use super::args::{plan_options, study_args};
use crate::script::Study;
use crate::study::bundle::report_bundle_differences;
use crate::study::cache::CellState;
use crate::study::cell::Cell;
use crate::study::records::{changed_ids, study_dir, PlanRecord, LAST_PLAN, RUN_PLAN};
use crate::study::session::plan_record;
use crate::study::rounds::RoundEnd;
use crate::study::session::Session;

pub fn cli() -> Command {
    study_args(Command::new("plan").about("Show a study's cells, their status, cost and what changed; runs nothing"))
        .arg(Arg::new("all").long("all").action(ArgAction::SetTrue).help("List every cell (default: the first 50 and every pending one)"))
        .arg(
            Arg::new("write-manifests")
                .long("write-manifests")
                .action(ArgAction::SetTrue)
                .help("Write the pending cells' manifests (runs/<id>/manifest.ron), runnable by `dctk cell exec runs/<id>` on any scheduler; lists them"),
        )
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let script = args.get_one::<PathBuf>("script").unwrap().clone();
    let opts = plan_options(args)?;
    let record_dir = study_dir(&opts.runs_root, &script);
    let study = Study::new(opts, &script);
    let end = study.plan()?;
    report_bundle_differences(&study.session);
    let record = plan_record(&study.session);
    // Diff against the last plan that was run (`plan.json`, written by `dctk run`); before
    // any run, against the last `dctk plan` (`last-plan.json`).
    let last_run = PlanRecord::load(&record_dir.join(RUN_PLAN));
    let last_plan = PlanRecord::load(&record_dir.join(LAST_PLAN));
    let previous = match (&last_run, &last_plan) {
        (Some(r), _) => Some((r, "since the last plan that was run")),
        (None, Some(p)) => Some((p, "since the last plan (no plan of this study was run yet)")),
        (None, None) => None,
    };
    print!("{}", render(&study.session, &end, previous, &record, args.get_flag("all")));
    if let Some(report) = study.session.other_build_report() {
        print!("{report}");
    }
    record.save_merged(&record_dir.join(LAST_PLAN), last_plan.as_ref())?;
    if args.get_flag("write-manifests") {
        // What `dctk run` writes before a round executes: the cells of this round, ready
        // for any executor (a hand-written job array, another scheduler).
        let pending = study.session.pending();
        for cell in &pending {
            cell.materialize()?;
            println!("dctk cell exec {}", cell.dir_buf().display());
        }
        eprintln!("wrote the manifests of {} pending cell(s) of this round", pending.len());
    }
    // A 10,000-cell plan holds a lot of small allocations: let the OS take them back.
    std::mem::forget(study);
    Ok(())
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
fn render(s: &Session, end: &RoundEnd, previous: Option<(&PlanRecord, &str)>, record: &PlanRecord, all: bool) -> String {
    use std::fmt::Write;
    let cells = s.cells.lock().unwrap();
    let mut out = String::new();
    let count = |name: &str| cells.values().filter(|e| e.state.name() == name).count();
    let pending_flops: f64 = cells.values().filter(|e| !matches!(e.state, CellState::Finished(_))).map(|e| e.cell.flops()).sum();
    // Throughput measured on this study's finished cells (FLOP/s of one cell process).
    let mut rates: Vec<f64> = cells
        .values()
        .filter_map(|e| match &e.state {
            CellState::Finished(r) if r.tokens_per_s > 0.0 => Some(r.flops_per_token * r.tokens_per_s),
            _ => None,
        })
        .collect();
    let mut measured_on = "finished cell(s)";
    if rates.is_empty() {
        // After an edit no planned cell is finished yet: measure on the cells of this
        // study's last run (a few suffice).
        if let Some((prev, _)) = previous {
            rates = prev
                .cells
                .iter()
                .filter_map(|c| match CellState::read(&crate::study::run_dir(&s.opts.runs_root, &c.id)) {
                    CellState::Finished(r) if r.tokens_per_s > 0.0 => Some(r.flops_per_token * r.tokens_per_s),
                    _ => None,
                })
                .take(32)
                .collect();
            measured_on = "finished cell(s) of this study's earlier plan";
        }
    }
    let _ = writeln!(
        out,
        "study {} (dctk build {}): {} cell(s): {} done, {} diverged, {} failed, {} interrupted, {} running elsewhere, {} new",
        s.script.display(),
        crate::env::BUILD_ID,
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
        let finished = e.state.is_finished();
        if !all && shown >= 50 && finished {
            hidden += 1;
            continue;
        }
        shown += 1;
        let status = match &e.state {
            CellState::Interrupted(Some(step)) => format!("resume@{step}"),
            other => other.name().to_string(),
        };
        match e.cell.as_ref() {
            Cell::Train(m) => {
                let _ = writeln!(
                    out,
                    "{:<12} {:<16} {:>11} {:>11} {:>7} {:>10}  {}",
                    status,
                    m.id,
                    m.params,
                    m.spec.unique_tokens,
                    m.spec.epochs,
                    human_flops(m.flops),
                    m.label
                );
            }
            Cell::Generate(g) => {
                // Cache hits are counted when that is cheap (an openai generator's cache
                // identity is known without loading weights) and the cell is not finished.
                let cached = if finished { None } else { g.cached_requests(&s.opts.runs_root) };
                let cached = cached.map(|n| format!(", {n} cached")).unwrap_or_default();
                let _ = writeln!(out, "{:<12} {:<16} generate: {} request(s){cached}  {}", status, g.id, g.requests, g.label);
            }
        }
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
                "about {} of training at {:.2e} FLOP/s per cell (measured on {} {measured_on}); divide by --jobs on separate devices",
                human_seconds(pending_flops / rate),
                rate,
                rates.len()
            )
        };
        let _ = writeln!(out, "to run: {pending} cell(s), {} training FLOPs, {time}", human_flops(pending_flops));
    } else {
        let _ = writeln!(out, "nothing to run: every cell is finished");
    }
    if let Some((prev, since)) = previous {
        let changes = changed_ids(prev, record);
        if !changes.is_empty() {
            let _ = writeln!(out, "ids changed {since}:");
            for c in &changes {
                let _ = writeln!(out, "  {}: {} → {}", c.label, c.before, c.after);
                for ch in &c.changes {
                    let data = matches!(ch, crate::study::inputs::Change::Changed { name, .. } if name == "data.fingerprint");
                    if data && !c.data_causes.is_empty() {
                        let _ = writeln!(out, "      {ch} (the data changed with {})", c.data_causes.join(", "));
                    } else {
                        let _ = writeln!(out, "      {ch}");
                    }
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
