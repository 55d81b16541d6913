//! `dctk fit`: fit a scaling law to a CSV and print parameters with intervals, the
//! objective, metrics and warnings (or JSON), optionally with predictions and residual
//! and curve plots; or, with `--eval`, evaluate a law at given parameters. `--where`
//! filters rows (strings included), `--group-by` fits each group and prints one table.
//!
//! ```text
//! dctk fit --law chinchilla --data points.csv --columns N=params,D=tokens,loss=loss
//! dctk fit --law chinchilla --data points.csv --eval --at E=1.69,A=406.4,B=410.7,alpha=0.34,beta=0.28
//! dctk fit --law power_law --data runs.csv --columns x=N,loss=loss --where 'domain != "ArXiv"' --group-by domain
//! dctk fit --law muennighoff --data points.csv --starts 2000 --threads 8 --predict N=1e9,D=2e10,U=1e10
//! dctk fit --law mylaw --formula "E + A / N ** a" --param E=0:10 --param A=0:1e6 \
//!          --param a=0:2 --inputs N --data points.csv --columns N=params,loss=loss
//! dctk fit --list
//! ```
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use dctk_laws::{builtin, grid_from_axes, grid_from_csv, parse_number, read_csv_cells, FitSpec, LawOptions, ParamSpec, Points, Prediction, BUILTIN_LAWS};

use crate::fitting::{evaluate_groups, evaluation_table, file_stem, fit_groups, group_table, prediction_table, resolve_law, write_plots};

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
        .arg(Arg::new("eval").long("eval").action(ArgAction::SetTrue).help("Evaluate the law at given parameters (--at, --fix) instead of fitting: predictions, R² on the loss scale, the objective, ARE"))
        .arg(Arg::new("at").long("at").action(ArgAction::Append).help("--eval: parameter values NAME=VALUE,NAME=VALUE (repeatable; with --fix, every parameter once)"))
        .arg(Arg::new("predict").long("predict").action(ArgAction::Append).help("Predict at NAME=VALUE,... (one point, repeatable) or at every row of a CSV whose header names the law's inputs"))
        .arg(Arg::new("bounds").long("bounds").action(ArgAction::Append).help("Override a parameter's bounds: NAME=LOWER:UPPER (repeatable)"))
        .arg(Arg::new("starts").long("starts").value_parser(value_parser!(usize)).help("Fit from this many evenly spaced starts of the grid"))
        .arg(Arg::new("grid").long("grid").action(ArgAction::Append).help("Starting grid: an axis per parameter NAME=LO:HI:COUNT or NAME=v1|v2|... (repeat for each), or one CSV file with a column per parameter"))
        .arg(Arg::new("threads").long("threads").value_parser(value_parser!(usize)).help("Threads for the starts and the bootstrap (default: all cores; results do not depend on it)"))
        .arg(Arg::new("where").long("where").help("Row filter: a Rhai expression over the columns, text as strings, e.g. 'domain == \"ArXiv\" && N >= 1e8'"))
        .arg(Arg::new("group-by").long("group-by").help("One fit per distinct value of this column (text or number), printed as one table"))
        .arg(Arg::new("units").long("units").action(ArgAction::SetTrue).help("Read unit suffixes where a number is expected: k/K, M, B/G, T (2.8B = 2.8e9)"))
        .arg(Arg::new("level").long("level").value_parser(value_parser!(f64)).help("Bootstrap interval level (default 0.95)"))
}

