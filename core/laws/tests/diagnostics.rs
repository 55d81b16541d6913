//! Fit diagnostics on synthetic data drawn from known laws: a bound hit is flagged, a
//! two-size design reports the N-exponent as not identified, a two-basin objective reports
//! both optima, a full design reports no identifiability warning; the hitchhiker protocol
//! returns parameters (with bootstrap intervals), held-out predictions, warnings and the
//! final-checkpoints-only comparison.

mod common;
use common::{chinchilla_points, Noise};
use dctk_laws::{builtin, fit, hitchhiker, Curve, ExprLaw, FitOptions, FitReport, HitchhikerOptions, LawOptions, ParamSpec, Points, WarningKind};
use std::sync::Arc;

const FIVE_SIZES: [f64; 5] = [1e7, 3e7, 9e7, 2.7e8, 8.1e8];

fn small_grid() -> Option<Vec<Vec<f64>>> {
    Some(dctk_laws::law::cartesian_grid(&[vec![0.0, 5.0, 10.0], vec![0.0, 5.0, 10.0], vec![-1.0, 0.5], vec![0.2, 0.5], vec![0.2, 0.5]]))
}

fn kinds(r: &FitReport) -> Vec<WarningKind> {
    r.warnings.iter().map(|w| w.kind).collect()
}

fn chinchilla() -> Arc<dyn dctk_laws::LawForm> {
    builtin("chinchilla", &LawOptions::default()).unwrap()
}

