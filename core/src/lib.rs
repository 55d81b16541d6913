//! dctk, the Data-Constrained pretraining ToolKit: the host library.
//!
//! The data flow a newcomer should see:
//!
//! ```text
//! study.rhai ──script──▶ TrainSpec (plain serde data)
//!            ──study───▶ run id = hash(spec, data fingerprint, device, versions), runs/<name>-<id>/
//!            ──train───▶ model + AdamW + schedule over an epoch-shuffled token stream
//!            ──────────▶ metrics.jsonl, ckpt/, result.ron ──▶ back to the script as a map
//! ```
//!
//! Modules: [`cmd`] (one file per subcommand), [`script`] (Rhai), [`study`] (runs on
//! disk), [`train`] (libtorch), [`data`] (the corpus → tokens path), [`fitting`] (scaling laws via `dctk-laws`),
//! [`bench`], [`env`].
pub mod bench;
pub mod cmd;
pub mod data;
pub mod env;
pub mod fitting;
pub mod plugin;
pub mod script;
pub mod study;
pub mod train;