/// `NAME=V,NAME=V` (or several such flags) as name/value pairs.
fn parse_values<'a>(flags: impl Iterator<Item = &'a String>, what: &str) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for flag in flags {
        for item in flag.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = parse_pair(item, what)?;
            let v = value.trim().parse::<f64>().with_context(|| format!("--{what} {item}: {value:?} is not a number"))?;
            out.push((name.trim().to_string(), v));
        }
    }
    Ok(out)
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
    let mut bounds = BTreeMap::new();
    for b in args.get_many::<String>("bounds").into_iter().flatten() {
        let (name, range) = parse_pair(b, "bounds")?;
        let (lo, hi) = range.split_once(':').with_context(|| format!("--bounds {b}: expected NAME=LOWER:UPPER"))?;
        let num = |s: &str| s.trim().parse::<f64>().with_context(|| format!("--bounds {b}: {s:?} is not a number"));
        bounds.insert(name.trim().to_string(), [num(lo)?, num(hi)?]);
    }
    let mut spec = FitSpec {
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
        bounds,
        bootstrap: args.get_one::<usize>("bootstrap").copied(),
        seed: args.get_one::<u64>("seed").copied(),
        level: args.get_one::<f64>("level").copied(),
        law_options: LawOptions {
            domains: args.get_one::<usize>("domains").copied(),
            tie_exponents: args.get_flag("tie-exponents"),
            ..LawOptions::default()
        },
        where_rows: args.get_one::<String>("where").cloned(),
        group_by: args.get_one::<String>("group-by").cloned(),
        units: args.get_flag("units"),
        starts: args.get_one::<usize>("starts").copied(),
        ..FitSpec::default()
    };
    if spec.data.is_none() {
        bail!("--data FILE.csv is required");
    }
    let json = args.get_flag("json");
    let at = parse_values(args.get_many::<String>("at").into_iter().flatten(), "at")?;
    if let Some(grid) = args.get_many::<String>("grid") {
        let grid: Vec<String> = grid.cloned().collect();
        let law = resolve_law(&spec)?;
        spec.grid = Some(match grid.as_slice() {
            [file] if !file.contains('=') => grid_from_csv(law.as_ref(), file)?,
            axes => grid_from_axes(law.as_ref(), axes)?,
        });
    }
    let predict = match args.get_many::<String>("predict") {
        None => None,
        Some(p) => Some(prediction_points(&p.cloned().collect::<Vec<_>>())?),
    };
    let threads = args.get_one::<usize>("threads").copied();
    if args.get_flag("eval") {
        return exec_eval(&spec, &at, predict.as_ref(), json);
    }
    if !at.is_empty() {
        bail!("--at gives parameter values to evaluate at: add --eval (to fit with some parameters frozen, use --fix)");
    }
    let fits = fit_groups(&spec, None, threads)?;
    let predictions = match &predict {
        None => vec![None; fits.len()],
        Some(at) => fits.iter().map(|(_, f)| predict_with(f, at).map(Some)).collect::<Result<_>>()?,
    };
    if json {
        let mut out = Vec::new();
        for ((group, f), preds) in fits.iter().zip(&predictions) {
            let mut v = serde_json::to_value(&f.report)?;
            if let Some(g) = group {
                v["group"] = g.clone().into();
            }
            if let (Some(p), Some(at)) = (preds, &predict) {
                v["predictions"] = predictions_json(&at.0, &at.1, p);
            }
            out.push(v);
        }
        let value = if spec.group_by.is_some() { serde_json::Value::Array(out) } else { out.remove(0) };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match &spec.group_by {
            Some(by) => print!("{}", group_table(by, &fits)),
            None => print!("{}", fits[0].1.report.to_text()),
        }
        if let Some(at) = &predict {
            println!("\npredictions");
            let per_group: Vec<(Option<String>, Vec<Prediction>)> = fits.iter().zip(predictions).map(|((g, _), p)| (g.clone(), p.unwrap_or_default())).collect();
            print!("{}", prediction_table(spec.group_by.as_deref(), &at.0, &at.1, &per_group));
        }
    }
    if let Some(dir) = args.get_one::<PathBuf>("plots") {
        for (group, f) in &fits {
            let stem = match group {
                Some(g) => format!("{law}.{}", file_stem(g)),
                None => law.clone(),
            };
            let (r, c) = write_plots(f, dir, &stem)?;
            eprintln!("wrote {} and {}", r.display(), c.display());
        }
    }
    Ok(())
}

