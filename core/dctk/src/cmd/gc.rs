//! `dctk gc`: free the disk space of finished cells' checkpoints (never of unfinished
//! ones); what it removes and keeps is [`crate::study::cache::prune_checkpoints`]'s.
use std::path::PathBuf;

use anyhow::Result;
use clap::{Arg, ArgAction, ArgMatches, Command};

use super::args::runs_arg;
use crate::study::cache::prune_checkpoints;

pub fn cli() -> Command {
    Command::new("gc")
        .about("Remove the checkpoints of finished cells (their results, metrics and manifests stay)")
        .arg(runs_arg())
        .arg(Arg::new("dry-run").long("dry-run").action(ArgAction::SetTrue).help("Only say what would be freed"))
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let runs = args.get_one::<PathBuf>("runs").unwrap();
    let dry = args.get_flag("dry-run");
    let p = prune_checkpoints(runs, dry)?;
    eprintln!(
        "{} checkpoints of {} finished cell(s): {} bytes ({:.1} MB){}",
        if dry { "would remove the" } else { "removed the" },
        p.cells,
        p.bytes,
        p.bytes as f64 / 1e6,
        if p.busy > 0 { format!("; {} cell(s) being run by another process were left alone", p.busy) } else { String::new() }
    );
    Ok(())
}
