//! The analytic Jacobians of the built-in laws agree with central finite
//! differences, in both ln and raw space.

use dctk_laws::law::finite_difference_jacobian;
use dctk_laws::laws::{BiMix, Chinchilla, Kaplan, MixingLaw, Muennighoff, PowerLaw};
use dctk_laws::{Inputs, LawForm};

fn check(law: &dyn LawForm, p: &[f64], inputs: &Inputs) {
    let n = inputs.len();
    let np = p.len();
    let mut pred = vec![0.0; n];
    let mut jac = vec![0.0; n * np];
    law.jacobian_into(p, inputs, &mut pred, &mut jac);
    let mut fd = vec![0.0; n * np];
    finite_difference_jacobian(p, n, &mut fd, |q, out| law.predict_into(q, inputs, out));
    let direct = law.predict(p, inputs);
    for i in 0..n {
        assert!(((pred[i] - direct[i]) / direct[i]).abs() < 1e-12, "{}: prediction {i}", law.name());
    }
    for k in 0..n * np {
        let scale = fd[k].abs().max(1e-8);
        assert!((jac[k] - fd[k]).abs() / scale < 1e-5, "{}: d/d{} at point {}: analytic {} vs fd {}", law.name(), law.params()[k / n].name, k % n, jac[k], fd[k]);
    }
    let mut lp = vec![0.0; n];
    let mut ljac = vec![0.0; n * np];
    law.log_jacobian_into(p, inputs, &mut lp, &mut ljac);
    for k in 0..n * np {
        let i = k % n;
        assert!((ljac[k] - jac[k] / pred[i]).abs() <= 1e-9 * (ljac[k].abs().max(1e-6)), "{}: ln-space column {}", law.name(), k / n);
        assert!((lp[i] - pred[i].ln()).abs() < 1e-12);
    }
}

fn inputs(names: &[&str], cols: Vec<Vec<f64>>) -> Inputs {
    Inputs::new(names.iter().map(|s| s.to_string()).collect(), cols)
}

#[test]
fn builtin_jacobians_match_finite_differences() {
    let nd = inputs(&["N", "D"], vec![vec![1e7, 3e8, 5e9, 7e10], vec![2e9, 5e10, 1e11, 1.4e12]]);
    check(&Chinchilla, &[6.0, 6.5, 0.5, 0.34, 0.28], &nd);
    check(&Kaplan, &[32.1, 31.6, 0.076, 0.095], &nd);
    check(&PowerLaw, &[2.0, 0.6, 3.4], &inputs(&["x"], vec![vec![0.1, 1.0, 7.0, 30.0]]));
    check(&BiMix, &[2.4, 1.6, 0.7, 0.08], &inputs(&["s", "r"], vec![vec![1.0, 5.0, 20.0], vec![0.05, 0.3, 0.6]]));
    check(&MixingLaw::new(2), &[1.8, 1.5, -1.2, 0.7], &inputs(&["r1", "r2"], vec![vec![0.0, 0.3, 0.6], vec![0.5, 0.2, 0.4]]));
}

/// Muennighoff's analytic kernel on both sides of its kinks: U_N = N_opt
/// (excess parameters, R_N > 0) and U_N = N (R_N = 0), repeated data
/// (R_D > 0) and a single epoch (D = U, R_D = 0); untied, with α ≠ β so the
/// exponent columns differ, and tied. Also against the libm scalar law.
#[test]
fn muennighoff_jacobian_covers_both_branches() {
    // N, D, U: (1) N ≫ N_opt, 10 epochs; (2)-(3) README points (N > N_opt);
    // (4) N < N_opt, 4 epochs; (5) N < N_opt, one epoch (R_D = 0);
    // (6) N > N_opt, one epoch.
    let (n, d, u) = (
        vec![3e8, 6.34e9, 8.67e9, 1e8, 3e8, 5e9],
        vec![1e10, 242e9, 178e9, 4e10, 2e10, 1e10],
        vec![1e9, 25e9, 25e9, 1e10, 2e10, 1e10],
    );
    let ndu = inputs(&["N", "D", "U"], vec![n.clone(), d.clone(), u.clone()]);
    let untied = Muennighoff { tie_exponents: false };
    let p: [f64; 7] = [6.1, 7.4, 0.6, 0.34, 0.37, 15.0, 5.3];
    // The design really covers both branches at p: N_opt = (U·G)^{β/α}·G.
    let g = ((p[3] * p[0].exp()) / (p[4] * p[1].exp())).powf(1.0 / (p[3] + p[4]));
    let n_opt: Vec<f64> = u.iter().map(|u| (u * g).powf(p[4] / p[3]) * g).collect();
    let excess: Vec<bool> = n.iter().zip(&n_opt).map(|(n, o)| n > o).collect();
    assert_eq!(excess, [true, true, true, false, false, true], "N_opt {n_opt:?}");
    assert_eq!(d[4], u[4]);
    check(&untied, &p, &ndu);
    check(&untied, &Muennighoff::PUBLISHED, &ndu);
    let tied = Muennighoff { tie_exponents: true };
    check(&tied, &[6.1, 7.4, 0.6, 0.35, 15.0, 5.3], &ndu);
    // The vectorised kernel agrees with the equation written with libm.
    let fast = untied.predict(&p, &ndu);
    for i in 0..n.len() {
        let reference = Muennighoff::log_loss_at(&p, n[i], d[i], u[i]).exp();
        assert!(((fast[i] - reference) / reference).abs() < 1e-13, "point {i}: {} vs {reference}", fast[i]);
    }
}