/// Prediction points: `(input names, columns)` from `NAME=V,...` flags (one point each) or
/// one CSV file whose numeric columns are the inputs.
fn prediction_points(flags: &[String]) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    if let [file] = flags {
        if !file.contains('=') {
            let reader = std::fs::File::open(file).with_context(|| format!("--predict {file}"))?;
            let (headers, cells) = read_csv_cells(reader, file)?;
            let columns = headers
                .iter()
                .zip(&cells)
                .map(|(h, col)| {
                    col.iter()
                        .enumerate()
                        .map(|(i, c)| parse_number(c, true).with_context(|| format!("--predict {file}: row {}, column {h}: {c:?} is not a number", i + 1)))
                        .collect::<Result<Vec<f64>>>()
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok((headers, columns));
        }
    }
    let points: Vec<Vec<(String, f64)>> = flags.iter().map(|f| parse_values(std::iter::once(f), "predict")).collect::<Result<_>>()?;
    let names: Vec<String> = points[0].iter().map(|(k, _)| k.clone()).collect();
    let columns = names
        .iter()
        .map(|name| {
            points
                .iter()
                .enumerate()
                .map(|(i, p)| p.iter().find(|(k, _)| k == name).map(|(_, v)| *v).with_context(|| format!("--predict point {} lacks {name} (the first names {})", i + 1, names.join(", "))))
                .collect::<Result<Vec<f64>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((names, columns))
}

/// The fit's predictions at the points (the law's inputs picked by name).
fn predict_with(fit: &dctk_laws::Fit, at: &(Vec<String>, Vec<Vec<f64>>)) -> Result<Vec<Prediction>> {
    let points = Points::for_prediction(at.0.iter().cloned().zip(at.1.iter().cloned()).collect())?;
    Ok(fit.predict(&points)?)
}

fn predictions_json(names: &[String], columns: &[Vec<f64>], preds: &[Prediction]) -> serde_json::Value {
    preds
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut m = serde_json::Map::new();
            for (n, c) in names.iter().zip(columns) {
                m.insert(n.clone(), c[i].into());
            }
            m.insert("loss".into(), p.value.into());
            if let Some(iv) = p.interval {
                m.insert("lower".into(), iv.lower.into());
                m.insert("upper".into(), iv.upper.into());
            }
            serde_json::Value::Object(m)
        })
        .collect()
}

/// `--eval`: the law at `--at` (plus `--fix`) on the data, per group.
fn exec_eval(spec: &FitSpec, at: &[(String, f64)], predict: Option<&(Vec<String>, Vec<Vec<f64>>)>, json: bool) -> Result<()> {
    if at.is_empty() && spec.fixed.is_empty() {
        bail!("--eval needs the parameters: --at NAME=VALUE,NAME=VALUE (and/or --fix NAME=VALUE)");
    }
    let evals = evaluate_groups(spec, None, at)?;
    let law = resolve_law(spec)?;
    let predicted = match predict {
        None => None,
        Some((names, columns)) => {
            let points = Points::for_prediction(names.iter().cloned().zip(columns.iter().cloned()).collect())?;
            let values: Vec<f64> = evals[0].1.params.iter().map(|(_, v)| *v).collect();
            let y = law.predict(&values, &points.law_inputs(law.as_ref())?);
            Some(y.into_iter().map(|value| Prediction { value, interval: None }).collect::<Vec<_>>())
        }
    };
    if json {
        let mut out = Vec::new();
        for (group, e) in &evals {
            let mut v = serde_json::to_value(e)?;
            if let Some(g) = group {
                v["group"] = g.clone().into();
            }
            if let (Some(p), Some((names, columns))) = (&predicted, predict) {
                v["predictions"] = predictions_json(names, columns, p);
            }
            out.push(v);
        }
        let value = if spec.group_by.is_some() { serde_json::Value::Array(out) } else { out.remove(0) };
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    match &spec.group_by {
        Some(by) => print!("{}", evaluation_table(by, &evals)),
        None => print!("{}", evals[0].1.to_text()),
    }
    if let (Some(p), Some((names, columns))) = (&predicted, predict) {
        println!("\npredictions (at the evaluated parameters)");
        print!("{}", prediction_table(None, names, columns, &[(None, p.clone())]));
    }
    Ok(())
}
