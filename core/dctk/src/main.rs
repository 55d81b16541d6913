//! The `dctk` binary: parse arguments, dispatch to a subcommand, print errors.
use std::process::ExitCode;

fn main() -> ExitCode {
    dctk::env::tune_allocator();
    let cli = clap::Command::new("dctk")
        .about("dctk: the Data-Constrained pretraining ToolKit")
        .version(dctk::env::DCTK_VERSION)
        .long_version(&*Box::leak(dctk::env::long_version().into_boxed_str()))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommands(dctk::cmd::builtin());
    let matches = cli.get_matches();
    let (name, args) = matches.subcommand().expect("a subcommand is required");
    match dctk::cmd::exec(name, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
