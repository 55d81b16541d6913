//! `dctk export-hf runs/<id> --out DIR [--force]`: a run as a Hugging Face Llama model
//! directory (what it writes: [`crate::hf`]).
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};

use crate::hf;

pub fn cli() -> Command {
    Command::new("export-hf")
        .about("Export a run as a Hugging Face model directory (LlamaForCausalLM, safetensors, tokenizer)")
        .arg(Arg::new("run").required(true).value_parser(value_parser!(PathBuf)).help("The run directory, runs/<id> (finished or checkpointed)"))
        .arg(Arg::new("out").long("out").short('o').required(true).value_parser(value_parser!(PathBuf)).help("The model directory to write (must be empty or absent)"))
        .arg(Arg::new("force").long("force").action(ArgAction::SetTrue).help("Replace an existing --out directory"))
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let run = args.get_one::<PathBuf>("run").unwrap();
    let out = args.get_one::<PathBuf>("out").unwrap();
    let started = Instant::now();
    let summary = hf::export(run, out, args.get_flag("force"))?;
    println!(
        "exported run {} (step {}) to {}: {} tensors, {} parameters, {} ({:.2} s)",
        summary.run_id,
        summary.step,
        summary.out.display(),
        summary.tensors,
        summary.params,
        summary.dtype,
        started.elapsed().as_secs_f64()
    );
    for (name, bytes) in &summary.files {
        println!("  {name:<24} {bytes:>12} bytes");
    }
    Ok(())
}
