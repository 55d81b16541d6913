//! Build-script helper for dctk plugin crates (and the SDK itself).
//!
//! A plugin is a `cdylib` that links libtorch, like the `dctk` binary. tch leaves no
//! rpath, so without help the plugin's test binaries would not start and the plugin
//! would depend on `LD_LIBRARY_PATH`. This crate mirrors `core/dctk/build.rs`: it adds
//! `-Wl,-rpath,$LIBTORCH/lib` and reports the libtorch version (from the install's
//! `version.py`) so the SDK can put it in the plugin's handshake. It has no
//! dependencies, so using it as a build-dependency costs nothing.
//!
//! A plugin's `build.rs`:
//!
//! ```text
//! fn main() {
//!     dctk_plugin_build::link_libtorch();
//! }
//! ```
use std::path::{Path, PathBuf};

/// The libtorch install named by `LIBTORCH` (made absolute against the workspace
/// root found by walking up from the crate being built), if any.
pub fn libtorch_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("LIBTORCH")?);
    if dir.is_absolute() {
        return Some(dir.canonicalize().unwrap_or(dir));
    }
    // `.cargo/config.toml` sets it relative to the directory holding `.cargo/`.
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    for anc in manifest.ancestors() {
        let cand = anc.join(&dir);
        if cand.join("lib").is_dir() {
            return Some(cand.canonicalize().unwrap_or(cand));
        }
    }
    Some(dir)
}

/// libtorch's version from `<dir>/version.py` (`__version__ = '2.11.0+cpu'`).
pub fn libtorch_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("version.py")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("__version__ = ")).map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
}

/// Emit the rpath link argument for libtorch and `DCTK_PLUGIN_LIBTORCH_VERSION`
/// (`unknown` without `LIBTORCH`). Call it from a plugin's `build.rs`.
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let version = match libtorch_dir() {
        Some(dir) => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.join("lib").display());
            libtorch_version(&dir).unwrap_or_else(|| "unknown".into())
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=DCTK_PLUGIN_LIBTORCH_VERSION={version}");
}

/// The exact `rustc --version` line of the compiler building this crate.
pub fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
