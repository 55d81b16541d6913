//! The author's side: the three plugin traits ([`Regularizer`], [`Augmenter`],
//! [`LawForm`]), safe wrappers for what the host lends a call ([`Model`],
//! [`Metrics`]; an augmenter's [`Doc`] and [`Request`]), and the `extern "C"` glue that the
//! [`export_plugin!`](crate::export_plugin) macro wires into the descriptor.
//! Every glue function runs the author's code under `catch_unwind`, so a panic
//! (including a tch panic on a libtorch error) becomes `STATUS_PANIC` plus a
//! message, never an unwind across the C boundary.
use crate::abi::{self, *};
use crate::settings::{Setting, SettingValues};
use crate::PluginError;
use std::ffi::c_void;
#[cfg(feature = "tch")]
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
#[cfg(feature = "tch")]
use tch::Tensor;

pub type Result<T> = std::result::Result<T, PluginError>;

#[cfg(feature = "tch")]
/// A regularizer: may rewrite the batch the main loss sees and may add a loss term
/// computed with extra forward passes of the model.
pub trait Regularizer: Sized + 'static {
    /// Accepted settings with types, defaults and bounds.
    fn settings() -> Vec<Setting>;
    /// Build from validated settings (every key present).
    fn new(settings: &SettingValues) -> Result<Self>;
    /// Token ids needed past the tokenizer's vocabulary (MIR's MASK: 1). The
    /// host assigns them from `StepInfo::base_vocab` on, reported as `first_extra_id`.
    fn extra_vocab_tokens(&self) -> i64 {
        0
    }
    /// Replace the batch the main loss sees; `None` keeps it.
    fn transform_batch(&mut self, _info: &StepInfo, _inputs: &Tensor, _targets: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }
    /// The *weighted* auxiliary loss (a scalar with autograd) to add before
    /// backward, or `None`. Report diagnostics through `metrics`.
    fn aux_loss(&mut self, info: &StepInfo, model: &mut Model, batch: &Batch, metrics: &mut Metrics) -> Result<Option<Tensor>>;
}

/// A source document as the host lends it to an augmenter.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub domain: String,
    /// Index in the domain's ingest order.
    pub index: u64,
    /// Content key (stable across machines).
    pub key: u64,
    pub text: String,
}

/// One generation an augmenter asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub prompt: String,
    /// None: the cell's `max_tokens`.
    pub max_tokens: Option<u32>,
    /// None: the cell's temperature.
    pub temperature: Option<f64>,
    /// Recorded in provenance (`style=qa`).
    pub tag: String,
}

impl Request {
    /// A request with the cell's sampling settings.
    pub fn new(prompt: impl Into<String>, tag: impl Into<String>) -> Request {
        Request { prompt: prompt.into(), max_tokens: None, temperature: None, tag: tag.into() }
    }
}

/// An augmenter (ABI 2): per source document, `plan` the generations it needs; the host
/// answers them (request cache, batching, any generator) and `assemble` makes the output
/// documents from the answers. Both are called with `&self` and must be pure functions of
/// the document, the answers and the settings (a resumed cell plans again).
pub trait Augmenter: Sized + 'static {
    fn settings() -> Vec<Setting>;
    fn new(settings: &SettingValues) -> Result<Self>;
    /// The generations `doc` needs, in order (may be empty).
    fn plan(&self, doc: &Doc) -> Result<Vec<Request>>;
    /// The output documents of `doc`; `answers[i]` answers request i of `plan`. Return at
    /// least one document (the host treats none as an error).
    fn assemble(&self, doc: &Doc, answers: &[String]) -> Result<Vec<String>>;
}

