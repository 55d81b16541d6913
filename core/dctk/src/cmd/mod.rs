//! Subcommands, one file each, cargo-style: `cli()` builds the clap command and
//! `exec()` runs it over the library layer, which does the work. Argument groups several
//! commands share are in [`args`]; no command imports another.
pub mod args;
pub mod bench;
pub mod cell;
pub mod data;
pub mod doctor;
pub mod export;
pub mod export_hf;
pub mod fit;
pub mod gc;
pub mod plugin_new;
pub mod plan;
pub mod plugins;
pub mod report;
pub mod run;
pub mod sample;
pub mod score;
pub mod serve;
pub mod status;

use clap::Command;

/// The subcommands, in the order `dctk --help` lists them.
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

pub fn exec(name: &str, args: &clap::ArgMatches) -> anyhow::Result<()> {
    match name {
        "run" => run::exec(args),
        "plan" => plan::exec(args),
        "report" => report::exec(args),
        "status" => status::exec(args),
        "export" => export::exec(args),
        "export-hf" => export_hf::exec(args),
        "cell" => cell::exec(args),
        "data" => data::exec(args),
        "fit" => fit::exec(args),
        "gc" => gc::exec(args),
        "doctor" => doctor::exec(args),
        "bench" => bench::exec(args),
        "plugins" => plugins::exec(args),
        "plugin" => plugin_new::exec(args),
        "sample" => sample::exec(args),
        "score" => score::exec(args),
        "serve" => serve::exec(args),
        _ => unreachable!("clap only accepts known subcommands"),
    }
}
