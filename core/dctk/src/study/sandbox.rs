//! Where a study may read and write: its own directory and the data roots the person
//! running it declared. Nothing else.
//!
//! Studies are shared between labs, so a script must not reach `~/.ssh` or overwrite a
//! file it was not given. Every path a script hands to dctk (a corpus, a CSV to fit,
//! a plot directory, an ingest input or output, an imported script) goes through
//! [`Sandbox::resolve`]:
//!
//! - `"data:NAME"` is looked up in the data roots, in order (`--data-root DIR`, repeatable,
//!   then `DCTK_DATA_ROOTS`, `:`-separated). This is how a shared script names data that
//!   lives in a different place on every machine.
//! - a relative path is relative to the study's directory (the script's directory);
//! - an absolute path is allowed only inside the study directory or a data root.
//!
//! Paths are checked after resolving `..` and symlinks (of the longest existing prefix, so
//! outputs that do not exist yet are checked too). The runs directory is dctk's own and
//! is written only by dctk.
use std::path::{Component, Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The study's directory (canonical).
    pub study_dir: PathBuf,
    /// Declared data roots (canonical), in lookup order.
    pub data_roots: Vec<PathBuf>,
}

impl Sandbox {
    /// A sandbox for the study at `script`, with the data roots given on the command
    /// line followed by those in `DCTK_DATA_ROOTS`. Roots that do not exist are errors.
    pub fn new(script: &Path, cli_roots: &[PathBuf]) -> Result<Sandbox, String> {
        let dir = script.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let study_dir = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut roots: Vec<PathBuf> = cli_roots.to_vec();
        if let Some(env) = std::env::var_os("DCTK_DATA_ROOTS") {
            roots.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
        }
        let data_roots = roots
            .iter()
            .map(|r| r.canonicalize().map_err(|e| format!("data root {}: {e}", r.display())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sandbox { study_dir, data_roots })
    }

    /// Resolves a path a script gave for `what` (e.g. `key "corpus"`), or says why not.
    pub fn resolve(&self, path: &str, what: &str) -> Result<PathBuf, String> {
        if let Some(name) = path.strip_prefix("data:") {
            if Path::new(name).is_absolute() || Path::new(name).components().any(|c| c == Component::ParentDir) {
                return Err(format!("{what}: \"{path}\": a data: name is relative to a data root and may not leave it"));
            }
            if self.data_roots.is_empty() {
                return Err(format!(
                    "{what}: \"{path}\" names data in a data root, but none is declared: pass --data-root DIR (or set DCTK_DATA_ROOTS)"
                ));
            }
            for root in &self.data_roots {
                let candidate = root.join(name);
                if candidate.exists() {
                    return self.check(&candidate, path, what);
                }
            }
            return Err(format!(
                "{what}: \"{path}\" is in none of the data roots ({})",
                self.data_roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        let p = Path::new(path);
        let joined = if p.is_absolute() { p.to_path_buf() } else { self.study_dir.join(p) };
        self.check(&joined, path, what)
    }

    fn check(&self, joined: &Path, given: &str, what: &str) -> Result<PathBuf, String> {
        let real = canonical_prefix(joined);
        if real.starts_with(&self.study_dir) || self.data_roots.iter().any(|r| real.starts_with(r)) {
            Ok(real)
        } else {
            Err(format!(
                "{what}: \"{given}\" is outside the study directory ({}) and the data roots{}; \
                 declare its directory with --data-root DIR, or name it as \"data:NAME\"",
                self.study_dir.display(),
                if self.data_roots.is_empty() {
                    " (none declared)".to_string()
                } else {
                    format!(" ({})", self.data_roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", "))
                }
            ))
        }
    }
}

/// The canonical form of the longest existing prefix of `p`, with the rest appended
/// (after removing `.` and resolving `..` lexically in the rest).
fn canonical_prefix(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                match part.to_str() {
                    Some(".") => {}
                    Some("..") => {
                        out.pop();
                    }
                    _ => out.push(part),
                }
            }
            return out;
        }
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => {
                // `..` at the end or nothing exists: keep components as given.
                if let Some(last) = existing.components().next_back() {
                    rest.push(last.as_os_str().to_os_string());
                }
                match existing.parent() {
                    Some(parent) if parent != existing => existing = parent.to_path_buf(),
                    _ => return p.to_path_buf(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (PathBuf, Sandbox) {
        let base = std::env::temp_dir().join(format!("dctk-sandbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("study/sub")).unwrap();
        std::fs::create_dir_all(base.join("data/corpora")).unwrap();
        std::fs::create_dir_all(base.join("secret")).unwrap();
        std::fs::write(base.join("study/s.rhai"), "").unwrap();
        let sb = Sandbox {
            study_dir: base.join("study").canonicalize().unwrap(),
            data_roots: vec![base.join("data").canonicalize().unwrap()],
        };
        (base, sb)
    }

    #[test]
    fn inside_paths_resolve_and_outside_paths_are_refused() {
        let (base, sb) = setup();
        assert_eq!(sb.resolve("sub", "k").unwrap(), base.join("study/sub").canonicalize().unwrap());
        assert_eq!(sb.resolve("plots/new", "k").unwrap(), base.join("study").canonicalize().unwrap().join("plots/new"));
        assert_eq!(sb.resolve("data:corpora", "k").unwrap(), base.join("data/corpora").canonicalize().unwrap());
        assert!(sb.resolve("../data/corpora", "k").is_ok(), "inside a data root by a relative path");
        let e = sb.resolve("../secret", "key \"corpus\"").unwrap_err();
        assert!(e.contains("key \"corpus\": \"../secret\" is outside the study directory"), "{e}");
        assert!(sb.resolve("/etc/passwd", "k").is_err());
        assert!(sb.resolve("sub/../../secret/x", "k").is_err(), "lexical .. in a path that does not exist");
        assert!(sb.resolve("data:../secret", "k").is_err());
        assert!(sb.resolve("data:nope", "k").unwrap_err().contains("in none of the data roots"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn symlinks_out_of_the_study_are_refused() {
        let (base, sb) = setup();
        std::os::unix::fs::symlink(base.join("secret"), base.join("study/link")).unwrap();
        assert!(sb.resolve("link", "k").is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