/// One parameter of a law form.
#[derive(Debug, Clone)]
pub struct LawParam {
    pub name: String,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

impl LawParam {
    pub fn new(name: &str, lower: Option<f64>, upper: Option<f64>) -> LawParam {
        LawParam { name: name.into(), lower, upper }
    }
}

/// A scaling-law form the host's fitter can use like a built-in one.
pub trait LawForm: 'static {
    fn params() -> Vec<LawParam>;
    fn inputs() -> Vec<String>;
    fn equation() -> String;
    fn citation() -> String {
        String::new()
    }
    /// Starting points for the multi-start fit, each a full parameter vector.
    fn default_grid() -> Vec<Vec<f64>>;
    /// Predicted loss at every point: `inputs[k][i]` is input k at point i.
    fn predict(params: &[f64], inputs: &[&[f64]], out: &mut [f64]) -> Result<()>;
}

#[cfg(feature = "tch")]
/// A batch as lent to a regularizer (borrowed handles; do not keep them past the call).
pub struct Batch {
    pub inputs: ManuallyDrop<Tensor>,
    pub targets: ManuallyDrop<Tensor>,
}

#[cfg(feature = "tch")]
/// The host's model, callable from a regularizer. Everything it returns carries autograd
/// into the model, so a loss built from it trains the model.
pub struct Model {
    f: ForwardFn,
}

#[cfg(feature = "tch")]
impl Model {
    /// Logits `[B, T, V]` for ids `[B, T]`.
    pub fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        let mut msg = String::new();
        let mut out: TensorHandle = std::ptr::null_mut();
        let status = unsafe { (self.f.call)(self.f.ctx, input.as_ptr() as TensorHandle, &mut out, error_sink(&mut msg)) };
        owned(status, out, "host forward", msg)
    }

    /// Mean next-token cross-entropy (fp32 scalar) of a forward on `input` `[B, T]`
    /// against `targets` `[B, T]`, through the host's fused, chunked head: the logits
    /// are never materialised. Use this rather than `forward` + cross-entropy.
    pub fn loss(&mut self, input: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let mut msg = String::new();
        let mut out: TensorHandle = std::ptr::null_mut();
        let status = unsafe { (self.f.loss)(self.f.ctx, input.as_ptr() as TensorHandle, targets.as_ptr() as TensorHandle, &mut out, error_sink(&mut msg)) };
        owned(status, out, "host loss", msg)
    }

    /// Logits `[B, T, V]` of the step's main forward pass (on `batch.inputs`), with its
    /// graph, made on request from the main pass's hidden states (one head GEMM, and the
    /// memory of full logits, only for plugins that ask).
    pub fn main_logits(&mut self) -> Result<Tensor> {
        let mut msg = String::new();
        let mut out: TensorHandle = std::ptr::null_mut();
        let status = unsafe { (self.f.main_logits)(self.f.ctx, &mut out, error_sink(&mut msg)) };
        owned(status, out, "host main_logits", msg)
    }
}

#[cfg(feature = "tch")]
fn owned(status: i32, out: TensorHandle, what: &str, msg: String) -> Result<Tensor> {
    if status != STATUS_OK || out.is_null() {
        return Err(PluginError::msg(format!("{what} failed: {msg}")));
    }
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

/// Metrics sink: names are logged as `<plugin>/<name>` by the host.
pub struct Metrics {
    sink: MetricSink,
}

impl Metrics {
    pub fn log(&mut self, name: &str, value: f64) {
        unsafe { (self.sink.emit)(self.sink.ctx, Str::new(name), value) }
    }
}

// ---------------------------------------------------------------------------
// Sinks over Rust strings (used by both sides).

unsafe extern "C" fn set_string(ctx: *mut c_void, msg: Str) {
    let s = &mut *(ctx as *mut String);
    *s = msg.to_string_lossy();
}

unsafe extern "C" fn push_string(ctx: *mut c_void, msg: Str) {
    let s = &mut *(ctx as *mut String);
    s.push_str(&msg.to_string_lossy());
}

unsafe extern "C" fn push_vec(ctx: *mut c_void, msg: Str) {
    let v = &mut *(ctx as *mut Vec<String>);
    v.push(msg.to_string_lossy());
}

/// An [`ErrorSink`] that stores the message in `s` (valid while `s` is).
pub fn error_sink(s: &mut String) -> ErrorSink {
    ErrorSink { ctx: s as *mut String as *mut c_void, set: set_string }
}

/// A [`StrSink`] that appends to `s`.
pub fn string_sink(s: &mut String) -> StrSink {
    StrSink { ctx: s as *mut String as *mut c_void, push: push_string }
}

/// A [`StrSink`] that pushes each string to `v`.
pub fn vec_sink(v: &mut Vec<String>) -> StrSink {
    StrSink { ctx: v as *mut Vec<String> as *mut c_void, push: push_vec }
}

/// The text of a panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Run `f`, turning an error or a panic into a status code and a message.
pub fn guard(err: ErrorSink, f: impl FnOnce() -> Result<()>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => STATUS_OK,
        Ok(Err(e)) => {
            unsafe { (err.set)(err.ctx, Str::new(&e.to_string())) };
            STATUS_ERROR
        }
        Err(p) => {
            let m = format!("plugin panicked: {}", panic_message(&*p));
            unsafe { (err.set)(err.ctx, Str::new(&m)) };
            STATUS_PANIC
        }
    }
}

