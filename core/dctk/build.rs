//! Build script for the `dctk` binary and library.
//!
//! Three jobs, all about libtorch:
//! 1. tch leaves no rpath in the final binary, so we add `-Wl,-rpath,$LIBTORCH/lib`:
//!    `dctk` and `cargo test` then run without `LD_LIBRARY_PATH`.
//! 2. With the `cuda` feature, keep `libtorch_cuda` linked. rustc links with
//!    `--as-needed`, which drops it (nothing references its symbols directly), and
//!    then CUDA is never available at run time (tch-rs issues #907 and #980).
//! 3. Record the libtorch version we built against (from the wheel's `version.py`)
//!    and the exact tch version (from Cargo.lock) so `dctk doctor` can report them.
//! 4. Hash the sources that decide numerics into the build identity (`DCTK_BUILD_ID`,
//!    see `src/build_id.rs`), part of every cell id.
use std::path::{Path, PathBuf};

#[path = "src/build_id.rs"]
#[allow(dead_code)]
mod build_id;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    let libtorch = std::env::var("LIBTORCH").ok().map(PathBuf::from);
    let mut libtorch_version = String::from("unknown");
    if let Some(dir) = &libtorch {
        // `LIBTORCH` from .cargo/config.toml is relative to the workspace root.
        let dir = if dir.is_relative() {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir)
        } else {
            dir.clone()
        };
        let dir = dir.canonicalize().unwrap_or(dir);
        let lib = dir.join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        println!("cargo:rustc-env=DCTK_LIBTORCH_BUILD_DIR={}", dir.display());
        if let Ok(text) = std::fs::read_to_string(dir.join("version.py")) {
            if let Some(v) = text
                .lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
            {
                libtorch_version = v.trim_matches(|c| c == '\'' || c == '"').to_string();
            }
        }
    } else {
        println!("cargo:rustc-env=DCTK_LIBTORCH_BUILD_DIR=");
    }
    println!("cargo:rustc-env=DCTK_LIBTORCH_BUILD_VERSION={libtorch_version}");
    println!("cargo:rustc-env=DCTK_TCH_VERSION={}", tch_version());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    println!("cargo:rerun-if-changed=src/build_id.rs");
    for s in build_id::NUMERICS_SOURCES {
        println!("cargo:rerun-if-changed={}", root.join(s).display());
    }
    for f in build_id::source_files(&root, build_id::NUMERICS_SOURCES).unwrap_or_default() {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let id = build_id::build_identity(&root, build_id::NUMERICS_SOURCES).unwrap_or_else(|e| panic!("hashing the numerics sources: {e}"));
    println!("cargo:rustc-env=DCTK_BUILD_ID={id}");

    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // Only the full binary and the tests: the `dctk` front must not link libtorch at all.
        for flag in ["-Wl,--no-as-needed", "-ltorch_cuda", "-Wl,--as-needed"] {
            println!("cargo:rustc-link-arg-bin=dctk-torch={flag}");
            println!("cargo:rustc-link-arg-tests={flag}");
        }
    }
}

/// The tch version actually resolved, read from the workspace's Cargo.lock.
fn tch_version() -> String {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let Ok(text) = std::fs::read_to_string(&lock) else {
        return "unknown".into();
    };
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"tch\"" {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = ")) {
                return v.trim_matches('"').to_string();
            }
        }
    }
    "unknown".into()
}
