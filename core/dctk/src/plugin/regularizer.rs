//! Host side of regularizer plugins: [`load_regularizers`] turns a script's
//! `regularizers` list into a [`RegularizerSet`] (settings validated against each
//! descriptor before any run), and the set's per-micro-batch calls wrap the C ABI:
//! the model's forward is lent as a callback, metrics come back prefixed with the
//! plugin's name, and any plugin error or panic becomes an `Err` naming the plugin.
use super::loader::{find, Plugin};
use super::PluginRecord;
use anyhow::{bail, Context, Result};
#[cfg(feature = "torch")]
use dctk_plugin_sdk::abi::{ErrorSink, ForwardFn, MetricSink, TensorHandle};
use dctk_plugin_sdk::abi::{self, RegularizerVTable, StepInfo, Str};
use dctk_plugin_sdk::guest::error_sink;
#[cfg(feature = "torch")]
use dctk_plugin_sdk::guest::{borrow, into_handle, panic_message};
use dctk_plugin_sdk::settings::validate;
use serde::{Deserialize, Serialize};
use std::ffi::c_void;
#[cfg(feature = "torch")]
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
#[cfg(feature = "torch")]
use tch::{Kind, Tensor};

/// One entry of a script's `regularizers`: a plugin name and its settings
/// (a JSON object; `null` or missing = all defaults). Deserializes from either
/// a bare name (`"mir"`) or a map (`#{ name: "mir", settings: #{ lambda: 0.4 } }`);
/// serializes as the map, so a run id covers the settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RegularizerRequest {
    pub name: String,
    pub settings: serde_json::Value,
}

/// A plain map (`{"name": .., "settings": ..}`), never a named struct: RON manifests must
/// read back through the untagged "name or map" form below.
impl Serialize for RegularizerRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let with_settings = !self.settings.is_null();
        let mut m = s.serialize_map(Some(1 + with_settings as usize))?;
        m.serialize_entry("name", &self.name)?;
        if with_settings {
            m.serialize_entry("settings", &self.settings)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for RegularizerRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            name: String,
            #[serde(default)]
            settings: serde_json::Value,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Full(Full),
        }
        match Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom("a regularizer is a plugin name (\"mir\") or a map { name: \"mir\", settings: { .. } }")
        })? {
            Form::Name(name) => Ok(RegularizerRequest { name, settings: serde_json::Value::Null }),
            Form::Full(f) => Ok(RegularizerRequest { name: f.name, settings: f.settings }),
        }
    }
}

impl RegularizerRequest {
    pub fn new(name: &str, settings: serde_json::Value) -> RegularizerRequest {
        RegularizerRequest { name: name.into(), settings }
    }
}

#[cfg(feature = "torch")]
/// One micro-batch, as the trainer hands it to the regularizers.
pub struct MicroBatch<'a> {
    pub step: u64,
    /// Index of the micro-batch within the step (gradient accumulation).
    pub micro: u64,
    /// The tokenizer's vocabulary (the corpus's; GPT-2: 50,257); extra tokens are numbered from it.
    pub base_vocab: i64,
    /// Token ids [B, T] (int64).
    pub inputs: &'a Tensor,
    /// Next-token targets [B, T] (int64).
    pub targets: &'a Tensor,
    /// Final hidden states of the main forward pass [B, T, d] with their graph, if
    /// available: a plugin asking for the main pass's logits (z-loss) gets
    /// `Gpt::logits` of them; the main loss itself never makes logits.
    pub hidden: Option<&'a Tensor>,
}

#[cfg(feature = "torch")]
/// How the host turns a forward's final hidden states into logits and a loss, for the
/// plugins' model callbacks. `dctk`'s model ([`crate::train::Gpt`]) uses its head and the
/// fused, chunked loss; [`LogitsHead`] is for forwards that return logits themselves.
pub trait ModelHead {
    /// Logits [.., V] of hidden states [.., d].
    fn logits(&self, hidden: &Tensor) -> Tensor;
    /// Mean next-token cross-entropy of hidden states [B, T, d] against targets [B, T].
    fn loss(&self, hidden: &Tensor, targets: &Tensor) -> Tensor;
}

#[cfg(feature = "torch")]
/// The head of a forward that already returns logits (toy models, `dctk plugins check`):
/// "hidden states" are the logits; the loss is the plain cross-entropy over them.
pub struct LogitsHead;

