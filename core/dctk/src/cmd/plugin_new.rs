//! `dctk plugin new NAME --kind regularizer|augmenter|law`: scaffold a plugin
//! crate that builds and loads as is. The crate is its own workspace and depends on
//! the plugin SDK this dctk was built with: its sources are embedded in the binary
//! and written once to `$DCTK_HOME/sdk/<version>-<hash>/` (so a scaffold made by an
//! installed dctk builds too, and always against exactly the SDK the handshake
//! expects). It gets this dctk's Cargo.lock (tch and every shared dependency resolve
//! to the exact versions the handshake compares), `LIBTORCH` pointing at the libtorch
//! this dctk was built with, and a `target-dir` shared by all plugins
//! (`$DCTK_HOME/plugin-target`), so tch compiles once for every plugin a user writes.
use anyhow::{bail, Context, Result};
use clap::{Arg, ArgMatches, Command};
use std::path::{Path, PathBuf};

use crate::plugin::source::{dctk_home, plugin_target_dir};

pub fn cli() -> Command {
    Command::new("plugin").about("Plugin authoring tools").subcommand_required(true).arg_required_else_help(true).subcommand(
        Command::new("new")
            .about("Scaffold a plugin crate (builds and loads as is, with a test)")
            .arg(Arg::new("name").required(true).help("plugin name: lowercase letters, digits, _"))
            .arg(Arg::new("kind").long("kind").required(true).value_parser(["regularizer", "augmenter", "law"]).help("plugin kind"))
            .arg(Arg::new("path").long("path").help("directory to create (default: ./dctk-plugin-NAME)"))
            .arg(Arg::new("sdk").long("sdk").help("path to a dctk plugins/sdk (default: the SDK embedded in this dctk)")),
    )
}

pub fn exec(args: &ArgMatches) -> Result<()> {
    let Some(("new", a)) = args.subcommand() else { unreachable!("clap requires a known subcommand") };
    let name = a.get_one::<String>("name").expect("required");
    let kind = a.get_one::<String>("kind").expect("required");
    let dir = a.get_one::<String>("path").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(format!("dctk-plugin-{name}")));
    let home = dctk_home().context("neither DCTK_HOME nor HOME is set: set DCTK_HOME to a directory for dctk's files")?;
    let sdk = match a.get_one::<String>("sdk") {
        Some(s) => PathBuf::from(s),
        None => embedded_sdk(&home)?,
    };
    let target = plugin_target_dir().expect("DCTK_HOME or HOME is set");
    scaffold(name, kind, &dir, &sdk, &target)?;
    let lib = format!("libdctk_plugin_{name}.so");
    let user = crate::plugin::loader::user_dir().expect("DCTK_HOME or HOME is set");
    println!("created {kind} plugin `{name}` in {}", dir.display());
    println!("sdk:   {} (the plugin SDK of this dctk)", sdk.display());
    println!(
        "build: into the shared plugin build directory {} (set in {}): tch compiles once, for all your plugins",
        target.display(),
        dir.join(".cargo/config.toml").display()
    );
    println!("next:  cd {} && cargo test --release && cargo build --release", dir.display());
    println!("then:  mkdir -p {u} && cp {t}/release/{lib} {u}/ && dctk plugins info {name}", u = user.display(), t = target.display());
    Ok(())
}

/// The SDK crates (`sdk/`, the SDK; `build/`, its build-script helper) as this dctk was built
/// with them, and the workspace's Cargo.toml (for the inherited package fields).
const SDK_FILES: &[(&str, &str)] = &[
    ("sdk/Cargo.toml", include_str!("../../../../plugins/sdk/Cargo.toml")),
    ("sdk/build.rs", include_str!("../../../../plugins/sdk/build.rs")),
    ("sdk/src/abi.rs", include_str!("../../../../plugins/sdk/src/abi.rs")),
    ("sdk/src/guest.rs", include_str!("../../../../plugins/sdk/src/guest.rs")),
    ("sdk/src/lib.rs", include_str!("../../../../plugins/sdk/src/lib.rs")),
    ("sdk/src/settings.rs", include_str!("../../../../plugins/sdk/src/settings.rs")),
    ("build/Cargo.toml", include_str!("../../../../plugins/build/Cargo.toml")),
    ("build/src/lib.rs", include_str!("../../../../plugins/build/src/lib.rs")),
];
const WORKSPACE_MANIFEST: &str = include_str!("../../../../Cargo.toml");
/// Same dependency versions as dctk (tch must match exactly).
const CARGO_LOCK: &str = include_str!("../../../../Cargo.lock");

