//! `dctk run STUDY.rhai`: run a study. Finished cells are reused, interrupted cells resume
//! from their checkpoints, pending cells run in parallel: running a study again is always
//! safe, and gives the same numbers.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};

use super::args::{session_options, study_args};
use crate::script::Study;
use crate::study::bundle::{compare_with_bundle, report_bundle_differences};
use crate::study::cache::how_to_retry;
use crate::study::Status;
use crate::study::execute::slurm::RunConfig;
use crate::study::execute::{ExecutorKind, ExecutorOptions, ProgressMode};
use crate::study::records::{study_dir, PlanRecord, RUN_PLAN};
use crate::study::session::{plan_record, results_table};
use crate::study::session::{Mode, Session};

pub fn cli() -> Command {
    study_args(Command::new("run").about("Run a study: plan its cells, reuse finished ones, run the rest in parallel"))
        .arg(
            Arg::new("jobs")
                .long("jobs")
                .short('j')
                .value_parser(value_parser!(usize))
                .default_value("1")
                .help("Cells run at once (CPU threads are split evenly between them); with CUDA GPUs, one GPU per cell and the default is the number of GPUs"),
        )
        .arg(
            Arg::new("threads")
                .long("threads")
                .value_parser(value_parser!(usize))
                .default_value("0")
                .help("CPU threads in all (0 = every core); each cell gets threads / jobs"),
        )
        .arg(Arg::new("quiet").long("quiet").short('q').action(ArgAction::SetTrue).help("No progress (failures only); otherwise bars on a terminal, one line per cell event and a status line every 30 s when piped (DCTK_PROGRESS=bars|lines|off, DCTK_PROGRESS_INTERVAL_S)"))
        .arg(Arg::new("rerun-failed").long("rerun-failed").action(ArgAction::SetTrue).help("Run failed cells again"))
        .arg(
            Arg::new("accept-code-change")
                .long("accept-code-change")
                .action(ArgAction::SetTrue)
                .help("Reuse finished results of another dctk build for cells whose other inputs are the same (recorded in their manifests)"),
        )
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
            Arg::new("executor")
                .long("executor")
                .value_parser(["local", "slurm"])
                .help("Where cells run: this machine (default; also DCTK_EXECUTOR) or a Slurm cluster, one job array per round"),
        )
        .arg(Arg::new("partition").long("partition").help("slurm: the partition of each task"))
        .arg(Arg::new("account").long("account").help("slurm: the account of each task"))
        .arg(Arg::new("cpus-per-cell").long("cpus-per-cell").value_parser(value_parser!(u32)).help("slurm: CPUs of each task, also the cell's threads (default: --threads / --jobs)"))
        .arg(Arg::new("gpus-per-cell").long("gpus-per-cell").value_parser(value_parser!(u32)).help("slurm: GPUs of each task (--gres=gpu:N)"))
        .arg(Arg::new("mem").long("mem").help("slurm: memory of each task (8G)"))
        .arg(Arg::new("time").long("time").help("slurm: time limit of each task (2:00:00); the task checkpoints and requeues itself before it"))
        .arg(Arg::new("array-throttle").long("array-throttle").value_parser(value_parser!(usize)).help("slurm: at most K tasks of an array at once (--array=...%K)"))
        .arg(
            Arg::new("signal-before")
                .long("signal-before")
                .value_parser(value_parser!(u32))
                .default_value("120")
                .help("slurm: seconds before the time limit at which a task checkpoints and requeues itself (--signal=B:USR1@S)"),
        )
        .arg(Arg::new("sbatch").long("sbatch").action(ArgAction::Append).help("slurm: an extra #SBATCH line, e.g. --sbatch=--qos=high (repeatable)"))
        .arg(
            Arg::new("stop-after-steps")
                .long("stop-after-steps")
                .value_parser(value_parser!(u64))
                .hide(true)
                .help("Stop each cell after N steps, leaving it resumable (for resume tests)"),
        )
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let script = args.get_one::<PathBuf>("script").unwrap().clone();
    let cancel = crate::env::cancel_on_signals()?;
    let mut executor = ExecutorOptions::new(
        *args.get_one::<usize>("jobs").unwrap(),
        *args.get_one::<usize>("threads").unwrap(),
        ProgressMode::detect(args.get_flag("quiet")),
        args.get_flag("fail-fast"),
    );
    executor.stop_after_steps = args.get_one::<u64>("stop-after-steps").copied();
    // One cell per GPU on a machine with CUDA; -j defaults to the number of GPUs.
    executor.gpus = crate::study::execute::visible_gpus();
    if !executor.gpus.is_empty() && args.value_source("jobs") == Some(clap::parser::ValueSource::DefaultValue) {
        executor.jobs = executor.gpus.len();
        executor.threads_per_cell = (executor.threads_per_cell / executor.jobs as i32).max(1);
    }
    // Flags, then DCTK_EXECUTOR, then the study's dctk.ron (this machine's settings, kept
    // out of the shareable script), then local.
    let script_dir = script.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let (config, config_path) = RunConfig::load(script_dir)?;
    let from = |what: &str| match &config_path {
        Some(p) => format!("{what} in {}", p.display()),
        None => what.to_string(),
    };
    let kind = args
        .get_one::<String>("executor")
        .cloned()
        .map(|k| (k, "--executor".to_string()))
        .or_else(|| std::env::var("DCTK_EXECUTOR").ok().map(|k| (k, "DCTK_EXECUTOR".to_string())))
        .or_else(|| config.executor.clone().map(|k| (k, from("executor"))))
        .unwrap_or_else(|| ("local".into(), String::new()));
    executor.kind = match kind.0.as_str() {
        "local" => ExecutorKind::Local,
        "slurm" => {
            // dctk.ron's settings, each overridden by its flag.
            let mut o = config.slurm.clone();
            let text = |name: &str, v: &mut Option<String>| {
                if let Some(x) = args.get_one::<String>(name) {
                    *v = Some(x.clone());
                }
            };
            text("partition", &mut o.partition);
            text("account", &mut o.account);
            text("mem", &mut o.mem);
            text("time", &mut o.time);
            o.cpus_per_cell = args.get_one::<u32>("cpus-per-cell").copied().or(o.cpus_per_cell);
            o.gpus_per_cell = args.get_one::<u32>("gpus-per-cell").copied().or(o.gpus_per_cell);
            o.throttle = args.get_one::<usize>("array-throttle").copied().or(o.throttle);
            if args.value_source("signal-before") != Some(clap::parser::ValueSource::DefaultValue) || config_path.is_none() {
                o.signal_before_s = *args.get_one::<u32>("signal-before").unwrap();
            }
            if let Some(lines) = args.get_many::<String>("sbatch") {
                o.extra = lines.cloned().collect();
            }
            if let Some(c) = o.cpus_per_cell {
                if c == 0 {
                    bail!("--cpus-per-cell must be at least 1");
                }
                executor.threads_per_cell = c as i32;
            }
            ExecutorKind::Slurm(o)
        }
        other => bail!("{}: executor \"{other}\": the executors are local and slurm", kind.1),
    };
    let opts = session_options(args, Mode::Run, executor, cancel)?;
    let runs_root = opts.runs_root.clone();
    let record_dir = study_dir(&runs_root, &script);
    let study = Study::new(opts, &script);
    let mut check_bundle = |s: &Session| report_bundle_differences(s);
    let outcome = study.run(&mut check_bundle);
    // Whatever happened, remember the cells this invocation planned, and write the
    // results table of every planned cell (a failed or unfinished one is a row with its
    // status), so one failed cell does not cost the table of the others.
    let record = plan_record(&study.session);
    let previous = PlanRecord::load(&record_dir.join(RUN_PLAN));
    record.save_merged(&record_dir.join(RUN_PLAN), previous.as_ref())?;
    // What changed since the run before (kept until the ids change again): the report's "what changed".
    let changes = crate::report::changes_json(previous.as_ref(), &record);
    if previous.is_none() || changes["changed"].as_array().is_some_and(|c| !c.is_empty()) {
        crate::study::write_atomic(&record_dir.join(crate::report::collect::CHANGES), &serde_json::to_vec_pretty(&changes)?)?;
    }
    let results = record_dir.join("results.csv");
    let cells = study.session.cells.lock().unwrap().len();
    if cells > 0 {
        let table = results_table(&study.session);
        table.write(&results)?;
        // Rerunning an exported bundle: say how its numbers compare, never imply equality.
        if let Some(report) = compare_with_bundle(&study.session.opts.sandbox.study_dir, &table) {
            eprintln!("{report}");
        }
    }
    if let Some(report) = study.session.other_build_report() {
        eprint!("{report}");
    }
    let summary = outcome?;
    // The final pass completed: its analyses are the study's, and the reports it asked for
    // can be drawn.
    let analyses = std::mem::take(&mut *study.session.analyses.lock().unwrap());
    crate::study::write_atomic(&record_dir.join(crate::report::collect::ANALYSES), &serde_json::to_vec(&analyses)?)?;
    for request in std::mem::take(&mut *study.session.reports.lock().unwrap()) {
        let written = crate::report::write_report(&record_dir, &runs_root, &request.out, request.title.as_deref())?;
        eprintln!("report: {} ({} cell(s), {} plot(s), {:.1} kB)", written.path.display(), written.cells, written.plots, written.bytes as f64 / 1e3);
    }
    let finished = study.session.cells.lock().unwrap().values().filter(|e| e.state.is_finished()).count();
    let reused = finished.saturating_sub(summary.executed + summary.waited);
    eprintln!(
        "study {}: {cells} cell(s), {} run now, {} waited for (run by another dctk meanwhile), {reused} reused, {} round(s) of the script; results table: {}",
        script.display(),
        summary.executed,
        summary.waited,
        summary.rounds,
        results.display()
    );
    if !summary.failed.is_empty() {
        let mut marked_failed = 0;
        for (label, id, msg) in &summary.failed {
            let dir = crate::study::run_dir(&runs_root, id);
            eprintln!("  failed: {label} ({id}): {}; {}", msg.lines().next().unwrap_or(""), how_to_retry(&dir));
            marked_failed += usize::from(Status::read(&dir) == Some(Status::Failed));
        }
        if marked_failed > 0 {
            bail!("{} cell(s) failed (their error.txt says why); `dctk run --rerun-failed` tries them again", summary.failed.len());
        }
        bail!("{} cell(s) did not finish (their processes were killed); run the study again to resume them", summary.failed.len());
    }
    Ok(())
}
