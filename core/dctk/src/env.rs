//! What dctk runs on: versions, libtorch location, devices and threads.
//!
//! `dctk doctor` prints this; every run manifest records it, because the same study
//! must give the same numbers elsewhere and the first question is "on what?".
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::{Cuda, Device};

pub const DCTK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The tch version this binary was built with (from Cargo.lock, by build.rs).
pub const TCH_VERSION: &str = env!("DCTK_TCH_VERSION");
/// The libtorch version found at build time (the torch wheel's `version.py`).
pub const LIBTORCH_BUILD_VERSION: &str = env!("DCTK_LIBTORCH_BUILD_VERSION");
/// The build identity: a hash of the sources that decide numerics (see [`crate::build_id`]).
pub const BUILD_ID: &str = env!("DCTK_BUILD_ID");
/// Whether this binary keeps `libtorch_cuda` linked (`--features cuda`).
pub const CUDA_FEATURE: bool = cfg!(feature = "cuda");

/// `dctk --version`'s long form.
pub fn long_version() -> String {
    format!(
        "{DCTK_VERSION} (build {BUILD_ID}, tch {TCH_VERSION}, libtorch {LIBTORCH_BUILD_VERSION}, cuda build: {})",
        if CUDA_FEATURE { "yes" } else { "no" }
    )
}

/// The versions that decide a run's numbers, recorded in every manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Versions {
    pub dctk: String,
    /// The build identity ([`BUILD_ID`]); empty in manifests of builds before it existed.
    #[serde(default)]
    pub build: String,
    pub tch: String,
    pub libtorch: String,
    pub cuda_build: bool,
}

pub fn versions() -> Versions {
    Versions {
        dctk: DCTK_VERSION.into(),
        build: BUILD_ID.into(),
        tch: TCH_VERSION.into(),
        libtorch: LIBTORCH_BUILD_VERSION.into(),
        cuda_build: CUDA_FEATURE,
    }
}

/// The libtorch shared library this process actually loaded, read from
/// `/proc/self/maps` (the loader may have found another copy than the build's).
pub fn loaded_libtorch() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .map(PathBuf::from)
}

/// The version of the libtorch that was loaded, from the `version.py` next to its
/// `lib/` directory when it comes from a torch wheel.
pub fn loaded_libtorch_version() -> Option<String> {
    let lib = loaded_libtorch()?;
    let text = std::fs::read_to_string(lib.parent()?.parent()?.join("version.py")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
}

/// Resolves a device setting: `auto` takes CUDA when available, else the CPU.
pub fn resolve_device(setting: &str) -> Result<Device, String> {
    match setting {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        s => {
            let index = match s {
                "cuda" => 0,
                _ => s.strip_prefix("cuda:").and_then(|n| n.parse().ok()).ok_or_else(|| {
                    format!("device \"{s}\" is not one of auto, cpu, cuda, cuda:N")
                })?,
            };
            if !Cuda::is_available() {
                return Err(format!(
                    "device \"{s}\" requested but CUDA is not available{}; see `dctk doctor`",
                    if CUDA_FEATURE { "" } else { " (this binary was built without --features cuda)" }
                ));
            }
            if index as i64 >= Cuda::device_count() {
                return Err(format!("device \"{s}\": only {} CUDA device(s)", Cuda::device_count()));
            }
            Ok(Device::Cuda(index))
        }
    }
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// GPU names from `nvidia-smi` (tch does not expose device properties).
pub fn gpu_names() -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).collect())
        .unwrap_or_default()
}

/// The `dctk` a user runs: the front binary beside this one (`dctk-torch` is started by it),
/// or this binary if there is none. Benchmarks of whole commands time this one.
pub fn user_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let front = exe.with_file_name("dctk");
    Ok(if front.exists() { front } else { exe })
}

/// The error of a path in the libtorch-free build (dctk-lite) that needs libtorch after all:
/// a tensor to compute. The `dctk` front sees it before anything was written and runs the
/// whole command again in `dctk-torch`.
#[derive(Debug)]
pub struct NeedsTorch(pub String);

impl std::fmt::Display for NeedsTorch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} needs libtorch (the libtorch-free build cannot do it; `dctk-torch` can)", self.0)
    }
}

impl std::error::Error for NeedsTorch {}

/// [`NeedsTorch`] as an error.
pub fn needs_torch(what: &str) -> anyhow::Error {
    anyhow::Error::new(NeedsTorch(what.to_string()))
}

/// True when `e` or an error in its chain is [`NeedsTorch`].
pub fn is_needs_torch(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<NeedsTorch>())
}

/// Keeps freed memory in the process heap instead of returning it to the OS, so a
/// training step reuses the pages of the step before instead of faulting in fresh ones.
///
/// Two settings, both needed. `M_MMAP_MAX = 0`: glibc serves blocks above its mmap
/// threshold (at most 32 MB) with `mmap` and unmaps them on free, so every large buffer
/// would be page-faulted in again each step. `M_TRIM_THRESHOLD = −1`: `mallopt` takes an
/// `int` but glibc stores it as a `size_t`, so −1 is SIZE_MAX, trimming really off.
/// (`i32::MAX`, used before, capped trimming at 2 GiB; at seq 256 a step then freed
/// ~3.3 GB of logits-sized buffers, so glibc trimmed and re-faulted them every step:
/// 6.94 M minor faults per 10 steps against 1.34 M with trimming off.) Since the LM head's
/// loss is chunked ([`crate::train::head`]) a step frees far less, but the setting no
/// longer depends on that. `dctk bench train` counts minor faults per step to check it.
/// The cost: the heap keeps what it grew to. `DCTK_MALLOC_TUNING=0` keeps glibc's
/// defaults. [`GLIBC_TUNABLES`] is the same setting for another process (the benchmark's
/// allocator-tuned PyTorch reference).
pub fn tune_allocator() {
    if std::env::var("DCTK_MALLOC_TUNING").is_ok_and(|v| v == "0") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}

/// [`tune_allocator`]'s setting as glibc tunables, for processes dctk starts that are not
/// dctk (trim threshold SIZE_MAX: trimming off).
pub const GLIBC_TUNABLES: &str = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=18446744073709551615";

/// A flag set by SIGINT or SIGTERM, for `dctk run` and `dctk cell exec`: the first signal
/// sets it (running cells checkpoint and stop), a second one exits at once (status 130).
pub fn cancel_on_signals() -> std::io::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(sig, 130, cancel.clone())?;
        signal_hook::flag::register(sig, cancel.clone())?;
    }
    Ok(cancel)
}
