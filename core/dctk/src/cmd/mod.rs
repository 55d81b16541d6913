//! Subcommands, one file each, cargo-style: `cli()` builds the clap command and
//! `exec()` runs it over the library layer, which does the work. Argument groups several
//! commands share are in [`args`]; no command imports another.
pub mod args;
#[cfg(feature = "torch")]
pub mod bench;
#[cfg(feature = "torch")]
pub mod cell;
pub mod data;
#[cfg(feature = "torch")]
pub mod doctor;
#[cfg(feature = "torch")]
pub mod export;
#[cfg(feature = "torch")]
pub mod export_hf;
pub mod fit;
pub mod gc;
#[cfg(feature = "torch")]
pub mod plugin_new;
pub mod plan;
#[cfg(feature = "torch")]
pub mod plugins;
pub mod report;
#[cfg(feature = "torch")]
pub mod run;
#[cfg(feature = "torch")]
pub mod sample;
#[cfg(feature = "torch")]
pub mod score;
#[cfg(feature = "torch")]
pub mod serve;
pub mod status;

use clap::Command;

/// The subcommands, in the order `dctk --help` lists them.
/// The commands the libtorch-free build runs (the `dctk` front runs them in-process; the
/// rest go to `dctk-torch`).
pub const LITE_COMMANDS: &[&str] = &["plan", "report", "status", "data", "fit", "gc"];

/// The `dctk` command line over every command of this build (both binaries parse with it).
pub fn app() -> Command {
    Command::new("dctk")
        .about("dctk: the Data-Constrained pretraining ToolKit")
        .version(crate::env::DCTK_VERSION)
        .long_version(&*Box::leak(crate::env::long_version().into_boxed_str()))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommands(builtin())
}

/// Every command of this build.
#[cfg(feature = "torch")]
pub fn builtin() -> Vec<Command> {
    vec![
        run::cli(),
        plan::cli(),
        report::cli(),
        status::cli(),
        export::cli(),
        data::cli(),
        sample::cli(),
        score::cli(),
        serve::cli(),
        export_hf::cli(),
        fit::cli(),
        gc::cli(),
        doctor::cli(),
        bench::cli(),
        plugins::cli(),
        plugin_new::cli(),
        cell::cli(),
    ]
}

/// Every command of this build.
#[cfg(not(feature = "torch"))]
pub fn builtin() -> Vec<Command> {
    vec![plan::cli(), report::cli(), status::cli(), data::cli(), fit::cli(), gc::cli()]
}

/// Runs command `name` with its parsed arguments.
pub fn exec(name: &str, args: &clap::ArgMatches) -> anyhow::Result<()> {
    match name {
        "plan" => plan::exec(args),
        "report" => report::exec(args),
        "status" => status::exec(args),
        "data" => data::exec(args),
        "fit" => fit::exec(args),
        "gc" => gc::exec(args),
        #[cfg(feature = "torch")]
        "run" => run::exec(args),
        #[cfg(feature = "torch")]
        "export" => export::exec(args),
        #[cfg(feature = "torch")]
        "export-hf" => export_hf::exec(args),
        #[cfg(feature = "torch")]
        "cell" => cell::exec(args),
        #[cfg(feature = "torch")]
        "doctor" => doctor::exec(args),
        #[cfg(feature = "torch")]
        "bench" => bench::exec(args),
        #[cfg(feature = "torch")]
        "plugins" => plugins::exec(args),
        #[cfg(feature = "torch")]
        "plugin" => plugin_new::exec(args),
        #[cfg(feature = "torch")]
        "sample" => sample::exec(args),
        #[cfg(feature = "torch")]
        "score" => score::exec(args),
        #[cfg(feature = "torch")]
        "serve" => serve::exec(args),
        other => anyhow::bail!("`dctk {other}` is not a command of this build"),
    }
}