#[cfg(feature = "torch")]
impl ModelHead for LogitsHead {
    fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.shallow_clone()
    }

    fn loss(&self, hidden: &Tensor, targets: &Tensor) -> Tensor {
        let v = *hidden.size().last().unwrap_or(&1);
        hidden.reshape([-1, v]).to_kind(Kind::Float).cross_entropy_for_logits(&targets.reshape([-1]))
    }
}

#[cfg(feature = "torch")]
/// What the regularizers add for one micro-batch.
pub struct AuxLoss {
    /// Sum of the plugins' weighted auxiliary losses (scalar, autograd), to add to
    /// the main loss before backward; `None` if no plugin added a term.
    pub loss: Option<Tensor>,
    /// Metrics as `<plugin>/<name>` (e.g. `mir/aux_loss`) for metrics.jsonl.
    pub metrics: Vec<(String, f64)>,
}

struct Instance {
    plugin: Arc<Plugin>,
    vt: &'static RegularizerVTable,
    inst: *mut c_void,
    first_extra_id_offset: i64,
    extra: i64,
    settings: serde_json::Map<String, serde_json::Value>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        unsafe { (self.vt.destroy)(self.inst) }
    }
}

/// The regularizers of one run, instantiated. Not `Send`: use it on the training thread.
pub struct RegularizerSet {
    seed: u64,
    items: Vec<Instance>,
}

/// Check requests without instantiating anything (for validating a whole study
/// before its first run): each plugin exists, is a regularizer, and accepts the
/// settings. Returns what the manifest will record.
pub fn validate_regularizers(requests: &[RegularizerRequest]) -> Result<Vec<PluginRecord>> {
    let mut out: Vec<PluginRecord> = Vec::new();
    for req in requests {
        if out.iter().any(|r| r.name == req.name) {
            bail!("regularizer `{}` is listed twice", req.name);
        }
        let plugin = find(&req.name).context("key \"regularizers\"")?;
        plugin.require("regularizer")?;
        let settings = validate(&plugin.name, &plugin.settings("regularizer")?, &req.settings).map_err(anyhow::Error::msg)?;
        out.push(PluginRecord::new(&plugin, "regularizer", Some(settings)));
    }
    Ok(out)
}

/// Each requested regularizer's extra vocabulary tokens `(name, count)`, in list order, for
/// planning: [`validate_regularizers`] does not instantiate, but the count is an instance's
/// answer (it may depend on the settings), so this makes short-lived instances.
pub fn regularizer_extra_tokens(requests: &[RegularizerRequest]) -> Result<Vec<(String, i64)>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    Ok(load_regularizers(requests, 0)?.extra_tokens())
}

/// Load, validate and instantiate the requested regularizers. Fails before any
/// training on an unknown plugin, a plugin that is not a regularizer, a bad
/// setting (the error names the plugin and the key) or a failing constructor.
/// `seed` is the run seed: plugins derive their randomness from (seed, step, micro).
pub fn load_regularizers(requests: &[RegularizerRequest], seed: u64) -> Result<RegularizerSet> {
    let mut items: Vec<Instance> = Vec::new();
    let mut offset = 0;
    for req in requests {
        if items.iter().any(|i| i.plugin.name == req.name) {
            bail!("regularizer `{}` is listed twice", req.name);
        }
        let plugin = find(&req.name).context("key \"regularizers\"")?;
        plugin.require("regularizer")?;
        let vt = plugin.regularizer().expect("checked by require");
        let accepted = plugin.settings("regularizer")?;
        let settings = validate(&plugin.name, &accepted, &req.settings).map_err(anyhow::Error::msg)?;
        let json = serde_json::Value::Object(settings.clone()).to_string();
        let mut msg = String::new();
        let inst = unsafe { (vt.create)(Str::new(&json), error_sink(&mut msg)) };
        if inst.is_null() {
            bail!("plugin `{}` ({}): could not create the regularizer: {msg}", plugin.name, plugin.file.display());
        }
        let extra = unsafe { (vt.extra_vocab_tokens)(inst) };
        let item = Instance { plugin, vt, inst, first_extra_id_offset: offset, extra, settings };
        if extra < 0 {
            bail!("plugin `{}` ({}): extra_vocab_tokens failed (returned {extra})", item.plugin.name, item.plugin.file.display());
        }
        offset += extra;
        items.push(item);
    }
    Ok(RegularizerSet { seed, items })
}

