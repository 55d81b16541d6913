//! Every law form recovers known parameters from synthetic data with noise.

mod common;
use common::{rel, Noise};
use dctk_laws::law::ParamSpec;
use dctk_laws::{builtin, fit, ExprLaw, FitOptions, Inputs, LawForm, LawOptions, Objective, Points};
use std::sync::Arc;

/// Sample `n` points of `law` at `truth` with multiplicative noise `sd`,
/// inputs drawn by `draw`.
fn synth(law: &dyn LawForm, truth: &[f64], n: usize, sd: f64, seed: u64, mut draw: impl FnMut(&mut Noise) -> Vec<f64>) -> Points {
    let mut rng = Noise::new(seed);
    let names = law.inputs();
    let mut cols = vec![Vec::new(); names.len()];
    for _ in 0..n {
        for (c, v) in cols.iter_mut().zip(draw(&mut rng)) {
            c.push(v);
        }
    }
    let inputs = Inputs::new(names.clone(), cols.clone());
    let y: Vec<f64> = law.predict(truth, &inputs).into_iter().map(|v| v * (1.0 + sd * rng.normal())).collect();
    Points::from_columns(names.into_iter().zip(cols).collect(), y).unwrap()
}

fn check(f: &dctk_laws::Fit, want: &[(&str, f64, f64)]) {
    for (name, value, tol) in want {
        let got = f.get(name).unwrap();
        assert!(rel(got, *value) < *tol, "{}: {name} got {got}, true {value}\n{}", f.report.law, f.report.to_text());
    }
}

fn log_uniform(rng: &mut Noise, lo: f64, hi: f64) -> f64 {
    10f64.powf(rng.uniform(lo, hi))
}

#[test]
fn chinchilla_recovers() {
    let law = builtin("chinchilla", &LawOptions::default()).unwrap();
    let truth = [406.4f64.ln(), 410.7f64.ln(), 1.69f64.ln(), 0.34, 0.28];
    let pts = synth(law.as_ref(), &truth, 150, 0.002, 1, |r| vec![log_uniform(r, 7.0, 10.5), log_uniform(r, 9.0, 12.0)]);
    // The full 4,500 grid is exercised by the Epoch test; a coarse grid keeps this one fast.
    let grid = dctk_laws::law::cartesian_grid(&[vec![0.0, 10.0], vec![0.0, 10.0], vec![-1.0, 1.0], vec![0.5, 1.0], vec![0.5, 1.0]]);
    let f = fit(law, &pts, &FitOptions { grid: Some(grid), ..FitOptions::default() }).unwrap();
    check(&f, &[("E", 1.69, 0.02), ("alpha", 0.34, 0.05), ("beta", 0.28, 0.05), ("A", 406.4, 0.5), ("B", 410.7, 0.5)]);
}

#[test]
fn kaplan_recovers() {
    let law = builtin("kaplan", &LawOptions::default()).unwrap();
    let truth = [8.8e13f64.ln(), 5.4e13f64.ln(), 0.076, 0.095];
    let pts = synth(law.as_ref(), &truth, 150, 0.002, 2, |r| vec![log_uniform(r, 6.0, 10.0), log_uniform(r, 7.0, 11.0)]);
    let f = fit(law, &pts, &FitOptions::default()).unwrap();
    check(&f, &[("alpha_N", 0.076, 0.05), ("alpha_D", 0.095, 0.05), ("log_Nc", truth[0], 0.03), ("log_Dc", truth[1], 0.03)]);
}

#[test]
fn power_law_recovers() {
    let law = builtin("power_law", &LawOptions::default()).unwrap();
    let truth = [2.0, 0.6, 3.4];
    let pts = synth(law.as_ref(), &truth, 40, 0.001, 3, |r| vec![log_uniform(r, -1.0, 1.5)]);
    let f = fit(law, &pts, &FitOptions::default()).unwrap();
    check(&f, &[("A", 2.0, 0.05), ("B", 0.6, 0.05), ("C", 3.4, 0.01)]);
    assert_eq!(f.report.objective, Objective::LSQ_LINEAR.describe());
}

