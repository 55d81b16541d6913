//! Bad inputs give clear errors that name the column, row or parameter.

use dctk_laws::law::ParamSpec;
use dctk_laws::{builtin, fit, ColumnMap, ExprLaw, FitOptions, FitSpec, LawOptions, Points};

fn chinchilla() -> std::sync::Arc<dyn dctk_laws::LawForm> {
    builtin("chinchilla", &LawOptions::default()).unwrap()
}

fn csv(text: &str, map: &str) -> dctk_laws::Result<Points> {
    Points::from_csv_reader(text.as_bytes(), "test.csv", &ColumnMap::parse(map)?)
}

fn grid_points(n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let ns: Vec<f64> = (0..n).map(|i| 1e8 * (1.0 + i as f64)).collect();
    let ds: Vec<f64> = (0..n).map(|i| 1e10 * (1.0 + (i % 3) as f64)).collect();
    let ys: Vec<f64> = ns.iter().zip(&ds).map(|(n, d)| 1.7 + 400.0 / n.powf(0.34) + 400.0 / d.powf(0.28)).collect();
    (ns, ds, ys)
}

#[test]
fn unknown_column_lists_available() {
    let err = csv("params,tokens,loss\n1e8,1e10,3.0\n", "N=params,D=toks,loss=loss").unwrap_err().to_string();
    assert!(err.contains("toks") && err.contains("params, tokens, loss"), "{err}");
    let pts = csv("params,tokens,loss\n1e8,1e10,3.0\n", "N=params,loss=loss").unwrap();
    let err = fit(chinchilla(), &pts, &FitOptions::default()).unwrap_err().to_string();
    assert!(err.contains("unknown column 'D'") && err.contains("available"), "{err}");
}

#[test]
fn non_positive_sizes_name_row_and_column() {
    let (mut n, d, y) = grid_points(12);
    n[4] = 0.0;
    let pts = Points::from_columns(vec![("N".into(), n), ("D".into(), d)], y).unwrap();
    let err = fit(chinchilla(), &pts, &FitOptions::default()).unwrap_err().to_string();
    assert!(err.contains("column 'N', row 5") && err.contains("> 0"), "{err}");
    let (n, mut d, y) = grid_points(12);
    d[0] = -1.0;
    let pts = Points::from_columns(vec![("N".into(), n), ("D".into(), d)], y).unwrap();
    let err = fit(chinchilla(), &pts, &FitOptions::default()).unwrap_err().to_string();
    assert!(err.contains("column 'D', row 1"), "{err}");
}

#[test]
fn nan_and_text_values_are_errors() {
    let (n, d, mut y) = grid_points(12);
    y[7] = f64::NAN;
    let pts = Points::from_columns(vec![("N".into(), n), ("D".into(), d)], y).unwrap();
    let err = fit(chinchilla(), &pts, &FitOptions::default()).unwrap_err().to_string();
    assert!(err.contains("'loss', row 8") && err.contains("NaN"), "{err}");
    let err = csv("N,D,loss\n1e8,1e10,3.0\n1e9,abc,2.9\n", "D=D").unwrap_err().to_string();
    assert!(err.contains("column 'D', row 2") && err.contains("abc"), "{err}");
    let pts = csv("N,D,loss\n1e8,1e10,3.0\n1e9,nan,2.9\n1e9,1e11,2.8\n1e9,1e11,2.8\n1e9,1e11,2.8\n1e9,1e11,2.8\n1e9,1e11,2.8\n", "").unwrap();
    let err = fit(chinchilla(), &pts, &FitOptions::default()).unwrap_err().to_string();
    assert!(err.contains("column 'D', row 2"), "{err}");
}

#[test]
fn too_few_points() {
    let (n, d, y) = grid_points(5);
    let pts = Points::from_columns(vec![("N".into(), n), ("D".into(), d)], y).unwrap();
    let err = fit(chinchilla(), &pts, &FitOptions::default()).unwrap_err().to_string();
    assert!(err.contains("5 points for 5 free parameters"), "{err}");
    // Freezing parameters lowers the requirement.
    let opts = FitOptions { fixed: vec![("alpha".into(), 0.34), ("beta".into(), 0.28)], ..FitOptions::default() };
    fit(chinchilla(), &pts, &opts).unwrap();
}

#[test]
fn unknown_law_and_parameter() {
    let err = builtin("softish", &LawOptions::default()).unwrap_err().to_string();
    assert!(err.contains("unknown law 'softish'") && err.contains("chinchilla"), "{err}");
    let (n, d, y) = grid_points(12);
    let pts = Points::from_columns(vec![("N".into(), n), ("D".into(), d)], y).unwrap();
    let opts = FitOptions { fixed: vec![("gamma".into(), 1.0)], ..FitOptions::default() };
    let err = fit(chinchilla(), &pts, &opts).unwrap_err().to_string();
    assert!(err.contains("unknown parameter 'gamma'") && err.contains("alpha"), "{err}");
    let err = builtin("mixing_law", &LawOptions::default()).unwrap_err().to_string();
    assert!(err.contains("domains"), "{err}");
}

#[test]
fn bad_expressions() {
    let p = || vec![ParamSpec::new("A", 0.0, 10.0)];
    let err = ExprLaw::new("x", p(), vec!["x".into()], "A / (x +").unwrap_err().to_string();
    assert!(err.contains("cannot compile"), "{err}");
    let err = ExprLaw::new("x", p(), vec!["x".into()], "A / y").unwrap_err().to_string();
    assert!(err.contains("y"), "{err}");
    let err = ExprLaw::new("x", p(), vec!["x".into()], "\"text\"").unwrap_err().to_string();
    assert!(err.contains("not a number"), "{err}");
    let err = ExprLaw::new("x", vec![ParamSpec::new("A", 2.0, 1.0)], vec!["x".into()], "A * x").unwrap_err().to_string();
    assert!(err.contains("parameter 'A'") && err.contains("bounds"), "{err}");
    let err = ExprLaw::new("x", vec![ParamSpec::new("x", 0.0, 1.0)], vec!["x".into()], "x").unwrap_err().to_string();
    assert!(err.contains("twice"), "{err}");
}

#[test]
fn bad_mapping_and_spec() {
    let err = ColumnMap::parse("N=a,N=b").unwrap_err().to_string();
    assert!(err.contains("mapped twice"), "{err}");
    let err = ColumnMap::parse("garbage").unwrap_err().to_string();
    assert!(err.contains("name=column"), "{err}");
    let err = serde_json::from_str::<FitSpec>(r#"{"law": "chinchilla", "lr": 1}"#).unwrap_err().to_string();
    assert!(err.contains("lr"), "{err}");
    let spec: FitSpec = serde_json::from_str(r#"{"law": "chinchilla", "loss": "l1"}"#).unwrap();
    let law = spec.build_law().unwrap();
    let err = spec.fit_options(law.as_ref()).unwrap_err().to_string();
    assert!(err.contains("'l1'"), "{err}");
    let err = FitSpec { law: "chinchilla".into(), ..FitSpec::default() }.run(None).unwrap_err().to_string();
    assert!(err.contains("no data"), "{err}");
    let spec = FitSpec { law: "chinchilla".into(), data: Some("/nonexistent/file.csv".into()), ..FitSpec::default() };
    let err = spec.run(None).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/file.csv"), "{err}");
}
