//! Scratch directories for these tests, removed at drop (a passing test leaves nothing).
//!
//! Why not the `tempfile` crate: as a dev-dependency it turns on features of shared
//! crates (`bitflags/std`, `getrandom/std`) in test builds only, so `cargo test` after
//! `cargo build` recompiled rhai, dctk-laws, dctk and every crate above them a second time
//! (two copies of each in target/release/deps; several minutes of every CI run).
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system's temporary directory.
pub struct TempDir(PathBuf);

/// A new, empty scratch directory, unique to this process and call.
pub fn tempdir() -> std::io::Result<TempDir> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("dctk-data-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(TempDir(dir))
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