impl RegularizerSet {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.items.iter().map(|i| i.plugin.name.clone()).collect()
    }

    /// Token ids the plugins need past the tokenizer's vocabulary (MIR: 1, its MASK).
    pub fn extra_vocab_tokens(&self) -> i64 {
        self.items.iter().map(|i| i.extra).sum()
    }

    /// Each plugin's extra tokens `(name, count)`, in list order: the host numbers them right
    /// after the tokenizer's ids (see `train::VocabLayout`), and tells each plugin its first id.
    pub fn extra_tokens(&self) -> Vec<(String, i64)> {
        self.items.iter().map(|i| (i.plugin.name.clone(), i.extra)).collect()
    }

    /// Check that `base_vocab + extra_vocab_tokens() <= model_vocab`: every extra token is a
    /// row of the model (the vocabulary layout pads past them).
    pub fn check_vocab(&self, base_vocab: i64, model_vocab: i64) -> Result<()> {
        let need = base_vocab + self.extra_vocab_tokens();
        if need > model_vocab {
            bail!(
                "regularizers {} need {} extra token ids past the vocabulary of {base_vocab}, but the model has only {model_vocab} rows",
                self.names().join(", "),
                self.extra_vocab_tokens()
            );
        }
        Ok(())
    }

    /// What goes into the run manifest: name, version, file, hash and settings of each plugin.
    pub fn manifest(&self) -> Vec<PluginRecord> {
        self.items.iter().map(|i| PluginRecord::new(&i.plugin, "regularizer", Some(i.settings.clone()))).collect()
    }

    fn info(&self, item: &Instance, step: u64, micro: u64, base_vocab: i64) -> StepInfo {
        StepInfo { seed: self.seed, step, micro, base_vocab, first_extra_id: base_vocab + item.first_extra_id_offset }
    }

    #[cfg(feature = "torch")]
    /// Let each plugin rewrite the batch the main loss sees (in list order).
    pub fn transform_batch(
        &mut self,
        step: u64,
        micro: u64,
        base_vocab: i64,
        inputs: &Tensor,
        targets: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let mut x = inputs.shallow_clone();
        let mut y = targets.shallow_clone();
        for item in &self.items {
            let info = self.info(item, step, micro, base_vocab);
            let mut msg = String::new();
            let (mut ox, mut oy): (TensorHandle, TensorHandle) = (std::ptr::null_mut(), std::ptr::null_mut());
            let status = unsafe {
                (item.vt.transform_batch)(
                    item.inst,
                    &info,
                    x.as_ptr() as TensorHandle,
                    y.as_ptr() as TensorHandle,
                    &mut ox,
                    &mut oy,
                    error_sink(&mut msg),
                )
            };
            if status != abi::STATUS_OK {
                bail!("regularizer `{}` ({}) at step {step}: transform_batch: {msg}", item.plugin.name, item.plugin.file.display());
            }
            if !ox.is_null() && !oy.is_null() {
                x = unsafe { Tensor::from_ptr(ox as *mut _) };
                y = unsafe { Tensor::from_ptr(oy as *mut _) };
            }
        }
        Ok((x, y))
    }

    #[cfg(feature = "torch")]
    /// The regularizers' loss terms for one micro-batch. `hidden_of` is the model in
    /// training mode up to its final hidden states (same dropout/attention mask as the main
    /// pass); plugins reach it through the ABI's forward (logits: `model`'s head on it) and
    /// fused loss (`model`'s chunked head on it), e.g. MIR's pass on the masked input.
    pub fn aux_loss(&mut self, model: &dyn ModelHead, mb: &MicroBatch, hidden_of: &mut dyn FnMut(&Tensor) -> Tensor) -> Result<AuxLoss> {
        let mut total: Option<Tensor> = None;
        let mut metrics = Vec::new();
        for item in &self.items {
            let info = self.info(item, mb.step, mb.micro, mb.base_vocab);
            let mut msg = String::new();
            let mut out: TensorHandle = std::ptr::null_mut();
            let mut fctx = ForwardCtx { model, hidden_of: &mut *hidden_of, main_hidden: mb.hidden };
            let fwd = ForwardFn {
                ctx: &mut fctx as *mut ForwardCtx as *mut c_void,
                call: forward_trampoline,
                loss: loss_trampoline,
                main_logits: main_logits_trampoline,
            };
            let mut sink = MetricCtx { prefix: &item.plugin.name, out: &mut metrics };
            let msink = MetricSink { ctx: &mut sink as *mut MetricCtx as *mut c_void, emit: emit_metric };
            let status = unsafe {
                (item.vt.aux_loss)(
                    item.inst,
                    &info,
                    fwd,
                    mb.inputs.as_ptr() as TensorHandle,
                    mb.targets.as_ptr() as TensorHandle,
                    &mut out,
                    msink,
                    error_sink(&mut msg),
                )
            };
            if status != abi::STATUS_OK {
                bail!("regularizer `{}` ({}) at step {}: {msg}", item.plugin.name, item.plugin.file.display(), mb.step);
            }
            if !out.is_null() {
                let t = unsafe { Tensor::from_ptr(out as *mut _) };
                if t.numel() != 1 {
                    bail!("regularizer `{}` returned a loss of shape {:?}, expected a scalar", item.plugin.name, t.size());
                }
                total = Some(match total {
                    None => t,
                    Some(acc) => acc + t,
                });
            }
        }
        Ok(AuxLoss { loss: total, metrics })
    }
}

