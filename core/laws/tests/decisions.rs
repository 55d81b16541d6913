//! Predictions with intervals, held-out extrapolation, model comparison,
//! compute-optimal allocation, effective-data multiplier, the Hitchhiker
//! protocol, reports (text, JSON, SVG) and the FitSpec entry point.

mod common;
use common::{chinchilla_points, epoch_points, rel, Noise};
use dctk_laws::{
    builtin, compare, compute_optimal, compute_optimal_from_fit, effective_data_multiplier, extrapolation_error, fit, hitchhiker, BootstrapOptions, Curve, FitOptions, FitReport,
    FitSpec, HitchhikerOptions, LawOptions, Points,
};

fn chinchilla_synth(seed: u64, n_models: usize) -> Points {
    let sizes: Vec<f64> = (0..n_models).map(|m| 1e7 * 3f64.powi(m as i32)).collect();
    chinchilla_points(&sizes, seed)
}

fn small_grid() -> Option<Vec<Vec<f64>>> {
    Some(dctk_laws::law::cartesian_grid(&[vec![0.0, 10.0], vec![0.0, 10.0], vec![-1.0, 1.0], vec![0.5], vec![0.5]]))
}

#[test]
fn compute_optimal_matches_published_g() {
    // Muennighoff et al. 2023's published base parameters (huggingface/datablations README,
    // "Parametric Fit") give G = (αA/(βB))^(1/(α+β)) = 0.2258019 (the compute-optimal
    // allocation of Hoffmann et al. 2022, eq. 4).
    let c = compute_optimal(520.8250, 1487.7161, 0.3526596, 0.3526596, 1e21).unwrap();
    assert!(rel(c.g, 0.2258019) < 1e-5, "G {}", c.g);
    // C = 6 N D holds for the allocation.
    assert!(rel(6.0 * c.params * c.tokens, 1e21) < 1e-12);
    assert!(compute_optimal(-1.0, 1.0, 0.3, 0.3, 1e21).is_err());
    // From a fit on Epoch data: tokens per parameter ~ 20-ish at 1e24 FLOPs would be Chinchilla's
    // rule; Epoch's fit gives G = (alpha A/(beta B))^(1/(alpha+beta)) from its own numbers.
    let f = fit(builtin("chinchilla", &LawOptions::default()).unwrap(), &epoch_points(), &FitOptions { grid: small_grid(), ..FitOptions::default() }).unwrap();
    let c = compute_optimal_from_fit(&f, 1e24).unwrap();
    let g = ((0.347313 * 477.8417) / (0.367183 * 2143.8638f64)).powf(1.0 / (0.347313 + 0.367183));
    assert!(rel(c.g, g) < 0.01, "G {} vs {g}", c.g);
}

#[test]
fn predictions_have_bootstrap_intervals_and_are_deterministic() {
    let pts = chinchilla_synth(1, 5);
    let law = builtin("chinchilla", &LawOptions::default()).unwrap();
    let opts = FitOptions { grid: small_grid(), bootstrap: Some(BootstrapOptions { resamples: 200, seed: 7, level: 0.9 }), ..FitOptions::default() };
    let f = fit(law.clone(), &pts, &opts).unwrap();
    let at = Points::for_prediction(vec![("N".into(), vec![1e10]), ("D".into(), vec![2e11])]).unwrap();
    let p = f.predict(&at).unwrap()[0];
    let truth = 1.69 + 406.4 / 1e10f64.powf(0.34) + 410.7 / 2e11f64.powf(0.28);
    let iv = p.interval.unwrap();
    assert!(iv.lower <= p.value && p.value <= iv.upper);
    assert!(rel(p.value, truth) < 0.01, "{} vs {truth}", p.value);
    assert_eq!(iv.level, 0.9);
    // Same seed, one thread instead of the default pool: identical samples.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let g = pool.install(|| fit(law.clone(), &pts, &opts).unwrap());
    assert_eq!(f.bootstrap_samples, g.bootstrap_samples);
    // Another seed: different samples.
    let h = fit(law, &pts, &FitOptions { bootstrap: Some(BootstrapOptions { resamples: 200, seed: 8, level: 0.9 }), ..opts }).unwrap();
    assert_ne!(f.bootstrap_samples, h.bootstrap_samples);
}

#[test]
fn extrapolation_and_model_comparison() {
    let pts = chinchilla_synth(2, 5);
    let opts = FitOptions { grid: None, ..FitOptions::default() };
    let chin = builtin("chinchilla", &LawOptions::default()).unwrap();
    let h = extrapolation_error(chin.clone(), &pts, "N", &FitOptions { grid: small_grid(), ..opts.clone() }).unwrap();
    assert_eq!(h.n_test, 8);
    assert_eq!(h.n_train, 32);
    assert!(h.are < 0.005, "ARE {}", h.are);
    // Kaplan's form has no irreducible loss: on Chinchilla-shaped data it must extrapolate worse and score a worse AIC.
    let (train, test) = dctk_laws::decide::split_largest(&pts, "N").unwrap();
    let (train, test) = (pts.select(&train).unwrap(), pts.select(&test).unwrap());
    assert!(pts.select(&[10_000]).unwrap_err().to_string().contains("10000"));
    let rows = compare(&[chin, builtin("kaplan", &LawOptions::default()).unwrap()], &train, &test, &opts).unwrap();
    assert!(rows[0].are < rows[1].are, "{rows:?}");
    assert!(rows[0].aic < rows[1].aic && rows[0].bic < rows[1].bic, "{rows:?}");
}

