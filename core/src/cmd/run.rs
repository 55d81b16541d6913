//! `dctk run STUDY.rhai`: run a study script. Finished runs are reused, interrupted
//! runs resume from their checkpoints, so running a study again is always safe.
use std::path::PathBuf;

use anyhow::Result;
use clap::{value_parser, Arg, ArgMatches, Command};

use crate::script::Study;
use crate::study::cell::{CellContext, DataCache};
use crate::train::ExecOptions;

pub fn cli() -> Command {
    Command::new("run")
        .about("Run a study script (train, reuse or resume its runs)")
        .arg(Arg::new("script").required(true).value_parser(value_parser!(PathBuf)).help("The study, a .rhai file"))
        .arg(
            Arg::new("runs")
                .long("runs")
                .value_parser(value_parser!(PathBuf))
                .default_value("runs")
                .help("Directory that holds the runs"),
        )
        .arg(Arg::new("threads").long("threads").value_parser(value_parser!(i32)).help("libtorch CPU threads"))
        .arg(Arg::new("quiet").long("quiet").short('q').action(clap::ArgAction::SetTrue).help("No progress bars"))
        .arg(
            Arg::new("max-operations")
                .long("max-operations")
                .value_parser(value_parser!(u64))
                .default_value("50000000")
                .help("Rhai operations a script may run (runaway-loop guard)"),
        )
        .arg(
            Arg::new("stop-after-steps")
                .long("stop-after-steps")
                .value_parser(value_parser!(u64))
                .hide(true)
                .help("Stop each run after N steps, leaving it resumable (for resume tests)"),
        )
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let script = args.get_one::<PathBuf>("script").unwrap();
    if let Some(&t) = args.get_one::<i32>("threads") {
        tch::set_num_threads(t);
    }
    let base_dir = script.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let study = Study {
        cells: CellContext {
            runs_root: args.get_one::<PathBuf>("runs").unwrap().clone(),
            base_dir,
            exec: ExecOptions {
                progress: !args.get_flag("quiet"),
                stop_after_steps: args.get_one::<u64>("stop-after-steps").copied(),
            },
            data: DataCache::default(),
        },
        max_operations: *args.get_one::<u64>("max-operations").unwrap(),
    };
    study.run_file(script)?;
    Ok(())
}
