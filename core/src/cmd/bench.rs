//! `dctk bench train`: dctk's training throughput side by side with a PyTorch eager
//! reference of the same model on the same device and threads. Rounds alternate the
//! two sides (the machine may be shared); the ratio reported is the median of the
//! per-round ratios. A benchmark, never a test.
use std::path::PathBuf;
use std::process::Command as Process;

use anyhow::{bail, Context, Result};
use clap::{value_parser, Arg, ArgMatches, Command};

use crate::bench::{train_tokens_per_s, TrainBench};
use crate::env;
use crate::train::ModelConfig;

pub fn cli() -> Command {
    Command::new("bench").about("Benchmarks (side by side with reference implementations)").subcommand_required(true).subcommand(
        Command::new("train")
            .about("Training tokens/s: dctk vs PyTorch eager on the same model, device and threads")
            .arg(Arg::new("preset").long("preset").default_value("tiny"))
            .arg(Arg::new("seq-len").long("seq-len").value_parser(value_parser!(i64)).default_value("256"))
            .arg(Arg::new("batch").long("batch").value_parser(value_parser!(i64)).default_value("16"))
            .arg(Arg::new("steps").long("steps").value_parser(value_parser!(usize)).default_value("20"))
            .arg(Arg::new("warmup").long("warmup").value_parser(value_parser!(usize)).default_value("3"))
            .arg(Arg::new("rounds").long("rounds").value_parser(value_parser!(usize)).default_value("3"))
            .arg(Arg::new("threads").long("threads").value_parser(value_parser!(i32)))
            .arg(Arg::new("device").long("device").default_value("auto"))
            .arg(Arg::new("precision").long("precision").default_value("auto").help("fp32 or bf16 (auto: bf16 on CUDA)"))
            .arg(
                Arg::new("python")
                    .long("python")
                    .value_parser(value_parser!(PathBuf))
                    .default_value("bench/.venv/bin/python")
                    .help("Python with torch installed (bash bench/setup.sh makes bench/.venv)"),
            )
            .arg(Arg::new("reference").long("reference").value_parser(value_parser!(PathBuf)).default_value("bench/train_ref.py"))
            .arg(
                Arg::new("tuned-reference")
                    .long("tuned-reference")
                    .action(clap::ArgAction::SetTrue)
                    .help("Give the PyTorch reference dctk's glibc allocator setting too (GLIBC_TUNABLES)"),
            )
            .arg(
                Arg::new("peak-tflops")
                    .long("peak-tflops")
                    .value_parser(value_parser!(f64))
                    .help("Peak dense TFLOP/s of the device for MFU (default: 989 for H100/H200 bf16)"),
            ),
    )
    .subcommand(
        Command::new("regularizer")
            .about("Step-time overhead of a regularizer plugin (e.g. MIR) vs none")
            .arg(Arg::new("name").long("name").default_value("mir"))
            .arg(Arg::new("preset").long("preset").default_value("tiny"))
            .arg(Arg::new("seq-len").long("seq-len").value_parser(value_parser!(i64)).default_value("128"))
            .arg(Arg::new("batch").long("batch").value_parser(value_parser!(i64)).default_value("16"))
            .arg(Arg::new("steps").long("steps").value_parser(value_parser!(usize)).default_value("8"))
            .arg(Arg::new("rounds").long("rounds").value_parser(value_parser!(usize)).default_value("3"))
            .arg(Arg::new("threads").long("threads").value_parser(value_parser!(i32)))
            .arg(Arg::new("device").long("device").default_value("auto")),
    )
}

/// The same allocator setting as `env::tune_allocator`, for a process we do not control.
const TUNED_GLIBC: &str = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647";

pub fn exec(args: &ArgMatches) -> Result<()> {
    match args.subcommand() {
        Some(("train", a)) => exec_train(a),
        Some(("regularizer", a)) => exec_regularizer(a),
        _ => unreachable!("clap requires a known subcommand"),
    }
}

/// Step time with a regularizer plugin vs without, same model and batch, alternating.
fn exec_regularizer(args: &ArgMatches) -> Result<()> {
    let name = args.get_one::<String>("name").unwrap();
    let preset = args.get_one::<String>("preset").unwrap();
    let seq_len = *args.get_one::<i64>("seq-len").unwrap();
    let config = ModelConfig::preset(preset, seq_len).with_context(|| format!("unknown preset \"{preset}\""))?;
    if let Some(&t) = args.get_one::<i32>("threads") {
        tch::set_num_threads(t);
    }
    let mut bench = TrainBench {
        config,
        batch_size: *args.get_one::<i64>("batch").unwrap(),
        seq_len,
        warmup_steps: 2,
        steps: *args.get_one::<usize>("steps").unwrap(),
        device: env::resolve_device(args.get_one::<String>("device").unwrap()).map_err(anyhow::Error::msg)?,
        kind: tch::Kind::Float,
        regularizers: vec![],
    };
    println!("{:>5}  {:>12}  {:>12}  {:>9}", "round", "none tok/s", format!("{name} tok/s"), "overhead");
    let mut ratios = Vec::new();
    for round in 1..=*args.get_one::<usize>("rounds").unwrap() {
        bench.regularizers = vec![];
        let base = train_tokens_per_s(&bench)?;
        bench.regularizers = vec![crate::plugin::regularizer::RegularizerRequest::new(name, serde_json::Value::Null)];
        let with = train_tokens_per_s(&bench)?;
        ratios.push(base / with);
        println!("{round:>5}  {base:>12.0}  {with:>12.0}  {:>8.2}×", base / with);
    }
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("median step-time overhead of {name}: {:.2}× (step time with / without)", ratios[ratios.len() / 2]);
    Ok(())
}

