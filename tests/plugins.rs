//! Plugin system, end to end through the `dctk` binary: listing and describing
//! plugins, the loader's refusals (wrong ABI version, missing symbol) and a panic
//! inside a plugin call all give a clear error while dctk keeps going, and a crate
//! made by `dctk plugin new` builds, passes its test and loads.
//!
//! Needs the workspace built first (`cargo build --release --workspace`): the
//! plugins and fixtures are workspace members.
#[path = "support/mod.rs"]
mod support;
use support::{dctk_bin, dctk_cmd, text, Scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/<profile>/`, where the dctk binary and the plugin libraries are.
fn built_dir() -> PathBuf {
    dctk_bin().parent().unwrap().to_path_buf()
}

fn built(file: &str) -> PathBuf {
    let p = built_dir().join(file);
    assert!(p.exists(), "{} is missing: run `cargo build --release --workspace` first", p.display());
    p
}

/// `dctk <args>` with a private user directory and the given DCTK_PLUGIN_PATH.
fn dctk_with(dir: &Path, plugin_path: Option<&Path>, args: &[&str]) -> Output {
    let mut c = dctk_cmd(dir);
    c.args(args).env("DCTK_HOME", dir.join("home")).env_remove("DCTK_PLUGIN_PATH");
    if let Some(p) = plugin_path {
        c.env("DCTK_PLUGIN_PATH", p);
    }
    c.output().expect("running dctk")
}

#[test]
fn list_shows_mir_zloss_and_builtin_laws() {
    let s = Scratch::new("plugins-list");
    let out = dctk_with(s.path(), None, &["plugins", "list"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for line in ["mir", "zloss"] {
        let row = t.lines().find(|l| l.starts_with(&format!("{line} "))).unwrap_or_else(|| panic!("no {line} row:\n{t}"));
        assert!(row.contains("regularizer") && row.contains(&format!("libdctk_plugin_{line}.so")), "{row}");
    }
    for law in ["chinchilla", "kaplan", "muennighoff", "bimix", "mixing_law", "power_law"] {
        let row = t.lines().find(|l| l.starts_with(&format!("{law} "))).unwrap_or_else(|| panic!("no {law} row:\n{t}"));
        assert!(row.contains("law") && row.contains("built-in"), "{row}");
    }
    assert!(!t.contains("did not load"), "{t}");
}

#[test]
fn info_describes_settings_file_and_hash() {
    let s = Scratch::new("plugins-info");
    let out = dctk_with(s.path(), None, &["plugins", "info", "mir"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("kind         regularizer") && t.contains("Xu, Wu, Cho, Hu, Wang 2026"), "{t}");
    let setting = |k: &str| t.lines().find(|l| l.trim_start().starts_with(k)).unwrap_or_else(|| panic!("no {k}:\n{t}")).to_string();
    assert!(setting("lambda ").contains("float") && setting("lambda ").contains("default 0.4"), "{t}");
    assert!(setting("r_max ").contains("default 0.5"), "{t}");
    assert!(setting("ltr_length ").contains("int") && setting("ltr_length ").contains("default 8"), "{t}");
    let hash = t.lines().find_map(|l| l.strip_prefix("blake3")).unwrap().trim();
    assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{hash}");
    assert!(t.contains(&built("libdctk_plugin_mir.so").canonicalize().unwrap().display().to_string()), "{t}");
    assert!(t.contains("tch 0.24.0") && t.contains("rustc "), "{t}");
    // A built-in law form: equation and parameters.
    let out = dctk_with(s.path(), None, &["plugins", "info", "chinchilla"]);
    let t = text(&out);
    assert!(out.status.success() && t.contains("equation") && t.contains("built-in"), "{t}");
    // Unknown names are an error listing what exists.
    let out = dctk_with(s.path(), None, &["plugins", "info", "nope"]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("no plugin named `nope`") && t.contains("mir"), "{t}");
}

/// Fixture libraries copied under plugin file names into a scratch plugin directory.
fn fixture_dir(s: &Scratch) -> PathBuf {
    let dir = s.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for (from, to) in [
        ("libdctk_fixture_bad_abi.so", "libdctk_plugin_badabi.so"),
        ("libdctk_fixture_no_symbol.so", "libdctk_plugin_nosym.so"),
        ("libdctk_fixture_panicky.so", "libdctk_plugin_panicky.so"),
    ] {
        std::fs::copy(built(from), dir.join(to)).unwrap();
    }
    dir
}

#[test]
fn bad_libraries_are_reported_and_dctk_keeps_going() {
    let s = Scratch::new("plugins-bad");
    let dir = fixture_dir(&s);
    let out = dctk_with(s.path(), Some(&dir), &["plugins", "list"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // Good plugins are still listed, including the well-formed panicky one.
    for name in ["mir ", "zloss ", "panicky "] {
        assert!(t.lines().any(|l| l.starts_with(name)), "{name}:\n{t}");
    }
    let bad = t.lines().find(|l| l.contains("libdctk_plugin_badabi.so:")).unwrap_or_else(|| panic!("{t}"));
    assert!(bad.contains("plugin ABI version 999") && bad.contains("this dctk speaks ABI version 3") && bad.contains("rebuild the plugin"), "{bad}");
    let nosym = t.lines().find(|l| l.contains("libdctk_plugin_nosym.so:")).unwrap_or_else(|| panic!("{t}"));
    assert!(nosym.contains("missing symbol `dctk_plugin_descriptor`"), "{nosym}");

    let out = dctk_with(s.path(), Some(&dir), &["plugins", "info", "badabi"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("plugin `badabi`") && t.contains("ABI version 999"), "{t}");
}

#[test]
fn a_panicking_plugin_is_an_error_and_dctk_keeps_going() {
    let s = Scratch::new("plugins-panic");
    let dir = fixture_dir(&s);
    // panicky first, then mir: the panic is reported and mir is still checked.
    let out = dctk_with(s.path(), Some(&dir), &["plugins", "check", "panicky", "mir", "zloss"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "exit status must be an ordinary failure, not a crash:\n{t}");
    let failed = t.lines().find(|l| l.starts_with("FAILED")).unwrap_or_else(|| panic!("{t}"));
    assert!(failed.contains("regularizer `panicky`") && failed.contains("plugin panicked: fixture panic in aux_loss"), "{failed}");
    assert!(t.lines().any(|l| l.starts_with("ok      mir: regularizer ok (mir/aux_loss=")), "{t}");
    assert!(t.lines().any(|l| l.starts_with("ok      zloss: regularizer ok (zloss/z2=")), "{t}");
    assert!(t.contains("1 plugin check(s) failed"), "{t}");
}

#[test]
fn plugin_names_that_are_paths_are_refused() {
    let s = Scratch::new("plugins-path");
    let lib = built("libdctk_plugin_mir.so").display().to_string();
    for name in [lib.as_str(), "/x/lib.so", "../mir"] {
        let script = s.write(
            "reg.rhai",
            &format!(
                "train(#{{ model: \"micro\", corpus: \"data:corpora\", unique_tokens: 20_000, epochs: 1, seq_len: 128, val_tokens: 1_024, regularizers: [\"{name}\"] }});"
            ),
        );
        let out = dctk_with(s.path(), None, &["plan", script.to_str().unwrap()]);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("key \"regularizers\"") && t.contains(&format!("\"{name}\" is not a plugin name")), "{t}");
        assert!(t.contains("reg.rhai:1:"), "the error is positioned: {t}");
    }
    // The command line may still name a library file: the user declares it.
    let out = dctk_with(s.path(), None, &["plugins", "check", &lib]);
    let t = text(&out);
    assert!(out.status.success() && t.contains("ok      mir: regularizer ok"), "{t}");
}

/// The scaffolds' own build directory, `target/plugin-new-test/`, seeded once per test run
/// from the workspace's `target/<profile>/{deps,build,.fingerprint}`. Why: on a clean clone
/// this directory is empty and the scaffolds compiled tch and torch-sys's C++ wrapper from
/// scratch (measured ~2 min on 2 idle cores, ~5 min under CI's load); the workspace has
/// just compiled the same registry crates with the same profile and LIBTORCH, so cargo finds
/// them fresh and compiles only what differs (crates whose features the workspace unifies
/// differently, the SDK, the plugin): ~30 s. Cargo still checks every fingerprint, so a
/// scaffold that needed anything else would still build it. A real copy, never hard links:
/// cargo rewrites fingerprint files in place, which must not touch the workspace's.
fn scaffold_target() -> PathBuf {
    static SEEDED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SEEDED
        .get_or_init(|| {
            let target = built_dir().parent().unwrap().join("plugin-new-test");
            let profile = target.join(built_dir().file_name().unwrap());
            if !profile.exists() {
                let staging = target.join(".seeding");
                let _ = std::fs::remove_dir_all(&staging);
                std::fs::create_dir_all(&staging).unwrap();
                // `cp -a` keeps the mtimes cargo compares. Of `deps/` only the files: the
                // other tests' scratch directories live there and come and go meanwhile.
                let script = "cp -a build .fingerprint \"$1\"/ && mkdir \"$1\"/deps && find deps -maxdepth 1 -type f -exec cp -a -t \"$1\"/deps {} +";
                let out = Command::new("sh")
                    .args(["-c", script, "seed"])
                    .arg(&staging)
                    .current_dir(built_dir())
                    .output()
                    .expect("running sh");
                assert!(out.status.success(), "seeding {}: {}", staging.display(), text(&out));
                // Renamed into place whole, so an interrupted copy is never taken as a seed.
                std::fs::rename(&staging, &profile).unwrap();
            }
            target
        })
        .clone()
}

fn cargo(dir: &Path, target: &Path, args: &[&str]) {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("running cargo");
    assert!(out.status.success(), "cargo {args:?} in {} failed:\n{}", dir.display(), text(&out));
}

#[test]
fn plugin_new_scaffolds_crates_that_build_test_and_load() {
    let s = Scratch::new("plugin-new");
    // A target dir of its own (kept between runs, so tch is compiled once), so the
    // scaffolded libraries never land in the project's plugin directory.
    let target = scaffold_target();
    for (name, kind, expect) in [
        ("my_reg", "regularizer", "regularizer ok (my_reg/penalty="),
        ("my_aug", "augmenter", "augmenter ok (2 documents in, 2 request(s), 2 out)"),
        ("my_law", "law", "law ok (prediction at the first grid point"),
    ] {
        let crate_dir = s.path().join(name);
        let out = dctk_with(s.path(), None, &["plugin", "new", name, "--kind", kind, "--path", crate_dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        cargo(&crate_dir, &target, &["test", "--release"]);
        cargo(&crate_dir, &target, &["build", "--release"]);
        // Load only this library: a directory holding just its file.
        let lib_dir = s.path().join(format!("{name}-lib"));
        std::fs::create_dir_all(&lib_dir).unwrap();
        std::fs::copy(target.join(format!("release/libdctk_plugin_{name}.so")), lib_dir.join(format!("libdctk_plugin_{name}.so"))).unwrap();
        let out = dctk_with(s.path(), Some(&lib_dir), &["plugins", "info", name]);
        let t = text(&out);
        assert!(out.status.success() && t.contains(&format!("kind         {kind}")), "{t}");
        let out = dctk_with(s.path(), Some(&lib_dir), &["plugins", "check", name]);
        let t = text(&out);
        assert!(out.status.success() && t.contains(expect), "{t}");
    }
    // Refuses to overwrite.
    let out = dctk_with(
        s.path(),
        None,
        &["plugin", "new", "my_reg", "--kind", "regularizer", "--path", s.path().join("my_reg").to_str().unwrap()],
    );
    assert!(!out.status.success() && text(&out).contains("already exists"), "{}", text(&out));
}

/// A scaffold made by an installed dctk (a copy of the binary outside the source tree) builds
/// against the SDK embedded in that binary, into the shared plugin build directory its
/// `.cargo/config.toml` names; installed as the README says (copied into the user plugin
/// directory), the plugin loads and `dctk export` bundles its sources.
#[test]
fn a_scaffold_from_an_installed_dctk_builds_in_the_shared_directory_and_exports_its_sources() {
    let s = Scratch::new("plugin-installed");
    let bin = s.path().join("bin/dctk");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(dctk_bin(), &bin).unwrap();
    // Installed as the README says: the front and the full build side by side.
    std::fs::copy(dctk_bin().with_file_name("dctk-torch"), bin.with_file_name("dctk-torch")).unwrap();
    let home = s.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // The shared build directory, kept warm between test runs (tch compiles once).
    let shared = scaffold_target();
    std::os::unix::fs::symlink(&shared, home.join("plugin-target")).unwrap();
    let installed = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(args)
            .current_dir(s.path())
            .env("DCTK_HOME", &home)
            .env("DCTK_DATA_ROOTS", support::repo_root().join("data"))
            .env_remove("DCTK_PLUGIN_PATH")
            .output()
            .expect("running the installed dctk");
        (out.status.success(), text(&out))
    };
    let crate_dir = s.path().join("inst_reg");
    let (ok, t) = installed(&["plugin", "new", "inst_reg", "--kind", "regularizer", "--path", crate_dir.to_str().unwrap()]);
    assert!(ok, "{t}");
    let target = home.join("plugin-target");
    assert!(t.contains("shared plugin build directory") && t.contains(&target.display().to_string()), "{t}");
    let config = std::fs::read_to_string(crate_dir.join(".cargo/config.toml")).unwrap();
    assert!(config.contains(&format!("target-dir = \"{}\"", target.display())), "{config}");
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    let sdk_root = home.join("sdk");
    // The SDK embedded in the binary, not the source tree's plugins/sdk.
    let tree_sdk = support::repo_root().join("plugins/sdk").display().to_string();
    assert!(manifest.contains(&sdk_root.display().to_string()) && !manifest.contains(&tree_sdk), "{manifest}");

    // cargo picks the target directory from the scaffold's config (no CARGO_TARGET_DIR).
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--offline"])
        .current_dir(&crate_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("running cargo");
    assert!(out.status.success(), "cargo build in {} failed:\n{}", crate_dir.display(), text(&out));
    let lib = target.join("release/libdctk_plugin_inst_reg.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    // Installed as the README says.
    let user = home.join("plugins");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::copy(&lib, user.join("libdctk_plugin_inst_reg.so")).unwrap();
    let (ok, t) = installed(&["plugins", "check", "inst_reg"]);
    assert!(ok && t.contains("ok      inst_reg: regularizer ok"), "{t}");
    // Exported with its sources.
    let study = s.write(
        "s.rhai",
        "train(#{ model: \"micro\", corpus: \"data:corpora\", unique_tokens: 20_000, epochs: 1, seq_len: 128, val_tokens: 1_024, regularizers: [\"inst_reg\"] });",
    );
    let (ok, t) = installed(&["export", study.to_str().unwrap(), "--out", "bundle"]);
    assert!(ok, "{t}");
    let src = s.path().join("bundle/plugins/inst_reg/src/lib.rs");
    assert_eq!(std::fs::read_to_string(&src).unwrap_or_default(), std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap(), "{t}");
}
