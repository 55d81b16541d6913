//! `dctk report STUDY.rhai [--out DIR]`: the study's results as one self-contained HTML
//! page (inline SVG, CSS and a few lines of JavaScript; no network), drawn from the study
//! record and the cells' files alone ([`crate::report`]).
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{value_parser, Arg, ArgMatches, Command};

use super::args::runs_arg;
use crate::study::records::study_dir;

pub fn cli() -> Command {
    Command::new("report")
        .about("Write a study's report: one self-contained HTML page of its cells, curves and fits")
        .arg(Arg::new("script").required(true).value_parser(value_parser!(PathBuf)).help("The study, a .rhai file (run it first)"))
        .arg(runs_arg())
        .arg(
            Arg::new("out")
                .long("out")
                .value_parser(value_parser!(PathBuf))
                .help("Directory for report.html, or a path ending in .html (default: the study record's directory, runs/studies/<study>/)"),
        )
        .arg(Arg::new("title").long("title").help("The page's title (default: the script's name)"))
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let script = args.get_one::<PathBuf>("script").unwrap();
    if !script.is_file() {
        bail!("{}: no such study script", script.display());
    }
    let runs = args.get_one::<PathBuf>("runs").unwrap();
    let record = study_dir(runs, script);
    let out = args.get_one::<PathBuf>("out").cloned().unwrap_or_else(|| record.clone());
    let started = std::time::Instant::now();
    let written = crate::report::write_report(&record, runs, &out, args.get_one::<String>("title").map(String::as_str))?;
    eprintln!(
        "report: {} ({} cell(s), {} plot(s), {:.1} kB, {:.2} s); open it in a browser (file://{})",
        written.path.display(),
        written.cells,
        written.plots,
        written.bytes as f64 / 1e3,
        started.elapsed().as_secs_f64(),
        written.path.canonicalize().unwrap_or(written.path.clone()).display()
    );
    Ok(())
}
