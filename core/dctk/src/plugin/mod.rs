//! Plugins: user code loaded from dynamic libraries by name, so labs extend dctk
//! without forking it. This module owns the host side: the search path and the
//! handshake ([`loader`]), and safe wrappers over the three plugin kinds'
//! C vtables ([`regularizer`], [`augmenter`], [`law`]). The ABI itself and the
//! author's side live in the `dctk-plugin-sdk` crate (`plugins/sdk`), whose crate
//! docs specify it.
//!
//! The trainer's use, per run and per micro-batch:
//!
//! ```ignore
//! let mut regs = dctk::plugin::load_regularizers(&spec.regularizers, spec.seed)?; // before any step
//! regs.check_vocab(50_257, 50_304)?;
//! manifest.plugins = regs.manifest();                                             // name, version, file, blake3
//! // inside the micro-batch loop, after the main forward (hidden states, fused loss):
//! let aux = regs.aux_loss(&model, &MicroBatch { step, micro, base_vocab: 50_257, inputs: &x, targets: &y, hidden: Some(&hidden) },
//!                         &mut |ids| model.forward_hidden(ids, mask.as_ref(), true))?;
//! let loss = match &aux.loss { Some(a) => &main_loss + a, None => main_loss.shallow_clone() };
//! // log aux.metrics (e.g. "mir/aux_loss") into metrics.jsonl
//! ```
pub mod augmenter;
pub mod law;
pub mod loader;
pub mod regularizer;
pub mod source;

pub use augmenter::{load_augmenter, AugmenterInstance, PluginAugmenter};
pub use law::{load_law, PluginLaw};
pub use loader::{check_name, declare, discover, find, load, search_path, Discovery, Plugin};
pub use regularizer::{load_regularizers, validate_regularizers, RegularizerRequest, RegularizerSet};
#[cfg(feature = "torch")]
pub use regularizer::{AuxLoss, LogitsHead, MicroBatch, ModelHead};

use serde::{Deserialize, Serialize};

/// A plugin as recorded in a run's manifest: enough to tell exactly which code ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub file: String,
    /// blake3 of the library file, hex.
    pub blake3: String,
    /// The validated settings (defaults filled in), if the kind takes settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
}

impl PluginRecord {
    pub fn new(p: &Plugin, kind: &str, settings: Option<serde_json::Map<String, serde_json::Value>>) -> PluginRecord {
        PluginRecord {
            name: p.name.clone(),
            version: p.version.clone(),
            kind: kind.into(),
            file: p.file.display().to_string(),
            blake3: p.blake3.clone(),
            settings,
        }
    }
}

