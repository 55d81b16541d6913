//! `dctk run STUDY.rhai`: run a study. Finished cells are reused, interrupted cells resume
//! from their checkpoints, pending cells run in parallel: running a study again is always
//! safe, and gives the same numbers.
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};

use crate::script::{Mode, Session, SessionOptions, Study};
use crate::study::executor::ExecutorOptions;
use crate::study::record::{study_dir, PlanRecord};
use crate::study::sandbox::Sandbox;

/// The arguments `run`, `plan` and `export` share: the script, where runs live, data
/// roots, the operations limit.
pub fn study_args(cmd: Command) -> Command {
    cmd.arg(Arg::new("script").required(true).value_parser(value_parser!(PathBuf)).help("The study, a .rhai file"))
        .arg(
            Arg::new("runs")
                .long("runs")
                .value_parser(value_parser!(PathBuf))
                .default_value("runs")
                .help("Directory that holds the cells (runs/<id>/)"),
        )
        .arg(
            Arg::new("data-root")
                .long("data-root")
                .value_parser(value_parser!(PathBuf))
                .action(ArgAction::Append)
                .help("A directory the study may read data from (\"data:NAME\" looks here); repeatable; also DCTK_DATA_ROOTS"),
        )
        .arg(
            Arg::new("max-operations")
                .long("max-operations")
                .value_parser(value_parser!(u64))
                .default_value("50000000")
                .help("Rhai operations one pass of the script may run (runaway-loop guard)"),
        )
}

pub fn cli() -> Command {
    study_args(Command::new("run").about("Run a study: plan its cells, reuse finished ones, run the rest in parallel"))
        .arg(
            Arg::new("jobs")
                .long("jobs")
                .short('j')
                .value_parser(value_parser!(usize))
                .default_value("1")
                .help("Cells run at once (CPU threads are split evenly between them)"),
        )
        .arg(
            Arg::new("threads")
                .long("threads")
                .value_parser(value_parser!(usize))
                .default_value("0")
                .help("CPU threads in all (0 = every core); each cell gets threads / jobs"),
        )
        .arg(Arg::new("quiet").long("quiet").short('q').action(ArgAction::SetTrue).help("No progress bars"))
        .arg(Arg::new("rerun-failed").long("rerun-failed").action(ArgAction::SetTrue).help("Run failed cells again"))
        .arg(
            Arg::new("keep-going")
                .long("keep-going")
                .action(ArgAction::SetTrue)
                .conflicts_with("fail-fast")
                .help("When a cell fails, run the others (the default)"),
        )
        .arg(
            Arg::new("fail-fast")
                .long("fail-fast")
                .action(ArgAction::SetTrue)
                .help("When a cell fails, stop: running cells checkpoint and stop"),
        )
        .arg(
            Arg::new("stop-after-steps")
                .long("stop-after-steps")
                .value_parser(value_parser!(u64))
                .hide(true)
                .help("Stop each cell after N steps, leaving it resumable (for resume tests)"),
        )
}

/// Session options from the shared arguments.
pub fn session_options(args: &ArgMatches, mode: Mode, executor: ExecutorOptions, cancel: Arc<AtomicBool>) -> Result<SessionOptions> {
    let script = args.get_one::<PathBuf>("script").unwrap();
    if !script.is_file() {
        bail!("{}: no such study script", script.display());
    }
    let roots: Vec<PathBuf> = args.get_many::<PathBuf>("data-root").map(|r| r.cloned().collect()).unwrap_or_default();
    let sandbox = Sandbox::new(script, &roots).map_err(anyhow::Error::msg)?;
    Ok(SessionOptions {
        runs_root: args.get_one::<PathBuf>("runs").unwrap().clone(),
        sandbox,
        max_operations: *args.get_one::<u64>("max-operations").unwrap(),
        mode,
        rerun_failed: args.try_get_one::<bool>("rerun-failed").ok().flatten().copied().unwrap_or(false),
        executor,
        cancel,
    })
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let script = args.get_one::<PathBuf>("script").unwrap().clone();
    let cancel = crate::env::cancel_on_signals()?;
    let mut executor = ExecutorOptions::new(
        *args.get_one::<usize>("jobs").unwrap(),
        *args.get_one::<usize>("threads").unwrap(),
        !args.get_flag("quiet"),
        args.get_flag("fail-fast"),
    );
    executor.stop_after_steps = args.get_one::<u64>("stop-after-steps").copied();
    let opts = session_options(args, Mode::Run, executor, cancel)?;
    let runs_root = opts.runs_root.clone();
    let record_dir = study_dir(&runs_root, &script);
    let study = Study::new(opts, &script);
    let mut check_bundle = |s: &Session| crate::cmd::export::report_bundle_differences(s);
    let outcome = study.run(&mut check_bundle);
    // Whatever happened, remember the cells this invocation planned.
    let record = crate::cmd::plan::plan_record(&study.session);
    let previous = PlanRecord::load(&record_dir.join("plan.json"));
    record.save_merged(&record_dir.join("plan.json"), previous.as_ref())?;
    let summary = outcome?;
    let table = crate::cmd::plan::results_table(&study.session);
    let results = record_dir.join("results.csv");
    table.write(&results)?;
    let cells = study.session.cells.lock().unwrap().len();
    eprintln!(
        "study {}: {cells} cell(s), {} run now, {} round(s) of the script; results table: {}",
        script.display(),
        summary.executed,
        summary.rounds,
        results.display()
    );
    if !summary.failed.is_empty() {
        for (label, id, msg) in &summary.failed {
            eprintln!("  failed: {label} ({id}): {}", msg.lines().next().unwrap_or(""));
        }
        bail!("{} cell(s) failed (their error.txt says why); `dctk run --rerun-failed` tries them again", summary.failed.len());
    }
    Ok(())
}
