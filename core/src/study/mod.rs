//! Runs on disk: ids, directories, status files and atomic writes.
//!
//! This is the seam for content-addressed study cells: today a run's id is a hash of
//! its resolved spec, its data fingerprint and dctk's version; the cells issue adds
//! plugin hashes and libtorch/CUDA versions and a planner on top. Layout of one run:
//!
//! ```text
//! runs/<name>-<id>/
//!   manifest.ron    the resolved spec, data manifest, versions: all it takes to rerun
//!   status          running | done | failed | diverged
//!   metrics.jsonl   one JSON object per logged train step or evaluation
//!   ckpt/           latest checkpoint (model.safetensors, optim.safetensors, state.ron)
//!   result.ron      the run's results, written last
//! ```
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

pub mod cell;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory,
/// fsynced, then renamed over the target. Readers see the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let mut f = fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Pretty RON, the format of manifests and results (readable, diffable, serde).
pub fn to_ron<T: Serialize>(value: &T) -> Result<String> {
    Ok(ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default().struct_names(true))?)
}

pub fn write_ron_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, to_ron(value)?.as_bytes())
}

/// A short content id: the first 16 hex digits of blake3 over the given parts.
pub fn content_id(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex()[..16].to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Done,
    Failed,
    Diverged,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Diverged => "diverged",
        }
    }

    pub fn read(run_dir: &Path) -> Option<Status> {
        match fs::read_to_string(run_dir.join("status")).ok()?.trim() {
            "running" => Some(Status::Running),
            "done" => Some(Status::Done),
            "failed" => Some(Status::Failed),
            "diverged" => Some(Status::Diverged),
            _ => None,
        }
    }

    pub fn write(self, run_dir: &Path) -> Result<()> {
        write_atomic(&run_dir.join("status"), format!("{}\n", self.as_str()).as_bytes())
    }
}

/// `runs/<name>-<id>`, with the name made filesystem-safe.
pub fn run_dir(runs_root: &Path, name: Option<&str>, id: &str) -> PathBuf {
    let name: String = name
        .unwrap_or("run")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    runs_root.join(format!("{name}-{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = std::env::temp_dir().join(format!("dctk-atomic-{}", std::process::id()));
        let p = dir.join("x.txt");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "second");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp files left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ids_depend_on_every_part_and_boundaries() {
        assert_ne!(content_id(&[b"ab", b"c"]), content_id(&[b"a", b"bc"]));
        assert_eq!(content_id(&[b"x"]), content_id(&[b"x"]));
        assert_eq!(run_dir(Path::new("runs"), Some("my run/1"), "abc"), PathBuf::from("runs/my_run_1-abc"));
    }
}
