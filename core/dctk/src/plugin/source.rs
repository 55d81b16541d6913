//! Where a plugin's sources are: dctk's own directory (`$DCTK_HOME`), the build directory
//! that plugins made by `dctk plugin new` share (`$DCTK_HOME/plugin-target`), and the crate
//! behind a built library, so that `dctk export` can bundle a plugin's sources with a study.
//!
//! A scaffolded plugin builds into the shared directory, where cargo writes beside each
//! library a dep-info file (`lib<name>.d`) naming every source file it was built from. A
//! library installed by copying it out of there (as the README says) is matched back to that
//! build by its blake3, so the sources found are those of the very library that ran.
use std::path::{Path, PathBuf};

/// dctk's directory for user files: `$DCTK_HOME`, else `~/.dctk`.
pub fn dctk_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("DCTK_HOME") {
        return Some(PathBuf::from(h));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".dctk"))
}

/// The build directory shared by plugins made with `dctk plugin new`.
pub fn plugin_target_dir() -> Option<PathBuf> {
    dctk_home().map(|h| h.join("plugin-target"))
}

/// The crate directory of the built plugin library `lib` (`…/lib<name>.so`): found through
/// the dep-info file beside it, or beside a byte-identical build in the shared plugin build
/// directory. `None` when no build of these bytes is known.
pub fn built_crate_dir(lib: &Path) -> Option<PathBuf> {
    let file = lib.file_name()?.to_str()?;
    let stem = Path::new(file).file_stem()?.to_str()?;
    let lib_name = stem.strip_prefix("lib").unwrap_or(stem);
    let mut dirs: Vec<PathBuf> = lib.parent().map(|p| vec![p.to_path_buf()]).unwrap_or_default();
    if let Some(t) = plugin_target_dir() {
        dirs.extend(["release", "debug"].iter().map(|p| t.join(p)));
    }
    let hash = || std::fs::read(lib).ok().map(|b| blake3::hash(&b));
    let mut lib_hash = None;
    for dir in dirs {
        let (built, dep_info) = (dir.join(file), dir.join(format!("{stem}.d")));
        if !dep_info.is_file() || !built.is_file() {
            continue;
        }
        let same_file = built.canonicalize().ok() == lib.canonicalize().ok();
        if !same_file {
            if lib_hash.is_none() {
                lib_hash = Some(hash()?);
            }
            if std::fs::read(&built).ok().map(|b| blake3::hash(&b)) != lib_hash {
                continue;
            }
        }
        let text = std::fs::read_to_string(&dep_info).ok()?;
        if let Some(krate) = crate_of(&text, lib_name) {
            return Some(krate);
        }
    }
    None
}

/// The crate among the sources of a dep-info file (`target: src src …`, spaces in paths
/// escaped as `\ `) whose `Cargo.toml` declares the library `lib_name`.
fn crate_of(dep_info: &str, lib_name: &str) -> Option<PathBuf> {
    let line = dep_info.lines().next()?;
    let (_, deps) = line.split_once(": ")?;
    let mut sources = Vec::new();
    let mut cur = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                cur.push(' ');
                chars.next();
            }
            ' ' => sources.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    sources.push(cur);
    let wanted = format!("name = \"{lib_name}\"");
    sources.iter().filter(|s| s.ends_with(".rs")).find_map(|s| {
        Path::new(s).ancestors().skip(1).find_map(|dir| {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
            manifest.contains(&wanted).then(|| dir.to_path_buf())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_of_a_library_is_read_from_its_dep_info() {
        let root = std::env::temp_dir().join(format!("dctk-plugin-source-{}", std::process::id()));
        let krate = root.join("my plugin");
        std::fs::create_dir_all(krate.join("src")).unwrap();
        std::fs::write(krate.join("Cargo.toml"), "[lib]\nname = \"dctk_plugin_mine\"\n").unwrap();
        std::fs::write(krate.join("src/lib.rs"), "").unwrap();
        let target = root.join("target/release");
        std::fs::create_dir_all(&target).unwrap();
        let lib = target.join("libdctk_plugin_mine.so");
        std::fs::write(&lib, b"library bytes").unwrap();
        let src = krate.join("src/lib.rs").display().to_string().replace(' ', "\\ ");
        std::fs::write(target.join("libdctk_plugin_mine.d"), format!("{}: /sdk/src/abi.rs {src}\n", lib.display())).unwrap();
        assert_eq!(built_crate_dir(&lib), Some(krate.clone()));
        // An installed copy is matched back by its bytes (here: the dep-info is not beside it,
        // and no shared build holds these bytes).
        let installed = root.join("plugins");
        std::fs::create_dir_all(&installed).unwrap();
        std::fs::write(installed.join("libdctk_plugin_mine.so"), b"other bytes").unwrap();
        assert_eq!(built_crate_dir(&installed.join("libdctk_plugin_mine.so")), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
