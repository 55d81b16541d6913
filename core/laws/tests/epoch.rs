//! Reproduction of Epoch AI's Chinchilla replication (Besiroglu, Erdil, Barnett,
//! You 2024, "Chinchilla Scaling: A replication attempt", arXiv 2404.10102, on
//! their released data: the points they extracted from Hoffmann et al. 2022's
//! Figure 4, `tests/data/chinchilla_epoch_svg_extracted.csv`) of Hoffmann et al.
//! 2022's Approach 3 (the parametric loss of their eq. 2, fitted with a Huber loss):
//! the 4,500-start Huber/L-BFGS fit on the 240 points, the Huber objective of
//! Chinchilla's rounded parameters, the Huber-likelihood MLE and the
//! bootstrap standard errors.

mod common;
use common::{epoch_points, rel};
use dctk_laws::{builtin, fit, objective_value, BootstrapOptions, FitOptions, LawOptions, Method};

#[test]
fn grid_fit_reproduces_epoch() {
    let points = epoch_points();
    assert_eq!(points.len(), 240);
    let law = builtin("chinchilla", &LawOptions::default()).unwrap();
    let f = fit(law, &points, &FitOptions::default()).unwrap();
    let r = &f.report;
    assert_eq!(r.n_starts, 4500);
    assert!(r.n_converged >= 10, "only {} starts reached the best", r.n_converged);
    // Epoch's "Replicate exactly" row: A 477.8417, B 2143.8638, E 1.817236,
    // alpha 0.347313, beta 0.367183, objective 0.00101827403.
    for (name, want) in [("A", 477.84), ("B", 2143.86), ("E", 1.8172), ("alpha", 0.3473), ("beta", 0.3672)] {
        let got = f.get(name).unwrap();
        assert!(rel(got, want) < 0.005, "{name}: got {got}, Epoch {want}");
    }
    assert!(rel(r.objective_value, 1.01827e-3) < 5e-5, "objective {}", r.objective_value);
    assert!(r.diagnostics.projected_gradient < 1e-5);
}

#[test]
fn huber_at_chinchilla_rounded_params() {
    let points = epoch_points();
    let law = builtin("chinchilla", &LawOptions::default()).unwrap();
    // E = 1.69, A = 406.4, B = 410.7, alpha = 0.34, beta = 0.28.
    let p = [406.4f64.ln(), 410.7f64.ln(), 1.69f64.ln(), 0.34, 0.28];
    let h = objective_value(law.as_ref(), &points, None, &p).unwrap();
    assert!(rel(h, 4.1210e-3) < 1e-4, "Huber objective {h}");
}

#[test]
fn huber_mle_matches_epoch_headline() {
    let points = epoch_points();
    let law = builtin("chinchilla", &LawOptions::default()).unwrap();
    let opts = FitOptions { method: Method::HuberMle, ..FitOptions::default() };
    let f = fit(law, &points, &opts).unwrap();
    // Epoch MLE: A 482.006, B 2085.434, E 1.81686, alpha 0.34781, beta 0.36585.
    // At the fitted scale (σ ≈ 5e-6) the likelihood is L1-like, and where the
    // simplex stops along the fit's weakest direction (a + α + e, relative
    // se ~5%) moves with rounding-level changes to the objective: the fused
    // kernels with FMA moved A by 0.6% and α by 0.13% at a log-likelihood
    // 0.003 below the previous fit's (both within 0.01 of Epoch's). So the
    // parameters are held to 1% (A, B) and 0.2% (α, β), well inside their
    // bootstrap se; the likelihood below is the sharp check.
    for (name, want, tol) in [("A", 482.006, 0.01), ("B", 2085.434, 0.01), ("E", 1.81686, 0.0005), ("alpha", 0.34781, 0.002), ("beta", 0.36585, 0.002)] {
        let got = f.get(name).unwrap();
        assert!(rel(got, want) < tol, "{name}: got {got}, Epoch MLE {want}");
    }
    // Epoch's own MLE parameters, frozen, with only the scale fitted: the
    // likelihood (normaliser included) must give their 879.77 and ln σ -12.2666.
    let epoch = [("a", 6.17795598), ("b", 7.64273236), ("e", 0.59711196), ("alpha", 0.34781303), ("beta", 0.36585412)];
    let at_epoch = FitOptions { method: Method::HuberMle, fixed: epoch.iter().map(|(n, v)| (n.to_string(), *v)).collect(), ..FitOptions::default() };
    let g = fit(builtin("chinchilla", &LawOptions::default()).unwrap(), &points, &at_epoch).unwrap();
    assert!((-g.report.objective_value - 879.77).abs() < 0.01, "log-likelihood at Epoch's MLE {}", -g.report.objective_value);
    assert!((g.get("log_sigma").unwrap() - (-12.26662388)).abs() < 1e-3);
    let ls = f.get("log_sigma").unwrap();
    assert!(ls < -8.0, "log sigma {ls}");
    // Log-likelihood of the Epoch fit on the 240 points: 879.77.
    let ll = -f.report.objective_value;
    assert!((ll - 879.77).abs() < 0.01, "log-likelihood {ll}");
}

#[test]
fn bootstrap_standard_errors_match_epoch_statistically() {
    let points = epoch_points();
    let law = builtin("chinchilla", &LawOptions::default()).unwrap();
    let opts = FitOptions {
        grid: Some(vec![vec![6.0, 7.0, 0.5, 0.3, 0.3]]),
        bootstrap: Some(BootstrapOptions { resamples: 4000, seed: 42, level: 0.95 }),
        ..FitOptions::default()
    };
    let f = fit(law, &points, &opts).unwrap();
    let b = f.report.bootstrap.as_ref().unwrap();
    assert_eq!(b.resamples, 4000);
    assert!(b.failed < 40, "{} bootstrap refits failed", b.failed);
    let se = |n: &str| f.report.params.iter().chain(&f.report.derived).find(|e| e.name == n).unwrap().interval.unwrap().se;
    // Epoch (numpy RNG, seed 42): SE alpha 0.01540, beta 0.02060, E 0.02566, a 0.258, b 0.421, e 0.014.
    // Our RNG differs, so compare within the Monte-Carlo spread (±12%).
    for (name, want) in [("alpha", 0.01540), ("beta", 0.02060), ("E", 0.02566), ("a", 0.258), ("b", 0.421), ("e", 0.014)] {
        let got = se(name);
        assert!(rel(got, want) < 0.12, "SE {name}: got {got}, Epoch {want}");
    }
    let alpha = f.report.params.iter().find(|e| e.name == "alpha").unwrap().interval.unwrap();
    assert!(alpha.lower < 0.3473 && alpha.upper > 0.3473);
    assert!((alpha.lower - 0.317).abs() < 0.01 && (alpha.upper - 0.373).abs() < 0.01, "{alpha:?}");
}
