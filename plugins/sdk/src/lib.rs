//! # dctk-plugin-sdk: extend dctk without forking it
//!
//! A plugin is a small crate built as a `cdylib` that depends on this SDK. The
//! `dctk` host loads it by name (`dctk plugins list`), checks it, and calls it
//! through a C ABI. Three kinds exist, each a trait here: [`Regularizer`]
//! (batch transform + auxiliary loss with access to the model's forward,
//! extra vocabulary tokens, own metrics), [`Augmenter`] (a source document → the
//! generation requests it needs → synthetic documents from the answers) and [`LawForm`]
//! (a scaling-law form for the fitter).
//!
//! ## Writing a plugin
//!
//! ```ignore
//! use dctk_plugin_sdk::{export_plugin, Regularizer, Setting, SettingValues, StepInfo, Model, Batch, Metrics, Result};
//! use dctk_plugin_sdk::tch::{Kind, Tensor};
//!
//! struct ZLoss { weight: f64 }
//!
//! impl Regularizer for ZLoss {
//!     fn settings() -> Vec<Setting> { vec![Setting::float("weight", 1e-4, "z-loss weight").range(0.0, 1.0)] }
//!     fn new(s: &SettingValues) -> Result<Self> { Ok(ZLoss { weight: s.f64("weight")? }) }
//!     fn aux_loss(&mut self, _: &StepInfo, model: &mut Model, _: &Batch, m: &mut Metrics) -> Result<Option<Tensor>> {
//!         let logits = model.main_logits()?;
//!         let z = logits.to_kind(Kind::Float).logsumexp([-1], false).square().mean(Kind::Float);
//!         m.log("z", z.double_value(&[]));
//!         Ok(Some(z * self.weight))
//!     }
//! }
//!
//! export_plugin! { name: "zloss", version: env!("CARGO_PKG_VERSION"), regularizer: ZLoss }
//! ```
//!
//! `Cargo.toml` needs `crate-type = ["cdylib", "rlib"]`, the SDK as a dependency, and
//! `dctk-plugin-build` as a build-dependency with `build.rs` calling
//! `dctk_plugin_build::link_libtorch()` (rpath to libtorch). `dctk plugin new NAME
//! --kind regularizer|augmenter|law` writes all of this for you.
//!
//! ## The ABI (version [`abi::ABI_VERSION`])
//!
//! * **Entry point.** The library exports one symbol, `dctk_plugin_descriptor`
//!   ([`abi::DESCRIPTOR_SYMBOL`]), an `extern "C" fn() -> *const PluginDescriptor`.
//!   The descriptor is built once, is immutable and lives for the process.
//! * **Handshake.** [`abi::PluginDescriptor`] begins with `abi_version: u32` and
//!   `descriptor_size: u32`, fixed in every ABI version. The host reads those
//!   two first and refuses the library unless both match its own; only then does
//!   it read `build` ([`abi::BuildInfo`]: SDK, tch, libtorch and rustc versions),
//!   each of which must equal the host's exactly. A mismatch error names the
//!   field, both values, and what to rebuild.
//! * **Contents.** Name, version, description, `kinds` (bit set of
//!   `KIND_REGULARIZER | KIND_AUGMENTER | KIND_LAW`), and one vtable pointer per
//!   kind (null when absent). Regularizer and augmenter vtables list their
//!   settings ([`abi::SettingDesc`]: key, type, default as JSON, doc, bounds), so
//!   `dctk` validates a script's settings before any run. The law vtable carries
//!   parameter names and bounds, input names, the equation text, citation and a
//!   default start grid.
//! * **Strings and arrays** are borrowed `(ptr, len)` pairs ([`abi::Str`],
//!   [`abi::Slice`]), UTF-8, not NUL-terminated. Descriptor data lives forever;
//!   call arguments live for the call only; the receiver copies.
//! * **Errors.** Every call returns `STATUS_OK` (0), `STATUS_ERROR` (1) or
//!   `STATUS_PANIC` (2) and reports the message through an [`abi::ErrorSink`]
//!   callback the caller provides. Every entry point runs the author's code under
//!   `catch_unwind`: a panic never unwinds across the boundary, and the host keeps
//!   running. This needs `panic = "unwind"` (the default; dctk's workspace and
//!   scaffolded crates set it explicitly): a plugin built with `panic = "abort"`
//!   would take the process down. Host callbacks (the model forward) follow the same rule in
//!   the other direction.
//! * **Tensors** cross as libtorch handles ([`abi::TensorHandle`], tch's
//!   `*mut C_tensor`, i.e. a heap `at::Tensor*`). Host and plugin link the same
//!   libtorch shared library (the handshake checks its version), so a handle is
//!   valid on both sides. Ownership:
//!     - a handle passed **as an argument** is *borrowed* for the duration of the
//!       call: the callee must not free it and must not keep it (shallow-clone it
//!       with `Tensor::shallow_clone` if it needs to outlive the call);
//!     - a handle written **to an out-pointer** (aux loss, transformed batch,
//!       the model's logits and losses) is *owned* by the receiver, which frees it by dropping
//!       `Tensor::from_ptr(handle)`. On an error status no out-handle is set.
//! * **Augmenters** (ABI 2, [`abi::AugmenterVTable`]). A `generate` cell calls `plan` once
//!   per source document ([`abi::DocIn`]: domain, index, content key, text), receiving its
//!   requests through an [`abi::RequestSink`] ([`abi::RequestOut`]: prompt, `max_tokens`
//!   (0 = the cell's), `temperature` (< 0 = the cell's), provenance tag); the host answers
//!   every document's requests itself (request cache, batching, any generator), then calls
//!   `assemble` with the answers in planned order and collects the output documents through
//!   a [`abi::StrSink`]. A plugin never generates text; both calls must be pure functions of
//!   document, answers and settings (a resumed cell plans again and finds the answers cached).
//!   The author implements [`Augmenter::plan`] and [`Augmenter::assemble`] over [`Doc`] and
//!   [`Request`]; the host records the plugin file's blake3 and the settings in the cell id.
//!   ABI 1's streaming `augment`/`finish` with a host generator callback is gone.
//! * **Model access** (ABI 3). The host lends its model as [`abi::ForwardFn`]: `call`
//!   (logits of a forward on given ids), `loss` (the cross-entropy of a forward on given
//!   ids against given targets through the host's fused, chunked head, never materialising
//!   the logits — what MIR's masked pass uses) and `main_logits` (the logits of the step's
//!   main pass, made on request: the main pass itself runs through the fused head and has
//!   none). Autograd flows through all three, so a regularizer's loss trains the model.
//! * **Instances** (`create` → `*mut c_void`) belong to the host, which calls
//!   `destroy` exactly once. Randomness must derive from [`abi::StepInfo`]'s
//!   `(seed, step, micro)` so that runs reproduce and resume exactly.
//! * **Lifetime.** Libraries are never unloaded (descriptor strings, vtables and
//!   code must outlive every instance; unloading libtorch-linked code is unsafe).
//! * **Threads.** The host calls one regularizer or augmenter instance from one
//!   thread at a time. A law's `predict` must be a pure function: the fitter calls
//!   it from several threads at once.
pub mod abi;
pub mod guest;
pub mod settings;

