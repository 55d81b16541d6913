//! dctk, the Data-Constrained pretraining ToolKit: the host library.
//!
//! The data flow a newcomer should see:
//!
//! ```text
//! study.rhai ──script──▶ TrainSpec (plain serde data) per `train` call, a Run handle back
//!            ──study───▶ cell id = hash(named inputs: settings, data fingerprint, plugins,
//!                        device, precision, versions); runs/<id>/manifest.ron
//!            ──executor─▶ one `dctk cell exec` process per pending cell, -j at a time
//!            ──train───▶ model + AdamW + schedule over an epoch-shuffled token stream
//!            ──────────▶ metrics.jsonl, ckpt/, result.ron ──▶ the script's next pass reads them
//! ```
//!
//! Modules: [`cmd`] (one file per subcommand, thin `cli()` + `exec()`; shared arguments in
//! `cmd/args.rs`), [`script`] (the Rhai binding only), [`study`] (plan → cache → rounds →
//! execute → records, bundles, sandbox), [`train`] (libtorch), [`corpus`] (the host side of
//! the data: corpus → planned run data), [`fitting`] (the one glue to `dctk-laws`, for `dctk fit` and `fit()`),
//! [`generate`] (decoding, serving, generators), [`hf`] (export to Hugging Face), [`bench`], [`env`].
//!
//! Two builds of these sources: with the `torch` feature (the `dctk` package: everything,
//! linked to libtorch, the `dctk-torch` binary) and without it (the `dctk-lite` package,
//! core/lite: no libtorch, `tch` is a shim of plain types), which the `dctk` front binary
//! runs in-process for the commands that need no tensors ([`cmd::LITE_COMMANDS`]), so they
//! start in milliseconds. Code that needs tensors is behind `#[cfg(feature = "torch")]`; in
//! the lite build, a path that would need it returns [`env::NeedsTorch`] and the front hands
//! the whole command to `dctk-torch`.
// In the libtorch-free build, code only the tensor half calls is unused: expected there (the
// full build's lints see every line).
#![cfg_attr(not(feature = "torch"), allow(dead_code, unused_imports, unused_variables, unused_mut))]

#[cfg(feature = "torch")]
pub mod bench;
pub mod build_id;
pub mod cmd;
pub mod corpus;
pub mod cpu;
pub mod env;
pub mod fitting;
pub mod generate;
#[cfg(feature = "torch")]
pub mod hf;
pub mod keys;
pub mod plugin;
pub mod report;
#[cfg(all(test, feature = "torch"))]
mod plugin_tests;
pub mod script;
#[cfg(feature = "torch")]
pub mod serve;
pub mod study;
pub mod train;