fn exec_train(args: &ArgMatches) -> Result<()> {
    let preset = args.get_one::<String>("preset").unwrap();
    let seq_len = *args.get_one::<i64>("seq-len").unwrap();
    let batch = *args.get_one::<i64>("batch").unwrap();
    let config = ModelConfig::preset(preset, seq_len).with_context(|| format!("unknown preset \"{preset}\""))?;
    if let Some(&t) = args.get_one::<i32>("threads") {
        tch::set_num_threads(t);
    }
    let threads = tch::get_num_threads();
    let device = env::resolve_device(args.get_one::<String>("device").unwrap()).map_err(anyhow::Error::msg)?;
    let kind = match (args.get_one::<String>("precision").unwrap().as_str(), device) {
        ("bf16", _) | ("auto", tch::Device::Cuda(_)) => tch::Kind::BFloat16,
        _ => tch::Kind::Float,
    };
    let precision = if kind == tch::Kind::BFloat16 { "bf16" } else { "fp32" };
    let bench = TrainBench {
        config: config.clone(),
        batch_size: batch,
        seq_len,
        warmup_steps: *args.get_one::<usize>("warmup").unwrap(),
        steps: *args.get_one::<usize>("steps").unwrap(),
        device,
        kind,
        regularizers: vec![],
    };
    let python = args.get_one::<PathBuf>("python").unwrap();
    let reference = args.get_one::<PathBuf>("reference").unwrap();
    if !python.exists() {
        bail!("{} not found: run `bash bench/setup.sh` to make a Python with torch for the reference", python.display());
    }
    println!(
        "model {preset} ({:.2}M params), batch {batch} × seq {seq_len}, device {}, {precision}, {threads} threads",
        config.total_params() as f64 / 1e6,
        env::device_name(device)
    );
    println!("{:>5}  {:>14}  {:>14}  {:>7}", "round", "dctk tok/s", "pytorch tok/s", "ratio");
    let mut ratios = Vec::new();
    let mut dctk_all = Vec::new();
    for round in 1..=*args.get_one::<usize>("rounds").unwrap() {
        let ours = train_tokens_per_s(&bench)?;
        let out = Process::new(python)
            .arg(reference)
            .args(["--n-layer", &config.n_layer.to_string(), "--d-model", &config.d_model.to_string()])
            .args(["--n-head", &config.n_head.to_string(), "--d-ff", &config.d_ff.to_string()])
            .args(["--vocab", &config.vocab_size.to_string(), "--seq-len", &seq_len.to_string()])
            .args(["--batch", &batch.to_string(), "--steps", &bench.steps.to_string()])
            .args(["--warmup", &bench.warmup_steps.to_string(), "--threads", &threads.to_string()])
            .args(["--device", &env::device_name(device), "--precision", precision])
            .envs(args.get_flag("tuned-reference").then_some(("GLIBC_TUNABLES", TUNED_GLIBC)))
            .output()
            .with_context(|| format!("running {} {}", python.display(), reference.display()))?;
        if !out.status.success() {
            bail!("the PyTorch reference failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        let theirs: f64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("tokens_per_s=").and_then(|v| v.trim().parse().ok()))
            .context("the PyTorch reference printed no tokens_per_s= line")?;
        ratios.push(ours / theirs);
        dctk_all.push(ours);
        println!("{round:>5}  {ours:>14.0}  {theirs:>14.0}  {:>7.3}", ours / theirs);
    }
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    dctk_all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median_ratio = ratios[ratios.len() / 2];
    println!("median ratio dctk / pytorch: {median_ratio:.3}");
    if let tch::Device::Cuda(_) = device {
        let peak = args.get_one::<f64>("peak-tflops").copied().unwrap_or(989.0) * 1e12;
        let tps = dctk_all[dctk_all.len() / 2];
        let mfu = tps * config.flops_per_token(seq_len) / peak;
        println!("dctk MFU: {:.1}% ({:.3e} FLOPs/token, peak {:.0} TFLOP/s)", 100.0 * mfu, config.flops_per_token(seq_len), peak / 1e12);
    }
    Ok(())
}