#[test]
fn bimix_recovers_identifiable_products() {
    let law = builtin("bimix", &LawOptions::default()).unwrap();
    // A = 3, B = 0.8, C = 2 -> AB = 2.4, CB = 1.6.
    let truth = [2.4, 1.6, 0.7, 0.08];
    let mut rng = Noise::new(4);
    let props = [0.05f64, 0.1, 0.2, 0.4];
    let (mut s, mut r, mut y) = (vec![], vec![], vec![]);
    for &p in &props {
        for step in 1..=20 {
            s.push(step as f64);
            r.push(p);
            let v = (truth[0] / (step as f64).powf(truth[2]) + truth[1]) / p.powf(truth[3]);
            y.push(v * (1.0 + 0.002 * rng.normal()));
        }
    }
    let pts = Points::from_columns(vec![("s".into(), s), ("r".into(), r)], y).unwrap();
    let f = fit(law, &pts, &FitOptions::default()).unwrap();
    check(&f, &[("AB", 2.4, 0.05), ("CB", 1.6, 0.03), ("a", 0.7, 0.08), ("b", 0.08, 0.05)]);
}

#[test]
fn mixing_law_recovers() {
    let law = builtin("mixing_law", &LawOptions { domains: Some(2), ..LawOptions::default() }).unwrap();
    let truth = [1.8, 1.5, -1.2, 0.7];
    let pts = synth(law.as_ref(), &truth, 60, 0.002, 5, |rng| {
        let a = rng.uniform(0.0, 0.6);
        let b = rng.uniform(0.0, 1.0 - a);
        vec![a, b]
    });
    let f = fit(law, &pts, &FitOptions::default()).unwrap();
    check(&f, &[("c", 1.8, 0.1), ("k", 1.5, 0.15), ("t1", -1.2, 0.08), ("t2", 0.7, 0.1)]);
}

#[test]
fn expression_law_recovers() {
    // A user-defined law: the same power law, written in Rhai.
    let law = ExprLaw::new(
        "my_power",
        vec![ParamSpec::new("A", 0.0, 100.0), ParamSpec::new("B", 0.0, 3.0), ParamSpec::new("C", 0.0, 10.0)],
        vec!["x".into()],
        "A / x ** B + C",
    )
    .unwrap();
    let truth = [2.0, 0.6, 3.4];
    let pts = synth(&law, &truth, 40, 0.001, 6, |r| vec![log_uniform(r, -1.0, 1.5)]);
    let f = fit(Arc::new(law), &pts, &FitOptions::default()).unwrap();
    check(&f, &[("A", 2.0, 0.05), ("B", 0.6, 0.05), ("C", 3.4, 0.01)]);
    assert!(f.report.n_converged >= 2);
}

#[test]
fn expression_law_matches_builtin_chinchilla() {
    let law = ExprLaw::new(
        "chinchilla_expr",
        vec![ParamSpec::free("a"), ParamSpec::free("b"), ParamSpec::free("e"), ParamSpec::new("alpha", 0.0, 3.0), ParamSpec::new("beta", 0.0, 3.0)],
        vec!["N".into(), "D".into()],
        "exp(e) + exp(a) / N ** alpha + exp(b) / D ** beta",
    )
    .unwrap();
    let builtin_law = builtin("chinchilla", &LawOptions::default()).unwrap();
    let p = [6.0, 6.0, 0.5, 0.34, 0.28];
    let inputs = Inputs::new(vec!["N".into(), "D".into()], vec![vec![1e8, 1e9, 7e10], vec![1e10, 2e11, 1.4e12]]);
    let a = law.predict(&p, &inputs);
    let b = builtin_law.predict(&p, &inputs);
    for (x, y) in a.iter().zip(&b) {
        assert!(rel(*x, *y) < 1e-12, "{x} vs {y}");
    }
}
