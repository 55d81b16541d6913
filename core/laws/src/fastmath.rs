//! Branch-free `exp` and `ln` for the fitter's hot loops.
//!
//! Why: a Chinchilla grid fit evaluates ~10^8 (point, parameter-vector)
//! pairs, each two `exp` and one `ln`. libm calls are opaque to the
//! compiler, so those loops ran one point at a time; these versions are
//! straight-line arithmetic and bit operations that LLVM vectorises. They
//! are accurate to about 1 ulp (tested against std below), so fits agree
//! with libm-based ones to ~1e-15 relative. Their polynomials use
//! `f64::mul_add` (exactly rounded everywhere, so results do not depend on
//! the instruction set; see [`crate::simd`]).
//!
//! Domain notes: `exp` clamps its argument to [−708, 709] (results stay
//! finite and normal; a fit at such extremes has a huge objective and the
//! line search backs off anyway). `ln` returns NaN for subnormal, zero,
//! negative or NaN input and +∞ for +∞, which the fitter treats as "outside
//! the domain".

// The polynomial and ln 2 split constants are fdlibm's, written as
// published (they round to the intended doubles).
#![allow(clippy::excessive_precision)]

const SHIFT: f64 = 6755399441055744.0; // 1.5·2^52: adding it rounds to an integer in the low mantissa bits.
const LN2_HI: f64 = 6.93147180369123816490e-01;
const LN2_LO: f64 = 1.90821492927058770002e-10;

/// e^x (see module docs for the domain).
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    let x = x.clamp(-708.0, 709.0);
    let t = x * LOG2E + SHIFT;
    let kf = t - SHIFT;
    let k = (t.to_bits() as i64).wrapping_sub(SHIFT.to_bits() as i64);
    let r = x - kf * LN2_HI - kf * LN2_LO; // |r| ≤ ln2/2
    // Taylor series of e^r to degree 13 (truncation < 5e-18 on |r| ≤ 0.347),
    // by Horner's rule with fused multiply-adds: half the operations of
    // separate multiplies and adds and one rounding per step (measured: 1.37
    // → 0.85 ns per point on the AVX-512 path; see crate::simd for why the
    // FMA keeps every path bit-identical).
    const C: [f64; 14] = [1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
    let mut p = C[0];
    for &c in &C[1..] {
        p = p.mul_add(r, c);
    }
    let scale = f64::from_bits((k.wrapping_add(1023) as u64) << 52);
    p * scale
}

/// ln x for positive normal x (see module docs), fdlibm's algorithm:
/// x = 2^k·(1+f) with 1+f in [√2/2, √2), ln(1+f) from s = f/(2+f).
#[inline(always)]
pub fn ln(x: f64) -> f64 {
    const LG1: f64 = 6.666666666666735130e-01;
    const LG2: f64 = 3.999999999940941908e-01;
    const LG3: f64 = 2.857142874366239149e-01;
    const LG4: f64 = 2.222219843214978396e-01;
    const LG5: f64 = 1.818357216161805012e-01;
    const LG6: f64 = 1.531383769920937332e-01;
    const LG7: f64 = 1.479819860511658591e-01;
    let bits = x.to_bits().wrapping_add((0x3ff00000u64 - 0x3fe6a09eu64) << 32);
    let k = ((bits >> 52) as i64) - 0x3ff;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff).wrapping_add(0x3fe6a09eu64 << 32));
    let kf = f64::from_bits(0x4338_0000_0000_0000u64.wrapping_add(k as u64)) - SHIFT;
    let f = m - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * w.mul_add(w.mul_add(LG6, LG4), LG2);
    let t2 = z * w.mul_add(w.mul_add(w.mul_add(LG7, LG5), LG3), LG1);
    let r = t2 + t1;
    let v = s * (hfsq + r) + kf * LN2_LO - hfsq + f + kf * LN2_HI;
    let ok = (f64::MIN_POSITIVE..f64::INFINITY).contains(&x);
    if ok {
        v
    } else if x == f64::INFINITY {
        x
    } else {
        f64::NAN
    }
}

