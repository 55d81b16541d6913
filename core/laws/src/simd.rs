//! Runtime instruction-set dispatch for the fitter's per-point loops: one
//! trampoline that compiles a kernel for AVX-512, AVX2 and the baseline
//! target and picks the best the CPU has, so a law gets vector code without
//! writing `#[target_feature]` functions of its own.
//!
//! Why: the default x86-64 target assumes only SSE2 (2 f64 lanes); the
//! per-point Jacobian loops of the built-in laws are most of a grid fit's
//! time, and compiled for AVX-512 (8 lanes) they cut a Chinchilla grid fit's
//! CPU time from 1.51 s to 1.15 s on the 2-core EPYC dev machine.
//!
//! How: [`dispatch`] calls its closure inside a `#[target_feature]` function
//! generic over the closure. The closure and everything it calls that is
//! `#[inline(always)]` (the kernel, [`crate::fastmath`]'s `exp`/`ln`) are
//! inlined into that function and so compiled with its features; a kernel
//! must be branch-free straight-line arithmetic over slices for LLVM to
//! vectorise it. Results do not depend on the path taken: Rust never
//! contracts `a * b + c` into an FMA by itself, and where [`crate::fastmath`]
//! asks for one (`f64::mul_add`, in its polynomials) every path computes the
//! same exactly rounded fused multiply-add — an instruction on the AVX2/AVX-512
//! paths (both require FMA, which every AVX2 CPU since 2013 has), a slow but
//! bit-identical libm call on the baseline. The reductions' order is fixed
//! by the kernels themselves (see [`crate::lanes`]).
//!
//! A law author writes the per-point loop as an `#[inline(always)]` fn and
//! calls it through an `#[inline(always)]` closure. Both attributes matter:
//! without them LLVM keeps the closure (called from three paths) out of line,
//! compiled for the baseline only, and nothing is vectorised wider than SSE2
//! (measured: the Muennighoff kernel had no AVX-512 instruction until the
//! closure was marked). Rust accepts the attribute on a closure passed as an
//! argument:
//!
//! ```no_run
//! use dctk_laws::{fastmath as fm, simd};
//! #[inline(always)]
//! fn kernel(ln_x: &[f64], a: f64, out: &mut [f64]) {
//!     for (o, &v) in out.iter_mut().zip(ln_x) {
//!         *o = fm::exp(a * v);
//!     }
//! }
//! let (ln_x, mut out) = (vec![0.0, 1.0, 2.0], vec![0.0; 3]);
//! simd::dispatch(#[inline(always)] || kernel(&ln_x, 0.5, &mut out));
//! ```

/// Run `kernel` compiled for the widest vector unit the CPU has (AVX-512F
/// with FMA, else AVX2 with FMA, else the baseline target). Detection is
/// cached by std, so the check costs a load and a branch per call.
#[inline(always)]
pub fn dispatch<R>(kernel: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX-512F and FMA (checked just above).
            return unsafe { with_avx512(kernel) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { with_avx2(kernel) };
        }
    }
    kernel()
}

/// The first `K` columns (each `n` long) of a column-major Jacobian, as
/// separate slices of exactly `n`, so a kernel's per-column stores need no
/// bounds checks and its loop can vectorise. Panics if `jac` is shorter
/// than `K·n` (the fitter always passes `n_points × n_params`).
#[inline(always)]
pub fn columns<const K: usize>(jac: &mut [f64], n: usize) -> [&mut [f64]; K] {
    let mut rest = &mut jac[..K * n];
    std::array::from_fn(|_| {
        let (col, tail) = std::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        col
    })
}

/// The instruction set [`dispatch`] uses on this CPU, for benchmark reports.
pub fn level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
            return "avx512f+fma";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "avx2+fma";
        }
    }
    "baseline"
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn with_avx2<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[inline]
unsafe fn with_avx512<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}

#[cfg(test)]
mod tests {
    #[test]
    fn dispatch_runs_the_kernel_and_returns_its_value() {
        let x: Vec<f64> = (0..37).map(|i| i as f64 * 0.1).collect();
        let mut y = vec![0.0; x.len()];
        #[inline(always)]
        fn kernel(x: &[f64], y: &mut [f64]) -> f64 {
            for (o, &v) in y.iter_mut().zip(x) {
                *o = crate::fastmath::exp(v);
            }
            y.iter().sum::<f64>()
        }
        let s = super::dispatch(#[inline(always)] || kernel(&x, &mut y));
        let want: f64 = x.iter().map(|v| v.exp()).sum();
        assert!((s - want).abs() < 1e-12 * want, "{s} vs {want}");
        assert!(["avx512f+fma", "avx2+fma", "baseline"].contains(&super::level()));
    }
}
