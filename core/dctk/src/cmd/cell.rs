//! `dctk cell exec runs/<id>`: execute one planned cell from its `manifest.ron`.
//!
//! This is what `dctk run` launches for every pending cell (one process per cell, see
//! [`crate::study::execute`]), and what one task of a cluster job array runs. The cell
//! locks itself, resumes from its checkpoint, and exits 0 (done or diverged), 2 (failed:
//! `error.txt` says why), 3 (stopped early or cancelled by SIGINT/SIGTERM, checkpointed and
//! resumable) or 75 (another process holds the cell's lock).
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};

use crate::study::cache::CellBusy;
use crate::study::exec_cell::execute;
use crate::study::execute::{EXIT_BUSY, EXIT_FAILED, EXIT_STOPPED};
use crate::train::trainer::StoppedEarly;
use crate::train::ExecOptions;

pub fn cli() -> Command {
    Command::new("cell").about("Execute one planned cell (what `dctk run` launches per cell)").subcommand_required(true).subcommand(
        Command::new("exec")
            .about("Train the cell in DIR from its manifest.ron, resuming from its checkpoint")
            .arg(Arg::new("dir").required(true).value_parser(value_parser!(PathBuf)).help("The cell's directory, runs/<id>"))
            .arg(Arg::new("threads").long("threads").value_parser(value_parser!(i32)).help("libtorch CPU threads"))
            .arg(Arg::new("progress-json").long("progress-json").action(ArgAction::SetTrue).help("Report progress as JSON lines on stdout"))
            .arg(Arg::new("quiet").long("quiet").short('q').action(ArgAction::SetTrue).help("No progress bar"))
            .arg(Arg::new("stop-after-steps").long("stop-after-steps").value_parser(value_parser!(u64)).hide(true)),
    )
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let (_, args) = args.subcommand().expect("subcommand required");
    let dir = args.get_one::<PathBuf>("dir").unwrap();
    if let Some(&t) = args.get_one::<i32>("threads") {
        tch::set_num_threads(t);
    }
    let cancel = crate::env::cancel_on_signals()?;
    let json = args.get_flag("progress-json");
    let opts = ExecOptions {
        progress: !json && !args.get_flag("quiet"),
        progress_json: json,
        stop_after_steps: args.get_one::<u64>("stop-after-steps").copied(),
        cancel: Some(cancel),
    };
    if json {
        // A panic (a bug, or a print to a full disk) still reaches `dctk run`: through the
        // progress pipe, which needs no disk.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report_error(&format!("the cell process panicked: {info}"));
            previous(info);
        }));
    }
    match execute(dir, &opts) {
        Ok(_) => Ok(()),
        Err(e) => {
            let code = if e.downcast_ref::<StoppedEarly>().is_some() {
                EXIT_STOPPED
            } else if e.downcast_ref::<CellBusy>().is_some() {
                EXIT_BUSY
            } else {
                EXIT_FAILED
            };
            let message = format!("{}: {e:#}", dir.display());
            // stderr is the cell's log.txt: on a full disk this write fails too, so never
            // panic on it, and also send the error up the progress pipe.
            let _ = writeln!(std::io::stderr(), "{message}");
            if json && code == EXIT_FAILED {
                report_error(&message);
            }
            std::process::exit(code);
        }
    }
}

/// The cell's error as a progress record on stdout (a pipe to `dctk run`, not a file).
fn report_error(message: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::json!({"event": "error", "message": message}));
    let _ = out.flush();
}
