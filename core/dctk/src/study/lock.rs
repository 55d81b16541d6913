//! Cell locks: two `dctk run` of the same study (or two tasks of a job array) never run
//! the same cell twice.
//!
//! A lock is an exclusive `flock` on `runs/<id>/lock`, held by the process that trains the
//! cell. The kernel releases it when that process exits for any reason (SIGKILL included),
//! so a lock is never stale: a cell whose status says `running` but whose lock is free was
//! interrupted and resumes. The file also holds the holder's pid and host for messages.
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result};

pub struct CellLock {
    file: File,
}

impl CellLock {
    /// Takes the lock of the cell in `dir`, or `None` if another process holds it.
    pub fn acquire(dir: &Path) -> Result<Option<CellLock>> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "pid {} on {}", std::process::id(), host.trim())?;
        file.flush()?;
        Ok(Some(CellLock { file }))
    }

    /// Who holds the lock of the cell in `dir` (`pid N on HOST`), if anyone does.
    pub fn holder(dir: &Path) -> Option<String> {
        let path = dir.join("lock");
        let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(_) => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                Some(if s.is_empty() { "another process".into() } else { s })
            }
        }
    }
}

impl Drop for CellLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_seen_and_released_on_drop() {
        let dir = std::env::temp_dir().join(format!("dctk-lock-{}", std::process::id()));
        let lock = CellLock::acquire(&dir).unwrap().expect("free");
        assert!(CellLock::acquire(&dir).unwrap().is_none(), "flock excludes a second open file description");
        assert!(CellLock::holder(&dir).unwrap().starts_with(&format!("pid {}", std::process::id())));
        drop(lock);
        assert!(CellLock::holder(&dir).is_none());
        assert!(CellLock::acquire(&dir).unwrap().is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}
