//! The Rhai entry point: a `fit(#{ ... })` map deserialises into a
//! `FitSpec` (as the host does with `rhai::serde::from_dynamic`), integers
//! where floats are expected included, and runs on in-memory points.

use dctk_laws::{FitSpec, Points};

#[test]
fn rhai_map_to_fit_spec() {
    let engine = rhai::Engine::new();
    let map: rhai::Dynamic = engine
        .eval(
            r#"#{ law: "power_law", bootstrap: 50, seed: 3, level: 0.9,
                  fixed: #{ C: 2 }, bounds: #{ A: [0, 10] }, loss: "lsq", space: "linear" }"#,
        )
        .unwrap();
    let spec: FitSpec = rhai::serde::from_dynamic(&map).unwrap();
    assert_eq!(spec.fixed.get("C"), Some(&2.0));
    assert_eq!(spec.bounds.get("A"), Some(&[0.0, 10.0]));
    let xs: Vec<f64> = (1..=12).map(|i| i as f64).collect();
    let ys: Vec<f64> = xs.iter().map(|x| 1.5 / x.powf(0.7) + 2.0).collect();
    let pts = Points::from_columns(vec![("x".into(), xs)], ys).unwrap();
    let f = spec.run(Some(&pts)).unwrap();
    assert!((f.get("B").unwrap() - 0.7).abs() < 1e-4, "{}", f.report.to_text());
    assert_eq!(f.report.bootstrap.as_ref().unwrap().resamples, 50);
    // The report goes back to Rhai as a map.
    let back = rhai::serde::to_dynamic(&f.report).unwrap();
    assert!(back.is_map());
    // A typo in a field name is an error, not silently ignored.
    let bad: rhai::Dynamic = engine.eval(r#"#{ law: "power_law", bootstraps: 5 }"#).unwrap();
    let err = rhai::serde::from_dynamic::<FitSpec>(&bad).unwrap_err().to_string();
    assert!(err.contains("bootstraps"), "{err}");
}
