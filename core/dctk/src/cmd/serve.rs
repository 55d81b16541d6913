//! `dctk serve runs/<id>`: serve a trained (or checkpointed) cell over an OpenAI-compatible
//! HTTP API until SIGINT/SIGTERM; the server is [`crate::serve`].
use std::path::PathBuf;

use anyhow::Result;
use clap::{value_parser, Arg, ArgMatches, Command};

use super::args::model_args;
use crate::serve::{run, ServeOptions};

pub fn cli() -> Command {
    model_args(Command::new("serve").about("Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health)"))
        .arg(Arg::new("host").long("host").default_value("127.0.0.1").help("Address to bind (loopback by default; 0.0.0.0 to accept other machines)"))
        .arg(Arg::new("port").long("port").value_parser(value_parser!(u16)).default_value("8000").help("Port to bind (0: a free port; the listening line says which)"))
        .arg(
            Arg::new("max-batch")
                .long("max-batch")
                .value_parser(value_parser!(usize))
                .default_value("32")
                .help("Most sequences (prompts × n) decoded together in one batch"),
        )
        .arg(Arg::new("quiet").long("quiet").short('q').action(clap::ArgAction::SetTrue).help("Do not log each request to stderr"))
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let max_batch = *args.get_one::<usize>("max-batch").unwrap();
    if max_batch == 0 {
        anyhow::bail!("--max-batch must be at least 1");
    }
    let threads = match args.get_one::<i32>("threads") {
        Some(&t) if t < 1 => anyhow::bail!("--threads must be at least 1, got {t}"),
        t => t.map(|&t| t as usize),
    };
    let device = crate::env::resolve_device(args.get_one::<String>("device").unwrap()).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    run(ServeOptions {
        run_dir: args.get_one::<PathBuf>("run").unwrap().clone(),
        host: args.get_one::<String>("host").unwrap().clone(),
        port: *args.get_one::<u16>("port").unwrap(),
        max_batch,
        device,
        threads,
        log_requests: !args.get_flag("quiet"),
    })
}
