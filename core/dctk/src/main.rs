//! `dctk-torch`, the full build (linked to libtorch), which the `dctk` front (`front.rs`) hands
//! every command to that needs tensors: parse arguments, dispatch to a subcommand, print errors.
use std::process::ExitCode;

fn main() -> ExitCode {
    dctk::env::tune_allocator();
    let cli = dctk::cmd::app();
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
