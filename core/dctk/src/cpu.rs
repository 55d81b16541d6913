//! The CPU a cell computes on, and how far its floating-point results are pinned.
//!
//! On the CPU, libtorch chooses kernels at run time by instruction set: ATen's vectorised
//! kernels (softmax, norms, element-wise ops, reductions) use the widest SIMD the CPU has
//! (AVX-512 or AVX2), oneMKL's GEMM takes a branch by vendor and ISA, oneDNN JIT-compiles for
//! the ISA it finds. Each choice is exact, but they sum in different orders, so the same cell
//! (same id, same threads) on an AVX-512 Xeon and on an AVX2 EPYC drifts apart in the 5th
//! significant digit after a hundred steps. Nothing is wrong on either machine; the bits are
//! just not the same.
//!
//! `numerics: "portable"` (a `train` key, part of the cell id) pins all three to a common
//! denominator that every x86-64 CPU with AVX2 and FMA computes identically:
//!
//! | library | setting | effect |
//! |---|---|---|
//! | ATen | `ATEN_CPU_CAPABILITY=avx2` | the AVX2 build of every vectorised kernel, never AVX-512 |
//! | oneMKL | `MKL_CBWR=COMPATIBLE` | conditional numerical reproducibility, vendor-independent branch (the AVX2 branch is Intel-only) |
//! | oneDNN | `ONEDNN_MAX_CPU_ISA=AVX2` | JIT kernels for AVX2 at most |
//!
//! Like every CNR guarantee it needs the same number of threads on both machines (the
//! manifest records it). The settings are read by each library once, at its first use, so
//! [`apply`] must run before the cell's first tensor operation; `dctk cell exec` applies
//! them right after reading the manifest. The cost is measured in the README (oneMKL's
//! compatible branch gives up its AVX-512/AMX GEMM kernels).
//!
//! Every manifest records a [`CpuRecord`] (vendor, model, the SIMD extensions present, the
//! numerics mode and the settings in force), so a difference between two machines can be
//! explained from the files alone.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a cell's CPU kernels are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Numerics {
    /// The fastest kernels for this CPU (libtorch's default): bit-identical reruns on
    /// machines with the same CPU model, not across models.
    #[default]
    Native,
    /// Kernels pinned to AVX2 and oneMKL's compatible branch (see the module docs):
    /// bit-identical reruns on any x86-64 CPU with AVX2 and FMA, at the same threads.
    Portable,
}

impl Numerics {
    pub fn as_str(self) -> &'static str {
        match self {
            Numerics::Native => "native",
            Numerics::Portable => "portable",
        }
    }
}

/// The environment settings of portable numerics, in the order they are applied.
pub const PORTABLE_SETTINGS: &[(&str, &str)] =
    &[("ATEN_CPU_CAPABILITY", "avx2"), ("MKL_CBWR", "COMPATIBLE"), ("ONEDNN_MAX_CPU_ISA", "AVX2")];

/// Variables that change which CPU kernels run (recorded whatever the mode).
const KERNEL_VARIABLES: &[&str] =
    &["ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE"];

/// The instruction-set extensions that decide kernel choice, as `/proc/cpuinfo` names them.
const SIMD_FLAGS: &[&str] = &[
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16", "avx512_vnni",
    "amx_bf16", "amx_tile", "amx_int8", "neon", "asimd", "sve",
];

/// What CPU a cell ran on and which kernel settings were in force (in every manifest).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuRecord {
    pub arch: String,
    pub vendor: String,
    pub model: String,
    /// The SIMD extensions of [`SIMD_FLAGS`] this CPU has.
    pub simd: Vec<String>,
    pub numerics: Numerics,
    /// The kernel-choice variables set in this process (after [`apply`]).
    pub settings: BTreeMap<String, String>,
}

/// Whether `mode` can run on this machine, as [`apply`] would find it (used at planning,
/// so `dctk plan` refuses what the cell process could not do).
pub fn check(mode: Numerics) -> Result<(), String> {
    if mode == Numerics::Native {
        return Ok(());
    }
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!("numerics \"portable\" pins x86-64 kernels; this machine is {}", std::env::consts::ARCH));
    }
    let simd = cpu_flags();
    for need in ["avx2", "fma"] {
        if !simd.iter().any(|f| f == need) {
            return Err(format!("numerics \"portable\" needs a CPU with {need}; this one ({}) has none", cpu_field("model name")));
        }
    }
    for (name, value) in PORTABLE_SETTINGS {
        if let Ok(v) = std::env::var(name) {
            if !v.eq_ignore_ascii_case(value) {
                return Err(format!("numerics \"portable\" sets {name}={value}, but the environment has {name}={v}: unset it"));
            }
        }
    }
    Ok(())
}

/// Sets the environment for `mode` in this process. Must run before the first tensor
/// operation (each library reads its setting once). Portable mode refuses a CPU without
/// AVX2/FMA, and a variable already set to another value (the user's environment would
/// silently win or lose), naming it.
pub fn apply(mode: Numerics) -> Result<(), String> {
    check(mode)?;
    if mode == Numerics::Native {
        return Ok(());
    }
    for (name, value) in PORTABLE_SETTINGS {
        if std::env::var_os(name).is_none() {
            // Before any libtorch work in this process (the cell process applies it right
            // after reading its manifest), so no other thread reads the environment.
            std::env::set_var(name, value);
        }
    }
    Ok(())
}

/// This CPU and the kernel settings now in force.
pub fn record(mode: Numerics) -> CpuRecord {
    let flags = cpu_flags();
    CpuRecord {
        arch: std::env::consts::ARCH.to_string(),
        vendor: cpu_field("vendor_id"),
        model: cpu_field("model name"),
        simd: SIMD_FLAGS.iter().filter(|f| flags.iter().any(|g| g == *f)).map(|f| f.to_string()).collect(),
        numerics: mode,
        settings: KERNEL_VARIABLES.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect(),
    }
}

fn cpuinfo() -> String {
    std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()
}

/// The first value of `field` in `/proc/cpuinfo` ("unknown" when absent).
fn cpu_field(field: &str) -> String {
    cpuinfo()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == field).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The feature flags of the first CPU (`flags` on x86, `Features` on ARM).
fn cpu_flags() -> Vec<String> {
    let text = cpuinfo();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "flags" | "Features").then(|| v.split_whitespace().map(str::to_string).collect())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_by_name() {
        for m in [Numerics::Native, Numerics::Portable] {
            let v = serde_json::to_value(m).unwrap();
            assert_eq!(v, serde_json::json!(m.as_str()));
            assert_eq!(serde_json::from_value::<Numerics>(v).unwrap(), m);
        }
        assert!(serde_json::from_value::<Numerics>(serde_json::json!("fast")).is_err());
    }

    #[test]
    fn record_names_this_cpu() {
        let r = record(Numerics::Native);
        assert_eq!(r.arch, std::env::consts::ARCH);
        if std::path::Path::new("/proc/cpuinfo").exists() && r.arch == "x86_64" {
            assert_ne!(r.model, "unknown");
            assert!(r.simd.iter().any(|f| f == "sse4_2" || f == "avx2"), "{r:?}");
        }
    }
}