#[cfg(feature = "torch")]
/// What the ABI's model callbacks reach: the model (its head), its forward up to the
/// final hidden states, and the main pass's hidden states.
struct ForwardCtx<'a> {
    model: &'a dyn ModelHead,
    hidden_of: &'a mut dyn FnMut(&Tensor) -> Tensor,
    main_hidden: Option<&'a Tensor>,
}

#[cfg(feature = "torch")]
/// Runs a host callback under `catch_unwind`, writing its tensor to `out` or its panic
/// (or error) to `err`.
unsafe fn host_call(out: *mut TensorHandle, err: ErrorSink, what: &str, f: impl FnOnce() -> Result<Tensor, String>) -> i32 {
    *out = std::ptr::null_mut();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(t)) => {
            *out = into_handle(t);
            abi::STATUS_OK
        }
        Ok(Err(m)) => {
            (err.set)(err.ctx, Str::new(&m));
            abi::STATUS_ERROR
        }
        Err(p) => {
            let m = format!("the model's {what} panicked: {}", panic_message(&*p));
            (err.set)(err.ctx, Str::new(&m));
            abi::STATUS_PANIC
        }
    }
}

#[cfg(feature = "torch")]
unsafe extern "C" fn forward_trampoline(ctx: *mut c_void, input: TensorHandle, out: *mut TensorHandle, err: ErrorSink) -> i32 {
    let c = &mut *(ctx as *mut ForwardCtx);
    let x = borrow(input);
    host_call(out, err, "forward", || Ok(c.model.logits(&(c.hidden_of)(&x))))
}

#[cfg(feature = "torch")]
unsafe extern "C" fn loss_trampoline(ctx: *mut c_void, input: TensorHandle, targets: TensorHandle, out: *mut TensorHandle, err: ErrorSink) -> i32 {
    let c = &mut *(ctx as *mut ForwardCtx);
    let (x, y) = (borrow(input), borrow(targets));
    host_call(out, err, "loss", || {
        if x.size() != y.size() {
            return Err(format!("loss: inputs {:?} and targets {:?} differ in shape", x.size(), y.size()));
        }
        Ok(c.model.loss(&(c.hidden_of)(&x), &y))
    })
}

#[cfg(feature = "torch")]
unsafe extern "C" fn main_logits_trampoline(ctx: *mut c_void, out: *mut TensorHandle, err: ErrorSink) -> i32 {
    let c = &mut *(ctx as *mut ForwardCtx);
    host_call(out, err, "main_logits", || match c.main_hidden {
        Some(h) => Ok(c.model.logits(h)),
        None => Err("main_logits: this call has no main forward pass to take logits from".into()),
    })
}

#[cfg(feature = "torch")]
struct MetricCtx<'a> {
    prefix: &'a str,
    out: &'a mut Vec<(String, f64)>,
}

#[cfg(feature = "torch")]
unsafe extern "C" fn emit_metric(ctx: *mut c_void, name: Str, value: f64) {
    let c = &mut *(ctx as *mut MetricCtx);
    c.out.push((format!("{}/{}", c.prefix, name.to_string_lossy()), value));
}
