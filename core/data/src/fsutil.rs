//! Atomic file and directory writes. Every result dctk-data writes appears whole or not at all:
//! bytes go to a temporary sibling first (same directory, so `rename` is atomic), then move into
//! place. A crash leaves at most a `.tmp-*` sibling behind, never a half-written output.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_err, DataError, Result};

/// A sibling of `path` with a unique temporary name.
pub(crate) fn tmp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    path.with_file_name(format!(".{name}.tmp-{tag}-{}-{nanos}", std::process::id()))
}

/// Write `bytes` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_sibling(path, "w");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Move a finished temporary directory `tmp` to `out`. An existing `out` is replaced only when
/// `overwrite` is set, and then only after the new directory is complete.
pub(crate) fn publish_dir(tmp: &Path, out: &Path, overwrite: bool) -> Result<()> {
    if out.exists() {
        if !overwrite {
            return Err(DataError::OutputExists {
                path: out.to_path_buf(),
            });
        }
        let old = tmp_sibling(out, "old");
        std::fs::rename(out, &old).map_err(io_err(out))?;
        std::fs::rename(tmp, out).map_err(io_err(out))?;
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    } else {
        std::fs::rename(tmp, out).map_err(io_err(out))?;
    }
    Ok(())
}

/// Removes a temporary directory on drop unless disarmed (so every error path cleans up).
pub(crate) struct TmpDirGuard {
    pub path: PathBuf,
    pub armed: bool,
}

impl Drop for TmpDirGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
