//! The C ABI between the `dctk` host and a plugin library: every `#[repr(C)]` type
//! that crosses the boundary, the exported symbol's name, status codes and the
//! version constants of the handshake. Nothing here allocates or panics; the
//! author-side glue is in [`crate::guest`], the host side in `dctk::plugin`.
//!
//! Layout rule: [`PluginDescriptor`] starts with `abi_version: u32` and
//! `descriptor_size: u32`, and those two fields keep their place in every ABI
//! version, so a host can always read them and refuse a library whose ABI differs
//! before it touches anything else.
use std::ffi::c_void;

/// Bumped on any change to a type in this module. Host and plugin must agree exactly.
/// 2: augmenters plan requests and assemble documents ([`AugmenterVTable`]) instead of
/// streaming documents through a host generator callback.
/// 3: the host's model gains a fused loss ([`ForwardFn::loss`]: the cross-entropy of a
/// forward without materialising its logits) and lends the main pass's logits on request
/// ([`ForwardFn::main_logits`]) instead of as an `aux_loss` argument.
pub const ABI_VERSION: u32 = 3;

/// The one symbol a plugin library exports, `extern "C" fn() -> *const PluginDescriptor`.
pub const DESCRIPTOR_SYMBOL: &str = "dctk_plugin_descriptor";

/// Signature of [`DESCRIPTOR_SYMBOL`]. It returns null only if building the
/// descriptor panicked (the macro catches it).
pub type DescriptorFn = unsafe extern "C" fn() -> *const PluginDescriptor;

/// Call succeeded.
pub const STATUS_OK: i32 = 0;
/// Call failed; the message was passed to the [`ErrorSink`].
pub const STATUS_ERROR: i32 = 1;
/// The plugin panicked; the panic message was passed to the [`ErrorSink`].
pub const STATUS_PANIC: i32 = 2;

/// Kind bit: the plugin implements [`RegularizerVTable`].
pub const KIND_REGULARIZER: u32 = 1;
/// Kind bit: the plugin implements [`AugmenterVTable`].
pub const KIND_AUGMENTER: u32 = 2;
/// Kind bit: the plugin implements [`LawVTable`].
pub const KIND_LAW: u32 = 4;

/// A borrowed UTF-8 string (not NUL-terminated). Strings in the descriptor live
/// as long as the library (forever: libraries are never unloaded); strings passed
/// to a call or a callback are valid only during that call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Str {
    pub ptr: *const u8,
    pub len: usize,
}

impl Str {
    pub const EMPTY: Str = Str { ptr: std::ptr::null(), len: 0 };

    pub fn new(s: &str) -> Str {
        Str { ptr: s.as_ptr(), len: s.len() }
    }

    /// Leak `s` so the result lives forever (descriptor strings).
    pub fn leak(s: impl Into<String>) -> Str {
        Str::new(Box::leak(s.into().into_boxed_str()))
    }

    /// # Safety
    /// `ptr..ptr+len` must be readable for `'a`.
    pub unsafe fn as_bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }

    /// Lossy UTF-8 copy.
    ///
    /// # Safety
    /// As [`Str::as_bytes`].
    pub unsafe fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

/// A borrowed array of `T`, same lifetime rules as [`Str`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Slice<T> {
    pub ptr: *const T,
    pub len: usize,
}

impl<T: 'static> Slice<T> {
    pub fn leak(v: Vec<T>) -> Slice<T> {
        let b: &'static [T] = Box::leak(v.into_boxed_slice());
        Slice { ptr: b.as_ptr(), len: b.len() }
    }
}

impl<T> Slice<T> {
    /// # Safety
    /// `ptr..ptr+len` must be valid `T`s for `'a`.
    pub unsafe fn as_slice<'a>(&self) -> &'a [T] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }
}

/// What the library was built with; the handshake requires each field to equal the host's.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BuildInfo {
    /// `dctk-plugin-sdk` crate version.
    pub sdk: Str,
    /// Exact tch crate version.
    pub tch: Str,
    /// libtorch version from the install's `version.py`, e.g. `2.11.0+cpu`.
    pub libtorch: Str,
    /// Exact `rustc --version` line.
    pub rustc: Str,
}