/// Σ a_i·b_i with four independent accumulators: a single running sum is a
/// serial dependency chain the compiler may not reorder, four let it use
/// SIMD lanes.
#[inline(always)]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let n4 = n / 4 * 4;
    let mut acc = [0.0f64; 4];
    for (ca, cb) in a[..n4].chunks_exact(4).zip(b[..n4].chunks_exact(4)) {
        for k in 0..4 {
            acc[k] += ca[k] * cb[k];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in n4..n {
        s += a[i] * b[i];
    }
    s
}

/// Huber loss of the scaled residuals z_i = (pred_i − target_i)·inv_s:
/// returns (Σ ρ_δ(z_i), Σ ψ(z_i)·z_i) and writes ψ(z_i)·inv_s into `psi`.
#[inline(always)]
pub fn huber_terms(pred: &[f64], target: &[f64], inv_s: f64, delta: f64, psi: &mut [f64]) -> (f64, f64) {
    let n = pred.len().min(target.len()).min(psi.len());
    let mut f = [0.0f64; 4];
    let mut g = [0.0f64; 4];
    let one = |i: usize, psi: &mut [f64]| -> (f64, f64) {
        let z = (pred[i] - target[i]) * inv_s;
        let a = z.abs();
        let quad = a <= delta;
        let rho = if quad { 0.5 * z * z } else { delta * (a - 0.5 * delta) };
        let p = if quad { z } else { delta.copysign(z) };
        psi[i] = p * inv_s;
        (rho, p * z)
    };
    let n4 = n / 4 * 4;
    let mut i = 0;
    while i < n4 {
        for k in 0..4 {
            let (r, pz) = one(i + k, psi);
            f[k] += r;
            g[k] += pz;
        }
        i += 4;
    }
    let (mut fs, mut gs) = ((f[0] + f[1]) + (f[2] + f[3]), (g[0] + g[1]) + (g[2] + g[3]));
    for j in n4..n {
        let (r, pz) = one(j, psi);
        fs += r;
        gs += pz;
    }
    (fs, gs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs() / f64::EPSILON
    }

    #[test]
    fn exp_matches_std() {
        let mut worst: f64 = 0.0;
        let mut x = -700.0;
        while x < 700.0 {
            worst = worst.max(ulps(exp(x), x.exp()));
            x += 0.0137;
        }
        for x in [-1e-300, 0.0, 1e-20, -0.34657, 0.34657, 1.0, -1.0, 20.5] {
            worst = worst.max(ulps(exp(x), x.exp()));
        }
        assert!(worst < 2.0, "exp worst error {worst} ulp");
        assert!(exp(f64::NAN).is_nan());
        assert!(exp(1e4).is_finite() && exp(-1e4) > 0.0);
    }

    #[test]
    fn ln_matches_std() {
        let mut worst: f64 = 0.0;
        let mut e = -300.0;
        while e < 300.0 {
            let x = 10f64.powf(e);
            let want = x.ln();
            let err = if want.abs() < 1e-3 { (ln(x) - want).abs() / f64::EPSILON } else { ulps(ln(x), want) };
            worst = worst.max(err);
            e += 0.00731;
        }
        for x in [1.0, 2.0, 0.5, std::f64::consts::SQRT_2, std::f64::consts::FRAC_1_SQRT_2, 1.0000001, 0.9999999, f64::MIN_POSITIVE, f64::MAX] {
            worst = worst.max((ln(x) - x.ln()).abs() / (f64::EPSILON * x.ln().abs().max(1.0)));
        }
        assert!(worst < 2.0, "ln worst error {worst} ulp");
        assert!(ln(0.0).is_nan() && ln(-1.0).is_nan() && ln(f64::NAN).is_nan());
        assert_eq!(ln(f64::INFINITY), f64::INFINITY);
    }
}
