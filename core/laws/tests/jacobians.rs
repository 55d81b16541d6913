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
    let ndu = inputs(&["N", "D", "U"], vec![vec![1e8, 6.34e9, 8.67e9], vec![1e10, 242e9, 178e9], vec![1e9, 25e9, 25e9]]);
    check(&Muennighoff { tie_exponents: false }, &Muennighoff::PUBLISHED, &ndu);
    check(&PowerLaw, &[2.0, 0.6, 3.4], &inputs(&["x"], vec![vec![0.1, 1.0, 7.0, 30.0]]));
    check(&BiMix, &[2.4, 1.6, 0.7, 0.08], &inputs(&["s", "r"], vec![vec![1.0, 5.0, 20.0], vec![0.05, 0.3, 0.6]]));
    check(&MixingLaw::new(2), &[1.8, 1.5, -1.2, 0.7], &inputs(&["r1", "r2"], vec![vec![0.0, 0.3, 0.6], vec![0.5, 0.2, 0.4]]));
}
