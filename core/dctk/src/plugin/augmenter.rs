//! Host side of augmenter plugins (ABI 2): a plugin's `plan` / `assemble` entry points
//! behind the augmenter seam ([`crate::generate::augment::Augmenter`]), so a `generate`
//! cell runs a plugin exactly as it runs a built-in. The plugin never generates text
//! itself: the cell answers its planned requests through the request cache.
use super::loader::{find, Plugin};
use super::PluginRecord;
use crate::generate::augment::{AugAnswer, AugDoc, AugRequest, Augmenter, Scorer, SourceText};
use anyhow::{bail, Result};
use dctk_plugin_sdk::abi::{self, AugmenterVTable, DocIn, RequestOut, RequestSink, Slice, Str};
use dctk_plugin_sdk::guest::{error_sink, vec_sink};
use dctk_plugin_sdk::settings::validate;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// One instantiated augmenter plugin.
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

unsafe extern "C" fn push_request(ctx: *mut c_void, r: *const RequestOut) {
    let v = &mut *(ctx as *mut Vec<AugRequest>);
    let r = &*r;
    let mut req = AugRequest::new(r.prompt.to_string_lossy(), r.tag.to_string_lossy());
    req.max_tokens = (r.max_tokens > 0).then_some(r.max_tokens as usize);
    req.temperature = (r.temperature >= 0.0 && r.temperature.is_finite()).then_some(r.temperature);
    v.push(req);
}

fn doc_in(doc: &SourceText) -> DocIn {
    DocIn { domain: Str::new(doc.domain), index: doc.index as u64, key: doc.key, text: Str::new(doc.text) }
}

impl AugmenterInstance {
    pub fn record(&self) -> PluginRecord {
        PluginRecord::new(&self.plugin, "augmenter", Some(self.settings.clone()))
    }

    /// The plugin's requests for `doc` (the error names the plugin and its file).
    pub fn plan(&self, doc: &SourceText) -> Result<Vec<AugRequest>> {
        let d = doc_in(doc);
        let mut out: Vec<AugRequest> = Vec::new();
        let sink = RequestSink { ctx: &mut out as *mut Vec<AugRequest> as *mut c_void, push: push_request };
        let mut msg = String::new();
        let status = unsafe { (self.vt.plan)(self.inst, &d, sink, error_sink(&mut msg)) };
        if status != abi::STATUS_OK {
            bail!("plugin `{}` ({}): plan: {msg}", self.plugin.name, self.plugin.file.display());
        }
        Ok(out)
    }

    /// The plugin's output texts for `doc` from the answers to its requests.
    pub fn assemble(&self, doc: &SourceText, answers: &[&str]) -> Result<Vec<String>> {
        let d = doc_in(doc);
        let strs: Vec<Str> = answers.iter().map(|a| Str::new(a)).collect();
        let mut out = Vec::new();
        let mut msg = String::new();
        let status = unsafe { (self.vt.assemble)(self.inst, &d, Slice { ptr: strs.as_ptr(), len: strs.len() }, vec_sink(&mut out), error_sink(&mut msg)) };
        if status != abi::STATUS_OK {
            bail!("plugin `{}` ({}): assemble: {msg}", self.plugin.name, self.plugin.file.display());
        }
        Ok(out)
    }
}

/// A plugin augmenter behind the seam: its identity is the plugin's name, version, file
/// blake3 and validated settings; calls go one at a time (the ABI's threading rule).
pub struct PluginAugmenter {
    name: String,
    identity: serde_json::Value,
    inst: Mutex<AugmenterInstance>,
}

// The instance is only touched under the mutex, one call at a time, as the ABI requires.
unsafe impl Send for PluginAugmenter {}
unsafe impl Sync for PluginAugmenter {}

impl PluginAugmenter {
    /// Loads plugin `name` (from the plugin search path) with `settings`.
    pub fn load(name: &str, settings: &serde_json::Value) -> Result<PluginAugmenter> {
        let inst = load_augmenter(name, settings)?;
        let p = &inst.plugin;
        let identity = serde_json::json!({"name": p.name, "plugin": {"version": p.version, "blake3": p.blake3}, "settings": inst.settings});
        Ok(PluginAugmenter { name: p.name.clone(), identity, inst: Mutex::new(inst) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AugmenterInstance> {
        self.inst.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Augmenter for PluginAugmenter {
    fn name(&self) -> &str {
        &self.name
    }

    fn identity(&self) -> serde_json::Value {
        self.identity.clone()
    }

    fn plan(&self, doc: &SourceText) -> Result<Vec<AugRequest>> {
        self.lock().plan(doc)
    }

    fn assemble(&self, doc: &SourceText, answers: &[AugAnswer], _scorer: Option<&dyn Scorer>) -> Result<Vec<AugDoc>> {
        let texts: Vec<&str> = answers.iter().map(|a| a.text).collect();
        let out = self.lock().assemble(doc, &texts)?;
        // A plugin says nothing of which requests a document used: all of them.
        Ok(out.into_iter().map(|t| AugDoc::new(t, (0..answers.len()).collect())).collect())
    }
}
