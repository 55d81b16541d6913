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
pub mod bench;
pub mod build_id;
pub mod cmd;
pub mod corpus;
pub mod cpu;
pub mod env;
pub mod fitting;
pub mod generate;
pub mod hf;
pub mod keys;
pub mod plugin;
pub mod report;
#[cfg(test)]
mod plugin_tests;
pub mod script;
pub mod serve;
pub mod study;
pub mod train;
