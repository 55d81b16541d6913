//! The `dctk` binary: a front that starts in milliseconds.
//!
//! libtorch registers its operators when its shared library is loaded (~0.2–0.55 s, before
//! `main`), so a binary linked to it can never start fast. This one is not: it is built from
//! `dctk-lite` (dctk's library from the same sources, without libtorch; core/lite) and runs
//! the commands that need no tensors in-process ([`dctk_lite::cmd::LITE_COMMANDS`]: `plan`,
//! `report`, `status`, `data`, `fit`, `gc`, and `--version`). Everything else — and a lite
//! command on a machine with an NVIDIA driver (where "is CUDA available" needs libtorch to
//! answer), or one that turns out to need a tensor (`env::NeedsTorch`, raised before it writes
//! anything) — is handed whole to `dctk-torch`, the full build installed beside this binary,
//! by `exec`: same arguments, same environment, same process id, so signals, exit codes and
//! output are the full build's own. `DCTK_FRONT=torch` always hands over, and so does a front
//! built with `--features cuda` (its versions say so; the lite build's cannot).
//!
//! `DCTK_REPORT_LIBTORCH=1` makes a command run here say on stderr, at its end, whether
//! libtorch was mapped into the process (from `/proc/self/maps`): how the tests check that
//! `dctk fit` never loads it.
use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let lite_command = matches!(first, "--version" | "-V") || dctk_lite::cmd::LITE_COMMANDS.contains(&first);
    // A CUDA build (`--features cuda`) hands everything over: its versions record `cuda build:
    // yes`, which the lite build (no such feature) cannot say, and they enter cell ids.
    if !lite_command || cfg!(feature = "cuda") || std::env::var("DCTK_FRONT").is_ok_and(|v| v == "torch") || nvidia_driver_present() {
        return hand_over(&args);
    }
    dctk_lite::env::tune_allocator();
    let cli = dctk_lite::cmd::app();
    let matches = cli.get_matches_from(&args);
    let (name, sub) = matches.subcommand().expect("a subcommand is required");
    let outcome = dctk_lite::cmd::exec(name, sub);
    if std::env::var("DCTK_REPORT_LIBTORCH").is_ok_and(|v| v == "1") {
        eprintln!("libtorch mapped: {}", if libtorch_mapped() { "yes" } else { "no" });
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if dctk_lite::env::is_needs_torch(&e) => hand_over(&args),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `exec`s `dctk-torch` (beside this binary) with the same arguments; returns only if that
/// fails, with an error naming the file.
fn hand_over(args: &[OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let full = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("dctk-torch"),
        Err(e) => {
            eprintln!("error: locating this binary (to run dctk-torch beside it): {e}");
            return ExitCode::FAILURE;
        }
    };
    // argv[0] stays what the user typed, so usage and errors say `dctk`.
    let err = std::process::Command::new(&full).arg0(&args[0]).args(&args[1..]).exec();
    eprintln!(
        "error: running {}: {err} (dctk-torch, the full build, belongs beside `dctk`; `cargo build --release` builds both)",
        full.display()
    );
    ExitCode::FAILURE
}

/// An NVIDIA driver is loaded (its control device exists): only libtorch can then say
/// whether CUDA is usable, so the lite build does not guess.
fn nvidia_driver_present() -> bool {
    std::path::Path::new("/dev/nvidiactl").exists()
}

fn libtorch_mapped() -> bool {
    std::fs::read_to_string("/proc/self/maps").is_ok_and(|m| m.lines().any(|l| l.contains("libtorch") || l.contains("libc10")))
}