/// The root of a plugin: returned by [`DESCRIPTOR_SYMBOL`], static for the life of the process.
#[repr(C)]
pub struct PluginDescriptor {
    /// Must equal the host's [`ABI_VERSION`]; always the first field.
    pub abi_version: u32,
    /// `size_of::<PluginDescriptor>()` as the plugin saw it; always the second field.
    pub descriptor_size: u32,
    pub build: BuildInfo,
    /// Registry name scripts use, e.g. `mir`.
    pub name: Str,
    /// The plugin's own version (its crate version).
    pub version: Str,
    /// One line for `dctk plugins list`.
    pub description: Str,
    /// OR of `KIND_*`; the matching vtable pointers are non-null.
    pub kinds: u32,
    pub regularizer: *const RegularizerVTable,
    pub augmenter: *const AugmenterVTable,
    pub law: *const LawVTable,
}

/// Setting value types.
pub const SETTING_BOOL: u32 = 0;
pub const SETTING_INT: u32 = 1;
pub const SETTING_FLOAT: u32 = 2;
pub const SETTING_STRING: u32 = 3;

/// One accepted setting of a regularizer or augmenter.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SettingDesc {
    pub key: Str,
    /// One of `SETTING_*`.
    pub ty: u32,
    /// The default as JSON text (`0.4`, `true`, `"x"`).
    pub default_json: Str,
    pub doc: Str,
    /// Inclusive numeric bounds; NaN = unbounded.
    pub min: f64,
    pub max: f64,
}

/// Receives an error message (copied by the receiver during the call).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ErrorSink {
    pub ctx: *mut c_void,
    pub set: unsafe extern "C" fn(ctx: *mut c_void, msg: Str),
}

/// Receives named scalar metrics (for `metrics.jsonl`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MetricSink {
    pub ctx: *mut c_void,
    pub emit: unsafe extern "C" fn(ctx: *mut c_void, name: Str, value: f64),
}

/// Receives strings (documents, generated text), copied during the call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StrSink {
    pub ctx: *mut c_void,
    pub push: unsafe extern "C" fn(ctx: *mut c_void, s: Str),
}

/// A libtorch tensor handle: tch's `*mut C_tensor` (a heap `at::Tensor*`), type-erased.
///
/// Ownership: a handle passed *as an argument* is borrowed for the call (never
/// free it; wrap it in `ManuallyDrop<Tensor::from_ptr(..)>` or shallow-clone it).
/// A handle written to an *out* pointer is owned by the receiver, who frees it by
/// dropping `Tensor::from_ptr(handle)`. Both sides call the same libtorch.
pub type TensorHandle = *mut c_void;

/// The host's model, lent to a regularizer for one `aux_loss` call. Every handle it
/// returns is owned by the caller and carries autograd into the model.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ForwardFn {
    pub ctx: *mut c_void,
    /// Logits `[B, T, V]` for token ids `input` `[B, T]` (borrowed); on `STATUS_OK`
    /// `*out` holds an owned logits handle.
    pub call: unsafe extern "C" fn(ctx: *mut c_void, input: TensorHandle, out: *mut TensorHandle, err: ErrorSink) -> i32,
    /// The mean next-token cross-entropy (fp32 scalar) of a forward on `input` `[B, T]`
    /// against `targets` `[B, T]` (targets < 0 ignored), through the host's fused, chunked
    /// head: the `[B·T, V]` logits are never held. Prefer it to `call` + cross-entropy.
    pub loss: unsafe extern "C" fn(ctx: *mut c_void, input: TensorHandle, targets: TensorHandle, out: *mut TensorHandle, err: ErrorSink) -> i32,
    /// The logits `[B, T, V]` of this micro-batch's main forward pass (graph attached),
    /// computed on request from its hidden states (the main pass itself never makes
    /// them). `STATUS_ERROR` if the host has no main pass at hand.
    pub main_logits: unsafe extern "C" fn(ctx: *mut c_void, out: *mut TensorHandle, err: ErrorSink) -> i32,
}

/// Where a micro-batch sits in the run. Plugins derive randomness from
/// (`seed`, `step`, `micro`) only, so runs reproduce and resume exactly.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    pub seed: u64,
    pub step: u64,
    /// Micro-batch index within the step (gradient accumulation).
    pub micro: u64,
    /// Tokenizer vocabulary size (GPT-2: 50,257).
    pub base_vocab: i64,
    /// The first id of the tokens this plugin asked for via `extra_vocab_tokens`.
    pub first_extra_id: i64,
}

