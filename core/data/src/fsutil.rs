//! Atomic file and directory writes. Every result dctk-data writes appears whole or not at all:
//! bytes go to a temporary sibling first (same directory, so `rename` is atomic), then move into
//! place. A crash leaves at most a `.tmp-*` sibling behind, never a half-written output.

use std::path::{Path, PathBuf};

use crate::error::{io_err, DataError, Result};

pub(crate) use dctk_fs::tmp_sibling;

/// Write `bytes` to `path` atomically and durably ([`dctk_fs::write_atomic`]), as a data error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    dctk_fs::write_atomic(path, bytes).map_err(io_err(path))
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