#[cfg(feature = "tch")]
/// Give up ownership of `t` as a handle (for an out-pointer: the receiver frees it).
pub fn into_handle(t: Tensor) -> TensorHandle {
    let t = ManuallyDrop::new(t);
    t.as_ptr() as TensorHandle
}

#[cfg(feature = "tch")]
/// View a borrowed handle as a tensor without taking ownership.
///
/// # Safety
/// `h` must be a live tensor handle for as long as the result is used.
pub unsafe fn borrow(h: TensorHandle) -> ManuallyDrop<Tensor> {
    ManuallyDrop::new(Tensor::from_ptr(h as *mut _))
}

unsafe fn parse_settings(json: Str) -> Result<SettingValues> {
    let text = std::str::from_utf8(json.as_bytes()).map_err(|e| PluginError::msg(format!("settings are not UTF-8: {e}")))?;
    match serde_json::from_str(text)? {
        serde_json::Value::Object(m) => Ok(SettingValues(m)),
        serde_json::Value::Null => Ok(SettingValues::default()),
        other => Err(PluginError::msg(format!("settings must be a JSON object, got {other}"))),
    }
}

// ---------------------------------------------------------------------------
// Regularizer glue.

#[cfg(feature = "tch")]
unsafe extern "C" fn reg_create<R: Regularizer>(settings: Str, err: ErrorSink) -> *mut c_void {
    let mut inst: *mut c_void = std::ptr::null_mut();
    guard(err, || {
        let s = parse_settings(settings)?;
        inst = Box::into_raw(Box::new(R::new(&s)?)) as *mut c_void;
        Ok(())
    });
    inst
}

#[cfg(feature = "tch")]
unsafe extern "C" fn reg_destroy<R: Regularizer>(inst: *mut c_void) {
    if !inst.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(inst as *mut R))));
    }
}

#[cfg(feature = "tch")]
unsafe extern "C" fn reg_extra<R: Regularizer>(inst: *mut c_void) -> i64 {
    catch_unwind(AssertUnwindSafe(|| (*(inst as *mut R)).extra_vocab_tokens())).unwrap_or(-1)
}

#[cfg(feature = "tch")]
unsafe extern "C" fn reg_transform<R: Regularizer>(
    inst: *mut c_void,
    info: *const StepInfo,
    inputs: TensorHandle,
    targets: TensorHandle,
    out_inputs: *mut TensorHandle,
    out_targets: *mut TensorHandle,
    err: ErrorSink,
) -> i32 {
    *out_inputs = std::ptr::null_mut();
    *out_targets = std::ptr::null_mut();
    guard(err, || {
        let r = &mut *(inst as *mut R);
        if let Some((i, t)) = r.transform_batch(&*info, &borrow(inputs), &borrow(targets))? {
            *out_inputs = into_handle(i);
            *out_targets = into_handle(t);
        }
        Ok(())
    })
}

