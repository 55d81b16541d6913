//! Atomic file writes: the one copy every dctk crate uses.
//!
//! Every result dctk writes (manifests, results, metrics rewrites, plots, shards' indexes)
//! appears whole or not at all, and survives power loss once the call returns:
//!
//! 1. the bytes go to a temporary sibling (same directory, so `rename` is atomic),
//! 2. the file is fsynced, then renamed over the target,
//! 3. the *directory* is fsynced, so the rename itself is on disk (without this step a
//!    power cut after `rename` can leave the old file, or no file, in the directory).
//!
//! On any error the temporary file is removed: a failed write leaves no debris.
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A sibling of `path` with a name unique to this process and moment:
/// `.<name>.tmp-<tag>-<pid>-<nanos>`. Leftovers of a killed process match [`is_temp_name`].
pub fn tmp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    path.with_file_name(format!(".{name}.tmp-{tag}-{}-{nanos}", std::process::id()))
}

/// Whether a file name is one of [`tmp_sibling`]'s temporary names.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Writes `bytes` to `path` atomically and durably (see the module docs). The parent
/// directory must exist (a missing one is an error, not created: a typo in an output path
/// should fail, not make directories). Errors name the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let tmp = tmp_sibling(path, "w");
    let res = (|| {
        let mut f = fs::File::create(&tmp).map_err(|e| named(e, "writing", &tmp))?;
        f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| named(e, "writing", &tmp))?;
        fs::rename(&tmp, path).map_err(|e| named(e, "renaming into place", path))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// fsyncs a directory, so the entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| named(e, "syncing directory", dir))
}

/// Removes the temporary files ([`is_temp_name`]) a killed or failed process left directly
/// in `dir`; returns how many. Safe only where no other live writer uses `dir` (a cell's
/// directory under its lock).
pub fn remove_temp_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for e in entries.flatten() {
        if is_temp_name(&e.file_name().to_string_lossy()) {
            let p = e.path();
            let gone = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            n += usize::from(gone.is_ok());
        }
    }
    n
}

fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn named(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temp_files() {
        let dir = std::env::temp_dir().join(format!("dctk-fs-{}", std::process::id()));
        let p = dir.join("sub/x.txt");
        assert!(write_atomic(&p, b"first").is_err(), "a missing directory is not created");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "second");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1, "no temp files left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_write_names_the_file_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("dctk-fs-fail-{}", std::process::id()));
        fs::create_dir_all(dir.join("target_is_a_dir")).unwrap();
        fs::write(dir.join("target_is_a_dir/keep"), b"x").unwrap();
        let e = write_atomic(&dir.join("target_is_a_dir"), b"y").unwrap_err();
        assert!(e.to_string().contains("target_is_a_dir"), "{e}");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temp_leftovers_are_found_and_removed() {
        let dir = std::env::temp_dir().join(format!("dctk-fs-left-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(tmp_sibling(&dir.join("result.ron"), "w"), b"half").unwrap();
        fs::write(dir.join("result.ron"), b"whole").unwrap();
        assert_eq!(remove_temp_files(&dir), 1);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
