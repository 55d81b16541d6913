//! The argument groups commands share (cargo's `command_prelude`): the study arguments
//! of `run`, `plan` and `export`, and the session options built from them.
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};

use crate::study::execute::ExecutorOptions;
use crate::study::sandbox::Sandbox;
use crate::study::session::{Mode, SessionOptions};

/// `--runs DIR`: where the cells live (every command that reads or writes cells).
pub fn runs_arg() -> Arg {
    Arg::new("runs")
        .long("runs")
        .value_parser(value_parser!(PathBuf))
        .default_value("runs")
        .help("Directory that holds the cells (runs/<id>/)")
}

/// The arguments `run`, `plan` and `export` share: the script, where runs live, data
/// roots, the operations limit.
pub fn study_args(cmd: Command) -> Command {
    cmd.arg(Arg::new("script").required(true).value_parser(value_parser!(PathBuf)).help("The study, a .rhai file"))
        .arg(runs_arg())
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
        accept_code_change: args.try_get_one::<bool>("accept-code-change").ok().flatten().copied().unwrap_or(false),
        executor,
        cancel,
    })
}

/// Session options of a command that plans and runs nothing (`plan`, `export`).
pub fn plan_options(args: &ArgMatches) -> Result<SessionOptions> {
    session_options(args, Mode::Plan, ExecutorOptions::new(1, 1, crate::study::execute::ProgressMode::Off, false), Arc::new(AtomicBool::new(false)))
}

/// The arguments of commands that load a trained model (`sample`, `score`, `serve`): the
/// run directory, the device and the CPU threads.
pub fn model_args(cmd: Command) -> Command {
    cmd.arg(Arg::new("run").required(true).value_parser(value_parser!(PathBuf)).help("The cell: runs/<id> (finished, or with a checkpoint)"))
        .arg(Arg::new("device").long("device").default_value("auto").help("auto, cpu, cuda or cuda:N"))
        .arg(Arg::new("threads").long("threads").value_parser(value_parser!(i32)).help("libtorch CPU threads (default: libtorch's, all cores)"))
}

#[cfg(feature = "torch")]
/// Loads the model the [`model_args`] name.
pub fn open_model(args: &ArgMatches) -> Result<crate::generate::LoadedModel> {
    if let Some(&t) = args.get_one::<i32>("threads") {
        if t < 1 {
            bail!("--threads must be at least 1, got {t}");
        }
        tch::set_num_threads(t);
    }
    let device = crate::env::resolve_device(args.get_one::<String>("device").unwrap()).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    crate::generate::LoadedModel::open(args.get_one::<PathBuf>("run").unwrap(), device)
}
