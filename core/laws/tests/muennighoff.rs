//! Muennighoff et al. 2023, "Scaling Data-Constrained Language Models" (arXiv
//! 2305.16264): the data-constrained law (Chinchilla's form at the effective data
//! D' and effective parameters N' of their eqs. 5–6), checked against the values
//! of the authors' release (huggingface/datablations, README "Parametric Fit"),
//! the published G, and the two-stage fit (stage 2 fits only R_D*, R_N* with the
//! base frozen) on synthetic data.

mod common;
use common::{rel, Noise};
use dctk_laws::laws::Muennighoff;
use dctk_laws::{fit, FitOptions, Inputs, LawForm, Points};
use std::sync::Arc;

fn at(law: &Muennighoff, p: &[f64], n: f64, d: f64, u: f64) -> f64 {
    let inputs = Inputs::new(law.inputs(), vec![vec![n], vec![d], vec![u]]);
    law.predict(p, &inputs)[0]
}

#[test]
fn readme_values_exact() {
    let law = Muennighoff { tie_exponents: false };
    let p = Muennighoff::PUBLISHED;
    let v1 = at(&law, &p, 6.34e9, 242e9, 25e9);
    let v2 = at(&law, &p, 8.67e9, 178e9, 25e9);
    assert!((v1 - 2.2256440889984477).abs() < 1e-12, "{v1:.16}");
    assert!((v2 - 2.2269634075087867).abs() < 1e-12, "{v2:.16}");
    // Tied parameterisation gives the same numbers.
    let tied = Muennighoff { tie_exponents: true };
    let pt = [p[0], p[1], p[2], p[3], p[5], p[6]];
    assert!((at(&tied, &pt, 6.34e9, 242e9, 25e9) - 2.2256440889984477).abs() < 1e-12);
    // Published G = 0.2258019.
    let g = law.derived(&p).into_iter().find(|(n, _)| n == "G").unwrap().1;
    assert!(rel(g, 0.2258019) < 1e-6, "G {g}");
}

fn synthetic(seed: u64, noise: f64) -> Points {
    let law = Muennighoff { tie_exponents: false };
    let mut rng = Noise::new(seed);
    let (mut ns, mut ds, mut us, mut ys) = (vec![], vec![], vec![], vec![]);
    for _ in 0..200 {
        let n = 10f64.powf(rng.uniform(7.5, 10.0));
        let u = 10f64.powf(rng.uniform(8.0, 10.5));
        let epochs = 10f64.powf(rng.uniform(0.0, 1.8));
        let d = u * epochs;
        let y = at(&law, &Muennighoff::PUBLISHED, n, d, u) * (1.0 + noise * rng.normal());
        ns.push(n);
        ds.push(d);
        us.push(u);
        ys.push(y);
    }
    Points::from_columns(vec![("N".into(), ns), ("D".into(), ds), ("U".into(), us)], ys).unwrap()
}

#[test]
fn stage_two_recovers_decay_constants() {
    let points = synthetic(7, 0.002);
    let p = Muennighoff::PUBLISHED;
    let names = ["a", "b", "e", "alpha", "beta"];
    let opts = FitOptions { fixed: names.iter().zip(p).map(|(n, v)| (n.to_string(), v)).collect(), ..FitOptions::default() };
    let f = fit(Arc::new(Muennighoff { tie_exponents: false }), &points, &opts).unwrap();
    assert_eq!(f.report.n_starts, 16, "grid over frozen parameters should collapse to the R* starts");
    assert!(f.report.params.iter().filter(|e| e.fixed).count() == 5);
    assert!(rel(f.get("rd_star").unwrap(), 15.387756) < 0.15, "rd_star {}", f.get("rd_star").unwrap());
    assert!(rel(f.get("rn_star").unwrap(), 5.309743) < 0.15, "rn_star {}", f.get("rn_star").unwrap());
    assert_eq!(f.get("a").unwrap(), p[0]);
}

#[test]
fn tied_full_fit_recovers_parameters() {
    let points = synthetic(11, 0.001);
    let law = Arc::new(Muennighoff { tie_exponents: true });
    // A small grid around plausible values keeps the test fast.
    let grid = dctk_laws::law::cartesian_grid(&[vec![5.0, 8.0], vec![6.0, 9.0], vec![0.0, 1.0], vec![0.3, 0.5], vec![10.0], vec![3.0, 8.0]]);
    let f = fit(law, &points, &FitOptions { grid: Some(grid), ..FitOptions::default() }).unwrap();
    let p = Muennighoff::PUBLISHED;
    assert!(rel(f.get("E").unwrap(), p[2].exp()) < 0.02, "E {}", f.get("E").unwrap());
    assert!(rel(f.get("alpha").unwrap(), p[3]) < 0.03, "alpha {}", f.get("alpha").unwrap());
    assert!(rel(f.get("rd_star").unwrap(), p[5]) < 0.2, "rd_star {}", f.get("rd_star").unwrap());
    assert!(rel(f.get("rn_star").unwrap(), p[6]) < 0.3, "rn_star {}", f.get("rn_star").unwrap());
}

#[test]
fn unique_tokens_above_total_is_an_error() {
    let points = Points::from_columns(
        vec![("N".into(), vec![1e8; 10]), ("D".into(), vec![1e9; 10]), ("U".into(), (0..10).map(|i| if i == 3 { 2e9 } else { 1e9 }).collect())],
        vec![3.0; 10],
    )
    .unwrap();
    let err = fit(Arc::new(Muennighoff::default()), &points, &FitOptions::default()).unwrap_err().to_string();
    assert!(err.contains("row 4") && err.contains("U"), "{err}");
}