#[test]
fn full_design_has_no_warnings_and_named_metrics() {
    let f = fit(chinchilla(), &chinchilla_points(&FIVE_SIZES, 1), &FitOptions { grid: small_grid(), ..FitOptions::default() }).unwrap();
    let r = &f.report;
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let id = r.identifiability.as_ref().unwrap();
    assert!(id.condition_number.unwrap() < 1e4, "{id:?}");
    assert!(id.directions.iter().all(|d| d.relative_se.unwrap() < 0.1), "{id:?}");
    assert_eq!(r.metrics.fit_space, dctk_laws::FitSpace::Ln);
    assert!(r.metrics.r2_loss > 0.999 && r.metrics.r2_loss <= 1.0, "{:?}", r.metrics);
    assert!(r.n_converged >= 1 && r.optima[0].starts == r.n_converged);
    let text = r.to_text();
    for needle in ["R²(loss)", "RSS(ln residuals)", "RSS(loss)", "Gaussian likelihood of the ln residuals", "condition number"] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[test]
fn parameter_on_its_bound_is_flagged() {
    let opts = FitOptions { grid: small_grid(), bounds: vec![("alpha".into(), 0.0, 0.2)], ..FitOptions::default() };
    let f = fit(chinchilla(), &chinchilla_points(&FIVE_SIZES, 1), &opts).unwrap();
    let w = f.report.warnings.iter().find(|w| w.kind == WarningKind::OnBound).unwrap_or_else(|| panic!("{:?}", f.report.warnings));
    assert_eq!(w.params, vec!["alpha".to_string()]);
    assert!(w.message.contains("upper bound 0.2"), "{}", w.message);
    assert!(f.report.to_text().starts_with("WARNING"));
}

#[test]
fn two_model_sizes_leave_the_n_exponent_unidentified() {
    let f = fit(chinchilla(), &chinchilla_points(&[1e8, 4e8], 2), &FitOptions { grid: small_grid(), ..FitOptions::default() }).unwrap();
    let r = &f.report;
    let w = r.warnings.iter().find(|w| w.kind == WarningKind::NotIdentified).unwrap_or_else(|| panic!("{:?}", r.warnings));
    for p in ["alpha", "e"] {
        assert!(w.params.contains(&p.to_string()), "{p} not in {:?}", w.params);
    }
    assert!(!w.params.contains(&"beta".to_string()), "{:?}", w.params);
    assert!(r.identifiability.as_ref().unwrap().directions.last().unwrap().relative_singular_value < 1e-7);
    assert!(r.warnings.iter().any(|w| w.kind == WarningKind::DegenerateDesign && w.message.contains("'N' takes only 2")), "{:?}", r.warnings);
    assert!(r.n_converged >= 1);
    // The JSON form carries the warnings.
    assert!(r.to_json().contains("\"not_identified\""));
}

#[test]
fn two_basins_report_both_optima() {
    // L = e + k·x^(−c²): c and −c fit equally well, so the objective has two minima.
    let law = ExprLaw::new(
        "symmetric",
        vec![ParamSpec::new("e", 0.0, 10.0), ParamSpec::new("k", 0.0, 100.0), ParamSpec::new("c", -2.0, 2.0)],
        vec!["x".into()],
        "e + k * x ** (-(c * c))",
    )
    .unwrap()
    .with_grid(dctk_laws::law::cartesian_grid(&[vec![1.0], vec![1.0, 5.0], vec![-1.5, -0.3, 0.3, 1.5]]))
    .unwrap();
    let x: Vec<f64> = (0..12).map(|i| 2f64.powi(i)).collect();
    let mut rng = Noise::new(3);
    let y: Vec<f64> = x.iter().map(|x| (1.0 + 3.0 * x.powf(-0.25)) * (1.0 + 0.001 * rng.normal())).collect();
    let points = Points::from_columns(vec![("x".into(), x)], y).unwrap();
    let f = fit(Arc::new(law), &points, &FitOptions::default()).unwrap();
    let r = &f.report;
    assert!(r.n_optima >= 2 && r.optima.len() >= 2, "{:?}", r.optima);
    let c_of = |k: usize| r.optima[k].params.iter().find(|p| p.0 == "c").unwrap().1;
    assert!((c_of(0).abs() - 0.5).abs() < 0.05 && (c_of(1) + c_of(0)).abs() < 0.05, "{:?}", r.optima);
    assert!((r.optima[0].objective - r.optima[1].objective).abs() <= 1e-6 * r.optima[0].objective.abs().max(1e-12));
    assert!(r.optima[0].starts + r.optima[1].starts <= r.n_starts && r.optima[1].starts >= 1, "{}", r.to_text());
    assert!(kinds(r).contains(&WarningKind::SeveralOptima), "{:?}", r.warnings);
    assert!(!kinds(r).contains(&WarningKind::NotIdentified), "{:?}", r.warnings);
}

/// Loss curves of Chinchilla's law, 40 checkpoints each, 0.1% noise; the largest is the target.
fn curves(sizes: &[f64]) -> Vec<Curve> {
    let mut rng = Noise::new(5);
    sizes
        .iter()
        .map(|&n| {
            let total = 40.0 * n;
            let tokens: Vec<f64> = (1..=40).map(|k| total * k as f64 / 40.0).collect();
            let loss = tokens.iter().map(|t| (1.69 + 406.4 / n.powf(0.34) + 410.7 / t.powf(0.28)) * (1.0 + 0.001 * rng.normal())).collect();
            Curve { name: format!("{n:e}"), params: n, tokens, loss }
        })
        .collect()
}

#[test]
fn hitchhiker_gives_parameters_intervals_predictions_and_final_only_comparison() {
    let sizes = [1e8, 1.5e8, 2.2e8, 3.3e8, 5e8, 7.5e8, 1.6e9];
    let opts = HitchhikerOptions { compare_final_only: true, cut_beginning_tokens: 1e9, ..HitchhikerOptions::default() };
    let fit_opts = FitOptions { grid: small_grid(), bootstrap: Some(dctk_laws::BootstrapOptions { resamples: 24, seed: 1, level: 0.9 }), ..FitOptions::default() };
    let r = hitchhiker(chinchilla(), &curves(&sizes), &opts, &fit_opts).unwrap();
    assert_eq!(r.params.len(), 5);
    let alpha = r.params.iter().find(|p| p.name == "alpha").unwrap();
    let iv = alpha.interval.expect("bootstrap interval");
    assert!(iv.lower <= alpha.value && alpha.value <= iv.upper && iv.level == 0.9, "{alpha:?}");
    assert_eq!(r.bootstrap.as_ref().unwrap().resamples, 24);
    assert_eq!(r.predictions.len(), r.held_out.n_test);
    for p in &r.predictions {
        assert_eq!(p.n, 1.6e9);
        assert!((p.rel_error - (p.predicted - p.observed) / p.observed).abs() < 1e-15 && p.rel_error.abs() < 0.02, "{p:?}");
        assert!(p.interval.is_some());
    }
    let mean_abs = r.predictions.iter().map(|p| p.rel_error.abs()).sum::<f64>() / r.predictions.len() as f64;
    assert!((mean_abs - r.held_out.are).abs() < 1e-12);
    assert!(r.warnings.iter().all(|w| w.kind != WarningKind::NotIdentified), "{:?}", r.warnings);
    let fo = r.final_only.as_ref().unwrap();
    assert_eq!(fo.n_train, 6);
    assert_eq!(fo.are_intermediate, r.held_out.are);
    assert!(fo.error.is_none() && fo.are_final_only.is_some(), "{fo:?}");
    // Too few smaller models for a final-only fit of five parameters: reported, not fatal.
    let few = hitchhiker(chinchilla(), &curves(&[1e8, 2e8, 4e8, 1.6e9]), &opts, &FitOptions { grid: small_grid(), ..FitOptions::default() }).unwrap();
    let fo = few.final_only.unwrap();
    assert!(fo.are_final_only.is_none() && fo.error.is_some(), "{fo:?}");
    assert!(few.params[0].interval.is_none());
}
