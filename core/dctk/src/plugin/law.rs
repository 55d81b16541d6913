//! Host side of law-form plugins: [`PluginLaw`] implements `dctk_laws::LawForm`
//! over a plugin's law vtable, so the fitter uses it like a built-in form.
use super::loader::{find, Plugin};
use anyhow::{bail, Result};
use dctk_laws::{Inputs, LawForm, ParamSpec};
use dctk_plugin_sdk::abi::{self, LawVTable};
use dctk_plugin_sdk::guest::error_sink;
use std::sync::Arc;

/// A law form provided by a plugin.
pub struct PluginLaw {
    pub plugin: Arc<Plugin>,
    vt: &'static LawVTable,
    params: Vec<ParamSpec>,
    inputs: Vec<String>,
    equation: String,
    citation: String,
    grid: Vec<Vec<f64>>,
}

// The vtable is immutable static data of a never-unloaded library, and the SDK
// requires a law's `predict` to be a pure function (the fitter calls it from
// rayon threads).
unsafe impl Send for PluginLaw {}
unsafe impl Sync for PluginLaw {}

/// The law form of plugin `name`.
pub fn load_law(name: &str) -> Result<Arc<PluginLaw>> {
    let plugin = find(name)?;
    plugin.require("law")?;
    let vt = plugin.law().expect("checked by require");
    let params: Vec<ParamSpec> = unsafe { vt.params.as_slice() }
        .iter()
        .map(|p| ParamSpec {
            name: unsafe { p.name.to_string_lossy() },
            lower: if p.lower.is_nan() { f64::NEG_INFINITY } else { p.lower },
            upper: if p.upper.is_nan() { f64::INFINITY } else { p.upper },
        })
        .collect();
    let flat = unsafe { vt.grid.as_slice() };
    if params.is_empty() || flat.len() % params.len() != 0 {
        bail!(
            "plugin `{}` ({}): default grid has {} values, not a multiple of its {} parameters",
            plugin.name,
            plugin.file.display(),
            flat.len(),
            params.len()
        );
    }
    Ok(Arc::new(PluginLaw {
        inputs: unsafe { vt.inputs.as_slice() }.iter().map(|s| unsafe { s.to_string_lossy() }).collect(),
        equation: unsafe { vt.equation.to_string_lossy() },
        citation: unsafe { vt.citation.to_string_lossy() },
        grid: flat.chunks(params.len()).map(<[f64]>::to_vec).collect(),
        params,
        vt,
        plugin,
    }))
}

impl PluginLaw {
    /// Vectorised prediction; an error names the plugin.
    pub fn try_predict(&self, params: &[f64], inputs: &Inputs, out: &mut [f64]) -> Result<()> {
        let n = inputs.len();
        if out.len() != n || inputs.names().len() != self.inputs.len() {
            bail!("law plugin `{}`: expected {} input columns and {n} outputs", self.plugin.name, self.inputs.len());
        }
        let cols: Vec<*const f64> = (0..self.inputs.len()).map(|k| inputs.col(k).as_ptr()).collect();
        let mut msg = String::new();
        let status = unsafe {
            (self.vt.predict)(params.as_ptr(), params.len(), cols.as_ptr(), cols.len(), n, out.as_mut_ptr(), error_sink(&mut msg))
        };
        if status != abi::STATUS_OK {
            bail!("law plugin `{}` ({}): predict: {msg}", self.plugin.name, self.plugin.file.display());
        }
        Ok(())
    }
}

impl LawForm for PluginLaw {
    fn name(&self) -> &str {
        &self.plugin.name
    }
    fn equation(&self) -> String {
        self.equation.clone()
    }
    fn citation(&self) -> String {
        self.citation.clone()
    }
    fn params(&self) -> Vec<ParamSpec> {
        self.params.clone()
    }
    fn inputs(&self) -> Vec<String> {
        self.inputs.clone()
    }
    fn default_grid(&self, _inputs: &Inputs, _loss: &[f64]) -> Vec<Vec<f64>> {
        self.grid.clone()
    }
    /// On a plugin error every prediction is NaN, which the fitter rejects as a
    /// non-finite objective (the trait has no error channel).
    fn predict_into(&self, params: &[f64], inputs: &Inputs, out: &mut [f64]) {
        if self.try_predict(params, inputs, out).is_err() {
            out.iter_mut().for_each(|v| *v = f64::NAN);
        }
    }
}