/// A crate manifest of the embedded SDK with the fields it inherits from dctk's workspace
/// (`version.workspace = true`, …) written out, so it builds outside that workspace.
fn standalone_manifest(manifest: &str) -> Result<String> {
    let mut inherited = std::collections::BTreeMap::new();
    let mut in_package = false;
    for line in WORKSPACE_MANIFEST.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_package = t == "[workspace.package]";
        } else if in_package {
            if let Some((k, v)) = t.split_once('=') {
                inherited.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    let mut out = String::new();
    for line in manifest.lines() {
        match line.trim().strip_suffix(".workspace = true") {
            Some(key) => {
                let v = inherited.get(key).with_context(|| format!("the SDK inherits `{key}`, which dctk's workspace does not set"))?;
                out.push_str(&format!("{key} = {v}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// Writes the embedded SDK once to `home/sdk/<version>-<content hash>/` and returns its
/// `sdk/` directory. The directory is complete or absent (written beside, then renamed), and
/// shared by every scaffold of this dctk build, so the shared target directory reuses the
/// compiled SDK.
fn embedded_sdk(home: &Path) -> Result<PathBuf> {
    let mut h = blake3::Hasher::new();
    for (path, text) in SDK_FILES {
        h.update(path.as_bytes());
        h.update(&[0]);
        h.update(text.as_bytes());
        h.update(&[0]);
    }
    h.update(WORKSPACE_MANIFEST.as_bytes());
    let root = home.join("sdk").join(format!("{}-{}", dctk_plugin_sdk::SDK_VERSION, &h.finalize().to_hex()[..12]));
    if !root.join("sdk/Cargo.toml").is_file() {
        let tmp = dctk_fs::tmp_sibling(&root, "sdk");
        for (path, text) in SDK_FILES {
            let dest = tmp.join(path);
            std::fs::create_dir_all(dest.parent().unwrap()).with_context(|| format!("creating {}", dest.display()))?;
            let text = if path.ends_with("Cargo.toml") { standalone_manifest(text)? } else { text.to_string() };
            std::fs::write(&dest, text).with_context(|| format!("writing {}", dest.display()))?;
        }
        match std::fs::rename(&tmp, &root) {
            Ok(()) => {}
            // Another scaffold wrote the same SDK first.
            Err(_) if root.join("sdk/Cargo.toml").is_file() => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(e).with_context(|| format!("writing the plugin SDK to {}", root.display())),
        }
    }
    Ok(root.join("sdk"))
}

/// Write the crate, building into `target_dir`. Refuses to overwrite an existing directory.
pub fn scaffold(name: &str, kind: &str, dir: &Path, sdk: &Path, target_dir: &Path) -> Result<()> {
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("plugin name `{name}` must start with a lowercase letter and hold only a-z, 0-9 and _");
    }
    if dir.exists() {
        bail!("{} already exists: choose another --path", dir.display());
    }
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("dctk-plugin-sdk not found at {} (pass --sdk PATH to dctk's plugins/sdk)", sdk.display()))?;
    let build = sdk
        .parent()
        .map(|p| p.join("build"))
        .filter(|p| p.join("Cargo.toml").exists())
        .with_context(|| format!("dctk-plugin-build not found next to {} (expected plugins/build)", sdk.display()))?;
    let body = match kind {
        "regularizer" => REGULARIZER,
        "augmenter" => AUGMENTER,
        "law" => LAW,
        other => bail!("unknown plugin kind `{other}` (regularizer, augmenter, law)"),
    };
    let ty: String = name
        .split('_')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    let ty = if ty.starts_with(|c: char| c.is_ascii_alphabetic()) { ty } else { format!("P{ty}") };
    let fill = |t: &str| t.replace("{{name}}", name).replace("{{Type}}", &ty);
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::create_dir_all(dir.join(".cargo"))?;
    let cargo = format!(
        r#"[package]
name = "dctk-plugin-{dash}"
version = "0.1.0"
edition = "2021"
publish = false
description = "dctk {kind} plugin `{name}`"
build = "build.rs"

[lib]
# dctk finds plugins by file name: lib<this name>.so
name = "dctk_plugin_{name}"
crate-type = ["cdylib", "rlib"]

[dependencies]
dctk-plugin-sdk = {{ path = "{sdk}" }}

[build-dependencies]
dctk-plugin-build = {{ path = "{build}" }}

[profile.release]
# dctk turns plugin panics into errors; that needs unwinding panics.
panic = "unwind"

# A workspace of its own, so the crate builds wherever it lives.
[workspace]
"#,
        dash = name.replace('_', "-"),
        sdk = sdk.display(),
        build = build.display(),
    );
    std::fs::write(dir.join("Cargo.toml"), cargo)?;
    std::fs::write(
        dir.join("build.rs"),
        "//! rpath to libtorch for the plugin and its tests.\nfn main() {\n    dctk_plugin_build::link_libtorch();\n}\n",
    )?;
    std::fs::write(dir.join("src/lib.rs"), fill(body))?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    let libtorch = option_env!("DCTK_LIBTORCH_BUILD_DIR").unwrap_or("");
    let mut config = format!(
        "# One build directory for all of a user's plugins: tch (the slow part) compiles once.\n[build]\ntarget-dir = {}\n\n",
        toml_string(&target_dir.display().to_string())
    );
    if libtorch.is_empty() {
        config.push_str("# Set LIBTORCH to the libtorch dctk was built with (see `dctk doctor`).\n");
    } else {
        config.push_str(&format!(
            "# The libtorch this dctk was built with: the handshake requires the same version.\n[env]\nLIBTORCH = {{ value = {}, force = false }}\n",
            toml_string(libtorch)
        ));
    }
    std::fs::write(dir.join(".cargo/config.toml"), config)?;
    std::fs::write(dir.join("Cargo.lock"), CARGO_LOCK).with_context(|| format!("writing {}", dir.join("Cargo.lock").display()))?;
    let user = crate::plugin::loader::user_dir().map(|d| d.display().to_string()).unwrap_or_else(|| "~/.dctk/plugins".into());
    std::fs::write(
        dir.join("README.md"),
        format!(
            "# dctk {kind} plugin `{name}`\n\n```sh\ncargo test --release\ncargo build --release\nmkdir -p {user} && cp {t}/release/libdctk_plugin_{name}.so {user}/\ndctk plugins info {name}\ndctk plugins check {name}\n```\n\nIt builds into {t}, shared by all your plugins (see `.cargo/config.toml`). Edit `src/lib.rs`; the SDK's crate docs (`cargo doc -p dctk-plugin-sdk --open`) describe the ABI.\n",
            t = target_dir.display()
        ),
    )?;
    Ok(())
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string")
}

const REGULARIZER: &str = r#"//! dctk regularizer plugin `{{name}}`: adds `weight · mean(logits²)` to the loss
//! (a logit-magnitude penalty; replace it with your own regularizer).
use dctk_plugin_sdk::tch::{Kind, Tensor};
use dctk_plugin_sdk::{export_plugin, Batch, Metrics, Model, Regularizer, Result, Setting, SettingValues, StepInfo};

pub struct {{Type}} {
    weight: f64,
}

impl {{Type}} {
    /// The unweighted penalty: mean of the squared logits, in fp32.
    pub fn penalty(logits: &Tensor) -> Tensor {
        logits.to_kind(Kind::Float).square().mean(Kind::Float)
    }
}

impl Regularizer for {{Type}} {
    fn settings() -> Vec<Setting> {
        vec![Setting::float("weight", 1e-4, "weight of mean(logits²)").range(0.0, 1.0)]
    }

    fn new(s: &SettingValues) -> Result<Self> {
        Ok({{Type}} { weight: s.f64("weight")? })
    }

    fn aux_loss(&mut self, _info: &StepInfo, model: &mut Model, _batch: &Batch, metrics: &mut Metrics) -> Result<Option<Tensor>> {
        // The main pass's logits, made by the host on request. (A second pass of your own:
        // `model.forward(&ids)` for logits, `model.loss(&ids, &batch.targets)` for its
        // cross-entropy without logits.)
        let p = Self::penalty(&model.main_logits()?);
        metrics.log("penalty", p.double_value(&[]));
        Ok(Some(p * self.weight))
    }
}

export_plugin! {
    name: "{{name}}",
    version: env!("CARGO_PKG_VERSION"),
    description: "logit-magnitude penalty (scaffolded by dctk plugin new)",
    regularizer: {{Type}},
}

#[cfg(test)]
mod tests {
    use super::*;
    use dctk_plugin_sdk::settings::validate;

    #[test]
    fn defaults_validate_and_penalty_is_mean_square() {
        let s = validate("{{name}}", &{{Type}}::settings(), &dctk_plugin_sdk::serde_json::Value::Null).unwrap();
        let r = {{Type}}::new(&SettingValues(s)).unwrap();
        assert_eq!(r.weight, 1e-4);
        let logits = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 0.0]).view([1, 2, 2]);
        assert!(({{Type}}::penalty(&logits).double_value(&[]) - 3.5).abs() < 1e-6);
    }
}
"#;

const AUGMENTER: &str = r#"//! dctk augmenter plugin `{{name}}` (plugin ABI 3): asks `n` paraphrases of each
//! document (`prompt`, with `{document}`) and emits each answer as a document, plus the
//! original with `keep_original = true`. The host answers the requests (request cache,
//! batching, local or OpenAI-compatible generator); this crate only plans and assembles.
use dctk_plugin_sdk::{export_plugin, Augmenter, Doc, PluginError, Request, Result, Setting, SettingValues};

pub struct {{Type}} {
    prompt: String,
    n: i64,
    keep_original: bool,
}

impl Augmenter for {{Type}} {
    fn settings() -> Vec<Setting> {
        vec![
            Setting::string("prompt", "Paraphrase the following text.\n\n{document}\n\nParaphrase:", "the prompt; {document} is the source document"),
            Setting::int("n", 1, "paraphrases asked per document").range(1.0, 64.0),
            Setting::bool("keep_original", false, "also emit the source document itself"),
        ]
    }

    fn new(s: &SettingValues) -> Result<Self> {
        let prompt = s.str("prompt")?.to_string();
        if !prompt.contains("{document}") {
            return Err(PluginError::msg("setting `prompt` has no {document} placeholder"));
        }
        Ok({{Type}} { prompt, n: s.i64("n")?, keep_original: s.bool("keep_original")? })
    }

    fn plan(&self, doc: &Doc) -> Result<Vec<Request>> {
        let prompt = self.prompt.replace("{document}", &doc.text);
        Ok((0..self.n).map(|j| Request::new(prompt.clone(), format!("paraphrase={j}"))).collect())
    }

    fn assemble(&self, doc: &Doc, answers: &[String]) -> Result<Vec<String>> {
        let mut out: Vec<String> = answers.iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
        if self.keep_original {
            out.push(doc.text.clone());
        }
        Ok(out)
    }
}

export_plugin! {
    name: "{{name}}",
    version: env!("CARGO_PKG_VERSION"),
    description: "paraphrase augmenter (scaffolded by dctk plugin new)",
    augmenter: {{Type}},
}

#[cfg(test)]
mod tests {
    use super::*;
    use dctk_plugin_sdk::settings::validate;

    #[test]
    fn plans_n_paraphrases_and_keeps_the_answers() {
        let s = validate("{{name}}", &{{Type}}::settings(), &dctk_plugin_sdk::serde_json::json!({"n": 2, "keep_original": true})).unwrap();
        let a = {{Type}}::new(&SettingValues(s)).unwrap();
        let doc = Doc { domain: "web".into(), index: 0, key: 7, text: "Cats sleep.".into() };
        let plan = a.plan(&doc).unwrap();
        assert_eq!(plan.len(), 2);
        assert!(plan[0].prompt.contains("Cats sleep.") && plan[1].tag == "paraphrase=1");
        let out = a.assemble(&doc, &[" Felines nap. ".into(), "".into()]).unwrap();
        assert_eq!(out, ["Felines nap.", "Cats sleep."]);
    }
}
"#;

const LAW: &str = r#"//! dctk law-form plugin `{{name}}`: L(N) = E + A / N^alpha (replace with your form).
use dctk_plugin_sdk::{export_plugin, LawForm, LawParam, PluginError, Result};

pub struct {{Type}};

impl LawForm for {{Type}} {
    fn params() -> Vec<LawParam> {
        vec![
            LawParam::new("E", Some(0.0), None),
            LawParam::new("A", Some(0.0), None),
            LawParam::new("alpha", Some(0.0), Some(2.0)),
        ]
    }

    fn inputs() -> Vec<String> {
        vec!["N".into()]
    }

    fn equation() -> String {
        "L = E + A / N^alpha".into()
    }

    fn default_grid() -> Vec<Vec<f64>> {
        let mut g = Vec::new();
        for e in [1.0, 2.0] {
            for a in [10.0, 100.0, 1000.0] {
                for alpha in [0.1, 0.3, 0.5] {
                    g.push(vec![e, a, alpha]);
                }
            }
        }
        g
    }

    fn predict(params: &[f64], inputs: &[&[f64]], out: &mut [f64]) -> Result<()> {
        let [e, a, alpha] = params else {
            return Err(PluginError::msg(format!("expected 3 parameters, got {}", params.len())));
        };
        for (o, n) in out.iter_mut().zip(inputs[0]) {
            *o = e + a / n.powf(*alpha);
        }
        Ok(())
    }
}

export_plugin! {
    name: "{{name}}",
    version: env!("CARGO_PKG_VERSION"),
    description: "power law in N (scaffolded by dctk plugin new)",
    law: {{Type}},
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicts_the_equation() {
        let mut out = [0.0; 2];
        {{Type}}::predict(&[1.5, 100.0, 0.5], &[&[100.0, 10_000.0]], &mut out).unwrap();
        assert!((out[0] - 11.5).abs() < 1e-12 && (out[1] - 2.5).abs() < 1e-12);
        assert!({{Type}}::default_grid().iter().all(|p| p.len() == {{Type}}::params().len()));
    }
}
"#;