#[cfg(feature = "tch")]
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn reg_aux<R: Regularizer>(
    inst: *mut c_void,
    info: *const StepInfo,
    forward: ForwardFn,
    inputs: TensorHandle,
    targets: TensorHandle,
    out_loss: *mut TensorHandle,
    metrics: MetricSink,
    err: ErrorSink,
) -> i32 {
    *out_loss = std::ptr::null_mut();
    guard(err, || {
        let r = &mut *(inst as *mut R);
        let batch = Batch { inputs: borrow(inputs), targets: borrow(targets) };
        let mut model = Model { f: forward };
        let mut m = Metrics { sink: metrics };
        if let Some(loss) = r.aux_loss(&*info, &mut model, &batch, &mut m)? {
            *out_loss = into_handle(loss);
        }
        Ok(())
    })
}

#[cfg(feature = "tch")]
/// The regularizer vtable for `R` (leaked: it lives as long as the library).
pub fn regularizer_vtable<R: Regularizer>() -> &'static RegularizerVTable {
    let settings: Vec<SettingDesc> = R::settings().iter().map(Setting::to_desc).collect();
    Box::leak(Box::new(RegularizerVTable {
        settings: Slice::leak(settings),
        create: reg_create::<R>,
        destroy: reg_destroy::<R>,
        extra_vocab_tokens: reg_extra::<R>,
        transform_batch: reg_transform::<R>,
        aux_loss: reg_aux::<R>,
    }))
}

// ---------------------------------------------------------------------------
// Augmenter glue.

unsafe extern "C" fn aug_create<A: Augmenter>(settings: Str, err: ErrorSink) -> *mut c_void {
    let mut inst: *mut c_void = std::ptr::null_mut();
    guard(err, || {
        let s = parse_settings(settings)?;
        inst = Box::into_raw(Box::new(A::new(&s)?)) as *mut c_void;
        Ok(())
    });
    inst
}

unsafe extern "C" fn aug_destroy<A: Augmenter>(inst: *mut c_void) {
    if !inst.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(inst as *mut A))));
    }
}

unsafe fn push_all(out: StrSink, docs: &[String]) {
    for d in docs {
        (out.push)(out.ctx, Str::new(d));
    }
}

unsafe fn doc_in(doc: *const DocIn) -> Doc {
    let d = &*doc;
    Doc { domain: d.domain.to_string_lossy(), index: d.index, key: d.key, text: d.text.to_string_lossy() }
}

unsafe extern "C" fn aug_plan<A: Augmenter>(inst: *mut c_void, doc: *const DocIn, out: RequestSink, err: ErrorSink) -> i32 {
    guard(err, || {
        let a = &*(inst as *const A);
        for r in a.plan(&doc_in(doc))? {
            let req = RequestOut {
                prompt: Str::new(&r.prompt),
                max_tokens: r.max_tokens.unwrap_or(0),
                temperature: r.temperature.unwrap_or(-1.0),
                tag: Str::new(&r.tag),
            };
            (out.push)(out.ctx, &req);
        }
        Ok(())
    })
}

unsafe extern "C" fn aug_assemble<A: Augmenter>(inst: *mut c_void, doc: *const DocIn, answers: Slice<Str>, out: StrSink, err: ErrorSink) -> i32 {
    guard(err, || {
        let a = &*(inst as *const A);
        let answers: Vec<String> = answers.as_slice().iter().map(|s| s.to_string_lossy()).collect();
        let produced = a.assemble(&doc_in(doc), &answers)?;
        push_all(out, &produced);
        Ok(())
    })
}

/// The augmenter vtable for `A`.
pub fn augmenter_vtable<A: Augmenter>() -> &'static AugmenterVTable {
    let settings: Vec<SettingDesc> = A::settings().iter().map(Setting::to_desc).collect();
    Box::leak(Box::new(AugmenterVTable {
        settings: Slice::leak(settings),
        create: aug_create::<A>,
        destroy: aug_destroy::<A>,
        plan: aug_plan::<A>,
        assemble: aug_assemble::<A>,
    }))
}

