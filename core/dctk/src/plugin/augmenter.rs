//! Host side of augmenter plugins: documents in, documents out, with an optional
//! host text generator lent as a callback. The data pipeline does not call
//! augmenters yet; this is the interface it will call.
use super::loader::{find, Plugin};
use super::PluginRecord;
use anyhow::{bail, Result};
use dctk_plugin_sdk::abi::{self, AugmenterVTable, ErrorSink, GenOptions, GeneratorFn, Slice, Str, StrSink};
use dctk_plugin_sdk::guest::{error_sink, panic_message, vec_sink};
use dctk_plugin_sdk::settings::validate;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// A host text generator: prompt and options in, completion out.
pub type TextGenerator<'a> = &'a mut dyn FnMut(&str, &GenOptions) -> Result<String>;

/// One instantiated augmenter.
pub struct AugmenterInstance {
    plugin: Arc<Plugin>,
    vt: &'static AugmenterVTable,
    inst: *mut c_void,
    settings: serde_json::Map<String, serde_json::Value>,
}

impl Drop for AugmenterInstance {
    fn drop(&mut self) {
        unsafe { (self.vt.destroy)(self.inst) }
    }
}

/// Load the augmenter `name` with `settings` (validated against its descriptor).
pub fn load_augmenter(name: &str, settings: &serde_json::Value) -> Result<AugmenterInstance> {
    let plugin = find(name)?;
    plugin.require("augmenter")?;
    let vt = plugin.augmenter().expect("checked by require");
    let settings = validate(&plugin.name, &plugin.settings("augmenter")?, settings).map_err(anyhow::Error::msg)?;
    let json = serde_json::Value::Object(settings.clone()).to_string();
    let mut msg = String::new();
    let inst = unsafe { (vt.create)(Str::new(&json), error_sink(&mut msg)) };
    if inst.is_null() {
        bail!("plugin `{}` ({}): could not create the augmenter: {msg}", plugin.name, plugin.file.display());
    }
    Ok(AugmenterInstance { plugin, vt, inst, settings })
}

struct GenCtx<'a, 'b> {
    g: Option<&'a mut TextGenerator<'b>>,
}

unsafe extern "C" fn gen_trampoline(ctx: *mut c_void, prompt: Str, opts: *const GenOptions, out: StrSink, err: ErrorSink) -> i32 {
    let c = &mut *(ctx as *mut GenCtx);
    let prompt = prompt.to_string_lossy();
    let Some(g) = c.g.as_mut() else {
        (err.set)(err.ctx, Str::new("no text generator was given to this augmenter"));
        return abi::STATUS_ERROR;
    };
    match catch_unwind(AssertUnwindSafe(|| g(&prompt, &*opts))) {
        Ok(Ok(text)) => {
            (out.push)(out.ctx, Str::new(&text));
            abi::STATUS_OK
        }
        Ok(Err(e)) => {
            (err.set)(err.ctx, Str::new(&format!("{e:#}")));
            abi::STATUS_ERROR
        }
        Err(p) => {
            (err.set)(err.ctx, Str::new(&format!("the text generator panicked: {}", panic_message(&*p))));
            abi::STATUS_PANIC
        }
    }
}

impl AugmenterInstance {
    pub fn record(&self) -> PluginRecord {
        PluginRecord::new(&self.plugin, "augmenter", Some(self.settings.clone()))
    }

    /// Feed one chunk of documents; returns the documents produced so far.
    pub fn augment(&mut self, docs: &[String], generator: Option<TextGenerator>) -> Result<Vec<String>> {
        let strs: Vec<Str> = docs.iter().map(|d| Str::new(d)).collect();
        let mut g = generator;
        let mut gctx = GenCtx { g: g.as_mut() };
        let gen = GeneratorFn { ctx: &mut gctx as *mut GenCtx as *mut c_void, call: gen_trampoline };
        let mut out = Vec::new();
        let mut msg = String::new();
        let status = unsafe {
            (self.vt.augment)(self.inst, Slice { ptr: strs.as_ptr(), len: strs.len() }, gen, vec_sink(&mut out), error_sink(&mut msg))
        };
        if status != abi::STATUS_OK {
            bail!("augmenter `{}` ({}): {msg}", self.plugin.name, self.plugin.file.display());
        }
        Ok(out)
    }

    /// End of the stream: the documents the augmenter still held.
    pub fn finish(&mut self, generator: Option<TextGenerator>) -> Result<Vec<String>> {
        let mut g = generator;
        let mut gctx = GenCtx { g: g.as_mut() };
        let gen = GeneratorFn { ctx: &mut gctx as *mut GenCtx as *mut c_void, call: gen_trampoline };
        let mut out = Vec::new();
        let mut msg = String::new();
        let status = unsafe { (self.vt.finish)(self.inst, gen, vec_sink(&mut out), error_sink(&mut msg)) };
        if status != abi::STATUS_OK {
            bail!("augmenter `{}` ({}): finish: {msg}", self.plugin.name, self.plugin.file.display());
        }
        Ok(out)
    }
}
