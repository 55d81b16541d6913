//! The build identity: a hash of the sources that decide a run's numbers, fixed at build
//! time (build.rs includes this file) and part of every cell id (`version.build`), so a
//! change to the trainer, the data path, the model or the optimizer never reuses results
//! of the old code silently. Only `std` and `blake3`: build.rs compiles it too.
use std::io;
use std::path::{Path, PathBuf};

/// The sources (files or directories, relative to the workspace root) whose contents
/// decide numerics: the training loop, step, model, optimizer and schedule
/// (`core/dctk/src/train`), the host data path (`core/dctk/src/corpus`), the sampler,
/// shards and tokenizers (`core/data/src`), the CPU kernel settings (`cpu.rs`), the
/// regularizer and augmenter glue and the plugin ABI they call through, and decoding
/// (`generate/decode.rs`, `generate/sampling.rs`: a generation cell's text) and the built-in
/// augmenters (`generate/augment`: how a cell's documents are made from it). A test checks
/// that every entry exists, so a rename cannot drop a source from the identity.
pub const NUMERICS_SOURCES: &[&str] = &[
    "core/dctk/src/train",
    "core/dctk/src/corpus",
    "core/dctk/src/cpu.rs",
    "core/dctk/src/generate/decode.rs",
    "core/dctk/src/generate/sampling.rs",
    "core/dctk/src/generate/augment",
    "core/data/src",
    "core/dctk/src/plugin/regularizer.rs",
    "core/dctk/src/plugin/augmenter.rs",
    "plugins/sdk/src",
];

/// Every file under `sources` (directories walked), relative to `root`, sorted: the fixed
/// order the identity is computed in. Missing entries are skipped (a layout change
/// shows as a new identity, not a build failure).
pub fn source_files(root: &Path, sources: &[&str]) -> io::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for s in sources {
        let p = root.join(s);
        if p.is_dir() {
            walk(&p, &mut files)?;
        } else if p.is_file() {
            files.push(p);
        }
    }
    let mut rel: Vec<PathBuf> = files.into_iter().map(|f| f.strip_prefix(root).map(Path::to_path_buf).unwrap_or(f)).collect();
    rel.sort();
    rel.dedup();
    Ok(rel)
}

/// The identity: the first 16 hex digits of blake3 over each file's relative path and
/// contents (length-prefixed), in [`source_files`] order.
pub fn build_identity(root: &Path, sources: &[&str]) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update(b"dctk/build/v1\n");
    for rel in source_files(root, sources)? {
        let bytes = std::fs::read(root.join(&rel))?;
        let name = rel.to_string_lossy().replace('\\', "/");
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().to_hex()[..16].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_numerics_source_exists() {
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for s in NUMERICS_SOURCES {
            assert!(real.join(s).exists(), "{s} is listed in NUMERICS_SOURCES but does not exist: update the list");
        }
    }

    #[test]
    fn the_identity_follows_file_contents_and_only_the_listed_files() {
        let root = std::env::temp_dir().join(format!("dctk-build-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for rel in source_files(&real, NUMERICS_SOURCES).unwrap() {
            let dest = root.join(&rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(real.join(&rel), dest).unwrap();
        }
        let before = build_identity(&root, NUMERICS_SOURCES).unwrap();
        assert_eq!(before, build_identity(&real, NUMERICS_SOURCES).unwrap(), "a copy has the same identity");
        assert_eq!(before, env!("DCTK_BUILD_ID"), "this binary's identity is that of its sources");
        // One byte of the optimizer changed: another identity.
        let optim = root.join("core/dctk/src/train/optim.rs");
        let mut bytes = std::fs::read(&optim).unwrap();
        bytes.push(b' ');
        std::fs::write(&optim, &bytes).unwrap();
        let after = build_identity(&root, NUMERICS_SOURCES).unwrap();
        assert_ne!(before, after);
        // A file outside the list (a command) changes nothing.
        std::fs::create_dir_all(root.join("core/dctk/src/cmd")).unwrap();
        std::fs::write(root.join("core/dctk/src/cmd/x.rs"), "// docs").unwrap();
        assert_eq!(after, build_identity(&root, NUMERICS_SOURCES).unwrap());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