// ---------------------------------------------------------------------------
// Law glue.

unsafe extern "C" fn law_predict<L: LawForm>(
    params: *const f64,
    n_params: usize,
    columns: *const *const f64,
    n_inputs: usize,
    n_points: usize,
    out: *mut f64,
    err: ErrorSink,
) -> i32 {
    guard(err, || {
        let p = std::slice::from_raw_parts(params, n_params);
        let cols: Vec<&[f64]> =
            std::slice::from_raw_parts(columns, n_inputs).iter().map(|&c| std::slice::from_raw_parts(c, n_points)).collect();
        let o = std::slice::from_raw_parts_mut(out, n_points);
        L::predict(p, &cols, o)
    })
}

/// The law vtable for `L`.
pub fn law_vtable<L: LawForm>() -> &'static LawVTable {
    let params: Vec<LawParamDesc> = L::params()
        .into_iter()
        .map(|p| LawParamDesc { name: Str::leak(p.name), lower: p.lower.unwrap_or(f64::NAN), upper: p.upper.unwrap_or(f64::NAN) })
        .collect();
    let inputs: Vec<Str> = L::inputs().into_iter().map(Str::leak).collect();
    let grid: Vec<f64> = L::default_grid().into_iter().flatten().collect();
    Box::leak(Box::new(LawVTable {
        params: Slice::leak(params),
        inputs: Slice::leak(inputs),
        equation: Str::leak(L::equation()),
        citation: Str::leak(L::citation()),
        grid: Slice::leak(grid),
        predict: law_predict::<L>,
    }))
}

// ---------------------------------------------------------------------------
// Descriptor.

/// A built descriptor; `Sync` because it is immutable and lives forever.
pub struct Descriptor(pub &'static PluginDescriptor);
unsafe impl Send for Descriptor {}
unsafe impl Sync for Descriptor {}

/// Builds a plugin's descriptor; used by [`export_plugin!`](crate::export_plugin).
pub struct DescriptorBuilder {
    d: PluginDescriptor,
}

impl DescriptorBuilder {
    pub fn new(name: &str, version: &str) -> DescriptorBuilder {
        DescriptorBuilder {
            d: PluginDescriptor {
                abi_version: abi::ABI_VERSION,
                descriptor_size: std::mem::size_of::<PluginDescriptor>() as u32,
                build: crate::build_info(),
                name: Str::leak(name),
                version: Str::leak(version),
                description: Str::EMPTY,
                kinds: 0,
                regularizer: std::ptr::null(),
                augmenter: std::ptr::null(),
                law: std::ptr::null(),
            },
        }
    }
    pub fn description(mut self, d: &str) -> Self {
        self.d.description = Str::leak(d);
        self
    }
    #[cfg(feature = "tch")]
    pub fn regularizer<R: Regularizer>(mut self) -> Self {
        self.d.kinds |= KIND_REGULARIZER;
        self.d.regularizer = regularizer_vtable::<R>();
        self
    }
    pub fn augmenter<A: Augmenter>(mut self) -> Self {
        self.d.kinds |= KIND_AUGMENTER;
        self.d.augmenter = augmenter_vtable::<A>();
        self
    }
    pub fn law<L: LawForm>(mut self) -> Self {
        self.d.kinds |= KIND_LAW;
        self.d.law = law_vtable::<L>();
        self
    }
    pub fn build(self) -> Descriptor {
        Descriptor(Box::leak(Box::new(self.d)))
    }
}

/// Body of the exported symbol: build once, catch panics (null on panic).
pub fn descriptor_entry(cell: &'static std::sync::OnceLock<Descriptor>, make: fn() -> Descriptor) -> *const PluginDescriptor {
    match catch_unwind(|| cell.get_or_init(make).0 as *const PluginDescriptor) {
        Ok(p) => p,
        Err(_) => std::ptr::null(),
    }
}
