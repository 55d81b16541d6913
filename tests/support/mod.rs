//! Helpers for dctk's integration tests: find the built `dctk` binary, make scratch
//! directories, run commands, read metrics.
//!
//! The tests drive the real binary (as a user would). They are integration tests of the
//! `dctk` package (`core/dctk/Cargo.toml` lists them), so cargo builds the binary before
//! them and hands its path over as `CARGO_BIN_EXE_dctk`: the binary under test is always
//! the one just built, never a stale `target/<profile>/dctk`.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (two levels above the `dctk` package's manifest, `core/dctk/`).
pub fn repo_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dir.canonicalize().unwrap_or(dir)
}

/// The `dctk` binary cargo built for this test run.
pub fn dctk_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dctk"))
}

/// A fresh scratch directory under the target dir, removed at drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().join(format!("scratch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A `dctk` command in `dir` whose studies may read the repository's bundled data
/// (`DCTK_DATA_ROOTS` = `<repo>/data`: absolute paths there and `data:corpora/...`).
pub fn dctk_cmd(dir: &Path) -> Command {
    let mut c = Command::new(dctk_bin());
    c.current_dir(dir).env("DCTK_DATA_ROOTS", repo_root().join("data"));
    c
}

/// `dctk <args>` in `dir`, returning its output.
pub fn dctk(dir: &Path, args: &[&str]) -> Output {
    dctk_cmd(dir).args(args).output().expect("running dctk")
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The JSON records of a run's metrics.jsonl.
pub fn metrics(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The cell directories under a runs root (`runs/<id>/`; not `runs/studies/` or `runs/.slurm/`).
pub fn cells(runs: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap() != "studies" && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    dirs.sort();
    dirs
}

/// The single cell directory under a runs root.
pub fn only_run(runs: &Path) -> PathBuf {
    let dirs = cells(runs);
    assert_eq!(dirs.len(), 1, "expected one run in {}: {dirs:?}", runs.display());
    dirs.into_iter().next().unwrap()
}