#[test]
fn effective_data_multiplier_inverts_the_baseline() {
    // Baseline loss vs unique data D: L(D) = 2/D^0.3 + 3 (a power law in x = D, in billions).
    let mut rng = Noise::new(3);
    let xs: Vec<f64> = (0..12).map(|i| 0.1 * 2f64.powi(i)).collect();
    let ys: Vec<f64> = xs.iter().map(|x| (2.0 / x.powf(0.3) + 3.0) * (1.0 + 0.0005 * rng.normal())).collect();
    let pts = Points::from_columns(vec![("x".into(), xs)], ys).unwrap();
    let base = fit(
        builtin("power_law", &LawOptions::default()).unwrap(),
        &pts,
        &FitOptions { bootstrap: Some(BootstrapOptions { resamples: 200, seed: 1, level: 0.95 }), ..FitOptions::default() },
    )
    .unwrap();
    // A method that reaches, at D0 = 0.2B, the loss the baseline reaches at 0.26B: multiplier 1.3.
    let method_loss = 2.0 / 0.26f64.powf(0.3) + 3.0;
    let m = effective_data_multiplier(&base, "x", &[], method_loss, 0.2).unwrap();
    assert!(rel(m.multiplier, 1.3) < 0.02, "multiplier {}", m.multiplier);
    let iv = m.interval.unwrap();
    assert!(iv.lower <= m.multiplier && m.multiplier <= iv.upper && iv.upper - iv.lower < 0.05, "{iv:?}");
    // Below the asymptote: a clear error, not a number.
    let err = effective_data_multiplier(&base, "x", &[], 2.5, 0.2).unwrap_err().to_string();
    assert!(err.contains("asymptote"), "{err}");
}

#[test]
fn hitchhiker_protocol_scores_target_tail() {
    // Five model sizes, loss curves over tokens seen; the largest is the target.
    let curve = |n: f64, total: f64| -> Curve {
        let tokens: Vec<f64> = (1..=40).map(|k| total * k as f64 / 40.0).collect();
        let loss = tokens.iter().map(|t| 1.69 + 406.4 / n.powf(0.34) + 410.7 / t.powf(0.28)).collect();
        Curve { name: format!("{n:e}"), params: n, tokens, loss }
    };
    let curves: Vec<Curve> = [1e8, 2e8, 4e8, 8e8, 1.6e9].iter().map(|&n| curve(n, 40.0 * n)).collect();
    let opts = HitchhikerOptions::default();
    let (train, test, target) = dctk_laws::hitchhiker::hitchhiker_split(&curves, &opts).unwrap();
    assert_eq!(target, "1.6e9");
    assert!(train.column("D").unwrap().iter().all(|&t| t >= 1e10));
    assert_eq!(test.len(), 13); // checkpoints at >= 70% of 40 -> k = 28..=40
    let law = builtin("chinchilla", &LawOptions::default()).unwrap();
    let r = hitchhiker(law, &curves, &opts, &FitOptions { grid: small_grid(), ..FitOptions::default() }).unwrap();
    assert!(r.held_out.are < 0.01, "ARE {}", r.held_out.are);
    assert!(dctk_laws::hitchhiker::hitchhiker_split(&curves[..1], &opts).is_err());
}

#[test]
fn report_text_json_and_svgs() {
    let pts = chinchilla_synth(4, 4);
    let f = fit(builtin("chinchilla", &LawOptions::default()).unwrap(), &pts, &FitOptions { grid: small_grid(), ..FitOptions::default() }).unwrap();
    let text = f.report.to_text();
    for needle in ["chinchilla", "alpha", "objective", "reached the best", "AIC"] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let back: FitReport = serde_json::from_str(&f.report.to_json()).unwrap();
    assert_eq!(back.params.len(), 5);
    assert_eq!(back, f.report);
    let dir = std::env::temp_dir().join(format!("dctk-laws-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    f.write_residual_svg(dir.join("res.svg")).unwrap();
    f.write_curve_svg(dir.join("curve.svg")).unwrap();
    for name in ["res.svg", "curve.svg"] {
        let s = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(s.starts_with("<svg") && s.contains("<circle"), "{name}");
    }
    // No temp files left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    let err = f.write_curve_svg("/nonexistent-dir/x.svg").unwrap_err().to_string();
    assert!(err.contains("/nonexistent-dir"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fit_spec_from_json_with_csv_and_formula() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/chinchilla_epoch_svg_extracted.csv");
    let spec: FitSpec = serde_json::from_str(&format!(
        r#"{{"law": "chinchilla", "data": "{path}", "columns": "N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss",
            "fixed": {{"alpha": 0.34}}, "grid": [[6, 7, 0.5, 0.34, 0.3]], "delta": 0.001}}"#
    ))
    .unwrap();
    let f = spec.run(None).unwrap();
    assert_eq!(f.report.n_points, 245);
    assert_eq!(f.get("alpha"), Some(0.34));
    // A script-defined law through the same entry point, on in-memory points.
    let xs: Vec<f64> = (1..=20).map(|i| i as f64).collect();
    let ys: Vec<f64> = xs.iter().map(|x| 1.5 / x.powf(0.7) + 2.0).collect();
    let pts = Points::from_columns(vec![("steps".into(), xs)], ys).unwrap();
    let spec: FitSpec = serde_json::from_str(
        r#"{"law": "decay", "formula": "A / steps ** k + C", "inputs": ["steps"], "loss": "lsq", "space": "linear",
            "params": [{"name": "A", "lower": 0, "upper": 10}, {"name": "k", "lower": 0, "upper": 3}, {"name": "C", "lower": 0, "upper": 5}]}"#,
    )
    .unwrap();
    let f = spec.run(Some(&pts)).unwrap();
    assert!(rel(f.get("k").unwrap(), 0.7) < 1e-4 && rel(f.get("C").unwrap(), 2.0) < 1e-4, "{}", f.report.to_text());
}
