//! `dctk fit`: fit a scaling law to a CSV and print parameters with intervals, the
//! objective and diagnostics (or JSON), optionally with residual and curve plots.
//!
//! ```text
//! dctk fit --law chinchilla --data points.csv --columns N=params,D=tokens,loss=loss
//! dctk fit --law mylaw --formula "E + A / N ** a" --param E=0:10 --param A=0:1e6 \
//!          --param a=0:2 --inputs N --data points.csv --columns N=params,loss=loss
//! dctk fit --list
//! ```
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use dctk_laws::{builtin, FitSpec, LawOptions, ParamSpec, BUILTIN_LAWS};

use crate::fitting::{fit_spec, write_plots};

pub fn cli() -> Command {
    Command::new("fit")
        .about("Fit a scaling law (Chinchilla, Muennighoff, BiMix, …, or your own formula) to a CSV")
        .arg(Arg::new("law").long("law").help("Built-in law name, or the name of a --formula law"))
        .arg(Arg::new("data").long("data").value_parser(value_parser!(PathBuf)).help("CSV file"))
        .arg(
            Arg::new("columns")
                .long("columns")
                .help("Column mapping, e.g. N=params,D=tokens,loss=loss (sources may be expressions: D=C/(6*N))"),
        )
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("Print the report as JSON"))
        .arg(Arg::new("loss").long("loss").help("huber (default for N–D laws) or lsq"))
        .arg(Arg::new("delta").long("delta").value_parser(value_parser!(f64)).help("Huber δ (default 1e-3)"))
        .arg(Arg::new("space").long("space").help("log or linear residuals"))
        .arg(Arg::new("mle").long("mle").action(ArgAction::SetTrue).help("Huber-likelihood MLE with a scale parameter"))
        .arg(Arg::new("bootstrap").long("bootstrap").value_parser(value_parser!(usize)).help("Bootstrap resamples for intervals"))
        .arg(Arg::new("seed").long("seed").value_parser(value_parser!(u64)).help("Bootstrap seed (default 42)"))
        .arg(Arg::new("fix").long("fix").action(ArgAction::Append).help("Freeze a parameter: NAME=VALUE (repeatable)"))
        .arg(Arg::new("formula").long("formula").help("A user-defined law as a Rhai expression over --param and --inputs"))
        .arg(Arg::new("param").long("param").action(ArgAction::Append).help("Formula-law parameter NAME=LOWER:UPPER (repeatable)"))
        .arg(Arg::new("inputs").long("inputs").help("Formula-law input columns, comma-separated"))
        .arg(Arg::new("domains").long("domains").value_parser(value_parser!(usize)).help("mixing_law: number of proportion columns r1..rM"))
        .arg(Arg::new("tie-exponents").long("tie-exponents").action(ArgAction::SetTrue).help("muennighoff: tie alpha = beta"))
        .arg(Arg::new("plots").long("plots").value_parser(value_parser!(PathBuf)).help("Write residual and curve SVGs into this directory"))
        .arg(Arg::new("list").long("list").action(ArgAction::SetTrue).help("List the built-in laws with their equations"))
}

fn parse_pair<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str)> {
    s.split_once('=').with_context(|| format!("--{what} {s:?}: expected NAME=VALUE"))
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    if args.get_flag("list") {
        // mixing_law's inputs depend on the number of domains: list it with two.
        let opts = LawOptions { domains: Some(2), ..LawOptions::default() };
        for name in BUILTIN_LAWS {
            let law = builtin(name, &opts)?;
            println!("{name}\n  {}\n  {}\n", law.equation(), law.citation());
        }
        return Ok(());
    }
    let Some(law) = args.get_one::<String>("law") else {
        bail!("--law is required (see `dctk fit --list`)");
    };
    let mut fixed = BTreeMap::new();
    for f in args.get_many::<String>("fix").into_iter().flatten() {
        let (name, value) = parse_pair(f, "fix")?;
        fixed.insert(name.to_string(), value.parse::<f64>().with_context(|| format!("--fix {f}: not a number"))?);
    }
    let params = match args.get_many::<String>("param") {
        None => None,
        Some(ps) => Some(
            ps.map(|p| {
                let (name, range) = parse_pair(p, "param")?;
                let (lo, hi) = range.split_once(':').with_context(|| format!("--param {p}: expected NAME=LOWER:UPPER"))?;
                let num = |s: &str| s.parse::<f64>().with_context(|| format!("--param {p}: {s:?} is not a number"));
                Ok(ParamSpec::new(name, num(lo)?, num(hi)?))
            })
            .collect::<Result<Vec<_>>>()?,
        ),
    };
    let spec = FitSpec {
        law: law.clone(),
        formula: args.get_one::<String>("formula").cloned(),
        params,
        inputs: args.get_one::<String>("inputs").map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
        data: args.get_one::<PathBuf>("data").map(|p| p.display().to_string()),
        columns: args.get_one::<String>("columns").cloned(),
        loss: args.get_one::<String>("loss").cloned(),
        delta: args.get_one::<f64>("delta").copied(),
        space: args.get_one::<String>("space").cloned(),
        mle: args.get_flag("mle"),
        fixed,
        bootstrap: args.get_one::<usize>("bootstrap").copied(),
        seed: args.get_one::<u64>("seed").copied(),
        law_options: LawOptions {
            domains: args.get_one::<usize>("domains").copied(),
            tie_exponents: args.get_flag("tie-exponents"),
            ..LawOptions::default()
        },
        ..FitSpec::default()
    };
    if spec.data.is_none() {
        bail!("--data FILE.csv is required");
    }
    let fit = fit_spec(&spec, None)?;
    if args.get_flag("json") {
        println!("{}", fit.report.to_json());
    } else {
        print!("{}", fit.report.to_text());
    }
    if let Some(dir) = args.get_one::<PathBuf>("plots") {
        let (r, c) = write_plots(&fit, dir, law)?;
        eprintln!("wrote {} and {}", r.display(), c.display());
    }
    Ok(())
}