pub use abi::StepInfo;
pub use guest::{Augmenter, Doc, LawForm, LawParam, Metrics, Request, Result};
#[cfg(feature = "tch")]
pub use guest::{Batch, Model, Regularizer};
pub use serde_json;
pub use settings::{Setting, SettingType, SettingValues};
#[cfg(feature = "tch")]
pub use tch;

/// The tch version plugins and host are built against. `Cargo.toml` pins
/// `tch = "=0.24.0"`, so this is exact (a test checks it against Cargo.lock).
pub const TCH_VERSION: &str = "0.24.0";
/// libtorch version found at build time (`$LIBTORCH/version.py`).
pub const LIBTORCH_VERSION: &str = env!("DCTK_PLUGIN_LIBTORCH_VERSION");
/// Exact `rustc --version` of the compiler that built this crate.
pub const RUSTC_VERSION: &str = env!("DCTK_PLUGIN_RUSTC_VERSION");
/// This SDK's version.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The build facts compiled into this copy of the SDK (the plugin's or the host's).
pub fn build_info() -> abi::BuildInfo {
    abi::BuildInfo {
        sdk: abi::Str::new(SDK_VERSION),
        tch: abi::Str::new(TCH_VERSION),
        libtorch: abi::Str::new(LIBTORCH_VERSION),
        rustc: abi::Str::new(RUSTC_VERSION),
    }
}

/// A plugin error: a message. Any `std::error::Error` (e.g. `tch::TchError`,
/// `serde_json::Error`) converts with `?`.
#[derive(Debug, Clone)]
pub struct PluginError(pub String);

impl PluginError {
    pub fn msg(m: impl Into<String>) -> PluginError {
        PluginError(m.into())
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for PluginError {
    fn from(e: E) -> PluginError {
        PluginError(e.to_string())
    }
}

/// Export a plugin: generates the `dctk_plugin_descriptor` symbol.
///
/// ```ignore
/// export_plugin! {
///     name: "mir",
///     version: env!("CARGO_PKG_VERSION"),
///     description: "masked-input regularization",   // optional
///     regularizer: Mir,                                // any non-empty subset, in this order
///     augmenter: MyAugmenter,
///     law: MyLaw,
/// }
/// ```
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        version: $version:expr
        $(, description: $desc:expr)?
        $(, regularizer: $reg:ty)?
        $(, augmenter: $aug:ty)?
        $(, law: $law:ty)?
        $(,)?
    ) => {
        /// dctk plugin entry point (see the `dctk-plugin-sdk` docs for the ABI).
        #[no_mangle]
        pub extern "C" fn dctk_plugin_descriptor() -> *const $crate::abi::PluginDescriptor {
            static CELL: ::std::sync::OnceLock<$crate::guest::Descriptor> = ::std::sync::OnceLock::new();
            fn make() -> $crate::guest::Descriptor {
                let b = $crate::guest::DescriptorBuilder::new($name, $version);
                $(let b = b.description($desc);)?
                $(let b = b.regularizer::<$reg>();)?
                $(let b = b.augmenter::<$aug>();)?
                $(let b = b.law::<$law>();)?
                b.build()
            }
            $crate::guest::descriptor_entry(&CELL, make)
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn tch_version_matches_lockfile() {
        // Walk up to the workspace's Cargo.lock and compare the resolved tch.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let lock = dir.ancestors().map(|a| a.join("Cargo.lock")).find(|p| p.exists()).expect("Cargo.lock");
        let text = std::fs::read_to_string(lock).unwrap();
        let mut lines = text.lines();
        let mut found = None;
        while let Some(l) = lines.next() {
            if l == "name = \"tch\"" {
                found = lines.next().and_then(|v| v.strip_prefix("version = ")).map(|v| v.trim_matches('"').to_string());
            }
        }
        assert_eq!(found.as_deref(), Some(super::TCH_VERSION));
    }

    #[test]
    fn build_info_is_known() {
        assert!(super::RUSTC_VERSION.starts_with("rustc "), "{}", super::RUSTC_VERSION);
        assert_ne!(super::LIBTORCH_VERSION, "unknown");
    }
}
