//! `dctk export STUDY.rhai --out DIR`: a bundle another lab can rerun (what it holds:
//! [`crate::study::bundle`]).
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{value_parser, Arg, ArgMatches, Command};

use super::args::{plan_options, study_args};
use crate::script::Study;
use crate::study::bundle;

pub fn cli() -> Command {
    study_args(Command::new("export").about("Write a bundle of a study (scripts, inputs, hashes, results) for another lab"))
        .arg(Arg::new("out").long("out").short('o').required(true).value_parser(value_parser!(PathBuf)).help("Bundle directory (must not exist)"))
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let script = args.get_one::<PathBuf>("script").unwrap().clone();
    let out = args.get_one::<PathBuf>("out").unwrap().clone();
    if out.exists() {
        bail!("{}: already exists; choose a new bundle directory", out.display());
    }
    let study = Study::new(plan_options(args)?, &script);
    let end = study.plan()?;
    let b = bundle::export(&study.session, &script, &end, &out)?;
    eprintln!("bundle written to {}: {} cell(s), {} plugin(s), {} data manifest(s)", out.display(), b.cells.len(), b.plugins.len(), b.data.len());
    Ok(())
}