/// Regularizer entry points. Instances are opaque `*mut c_void`s owned by the host,
/// freed with `destroy`.
#[repr(C)]
pub struct RegularizerVTable {
    pub settings: Slice<SettingDesc>,
    /// `settings_json`: a JSON object holding every key of `settings`, validated
    /// and filled with defaults by the host. Null on error.
    pub create: unsafe extern "C" fn(settings_json: Str, err: ErrorSink) -> *mut c_void,
    pub destroy: unsafe extern "C" fn(inst: *mut c_void),
    /// How many token ids past the tokenizer's vocabulary the plugin uses.
    pub extra_vocab_tokens: unsafe extern "C" fn(inst: *mut c_void) -> i64,
    /// May replace the batch the main loss sees. On `STATUS_OK` either both outs
    /// are null (batch unchanged) or both hold owned handles.
    pub transform_batch: unsafe extern "C" fn(
        inst: *mut c_void,
        info: *const StepInfo,
        inputs: TensorHandle,
        targets: TensorHandle,
        out_inputs: *mut TensorHandle,
        out_targets: *mut TensorHandle,
        err: ErrorSink,
    ) -> i32,
    /// The weighted auxiliary loss to add to the main loss before backward (the main
    /// pass's logits, if needed, through `forward.main_logits`). On `STATUS_OK`
    /// `*out_loss` is an owned scalar handle or null (no term).
    pub aux_loss: unsafe extern "C" fn(
        inst: *mut c_void,
        info: *const StepInfo,
        forward: ForwardFn,
        inputs: TensorHandle,
        targets: TensorHandle,
        out_loss: *mut TensorHandle,
        metrics: MetricSink,
        err: ErrorSink,
    ) -> i32,
}

/// One source document lent to an augmenter call (strings valid for the call).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DocIn {
    /// Its domain.
    pub domain: Str,
    /// Its index in the domain's ingest order.
    pub index: u64,
    /// Its content key (stable across machines).
    pub key: u64,
    /// The text (possibly truncated by the host to fit the generator's context).
    pub text: Str,
}

/// One generation an augmenter asks for (strings copied by the host during `push`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RequestOut {
    /// The whole prompt.
    pub prompt: Str,
    /// Completion tokens; 0 = the cell's `max_tokens`.
    pub max_tokens: u32,
    /// Sampling temperature; < 0 = the cell's.
    pub temperature: f64,
    /// What the request is, recorded in provenance (`style=qa`).
    pub tag: Str,
}

/// Receives the requests `plan` makes, in order.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RequestSink {
    pub ctx: *mut c_void,
    pub push: unsafe extern "C" fn(ctx: *mut c_void, request: *const RequestOut),
}

/// Augmenter entry points (ABI 2): for each source document the host calls `plan` (the
/// generations it needs), answers every document's requests itself (request cache,
/// batching), then calls `assemble` with the answers, in the order planned. `plan` must be
/// a pure function of the document and the settings (a resumed cell plans again and finds
/// the answers cached).
#[repr(C)]
pub struct AugmenterVTable {
    pub settings: Slice<SettingDesc>,
    pub create: unsafe extern "C" fn(settings_json: Str, err: ErrorSink) -> *mut c_void,
    pub destroy: unsafe extern "C" fn(inst: *mut c_void),
    /// Pushes the document's requests to `out`.
    pub plan: unsafe extern "C" fn(inst: *mut c_void, doc: *const DocIn, out: RequestSink, err: ErrorSink) -> i32,
    /// Pushes the output documents' texts to `out`; `answers[i]` answers request i of `plan`.
    pub assemble: unsafe extern "C" fn(inst: *mut c_void, doc: *const DocIn, answers: Slice<Str>, out: StrSink, err: ErrorSink) -> i32,
}

/// One law parameter with its fitting bounds (NaN = unbounded).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LawParamDesc {
    pub name: Str,
    pub lower: f64,
    pub upper: f64,
}

/// Law-form entry points. Stateless: the form is fixed by the plugin.
#[repr(C)]
pub struct LawVTable {
    pub params: Slice<LawParamDesc>,
    /// Input column names, e.g. `N`, `D`.
    pub inputs: Slice<Str>,
    pub equation: Str,
    pub citation: Str,
    /// Default starting points, row-major: `grid.len / params.len` rows.
    pub grid: Slice<f64>,
    /// Predicted loss at `n_points` points. `columns[k]` points at input k's
    /// `n_points` values; `out` has room for `n_points`.
    pub predict: unsafe extern "C" fn(
        params: *const f64,
        n_params: usize,
        columns: *const *const f64,
        n_inputs: usize,
        n_points: usize,
        out: *mut f64,
        err: ErrorSink,
    ) -> i32,
}
