//! Which points a fit sees and how they are split (`where`, `group_by`, text columns,
//! `units`), its starts (`starts`, `--grid` axes and files), and evaluating a law at
//! given parameters — all on tiny synthetic CSVs, as the CLI and Rhai `fit` use them.

use dctk_laws::laws::PowerLaw;
use dctk_laws::{evenly_spaced, grid_from_axes, grid_from_csv, parse_number, ColumnMap, FitSpec, LawForm, Points};

/// L = A/x^B + C per domain: ArXiv (A=2, B=0.5, C=1) and Web (A=3, B=0.8, C=1.5),
/// with the size column written with unit suffixes.
fn long_csv() -> String {
    let mut s = String::from("domain,size,loss\n");
    for (domain, a, b, c) in [("ArXiv", 2.0, 0.5, 1.0), ("Web", 3.0, 0.8, 1.5)] {
        for (k, size) in ["1k", "2k", "5k", "10k", "20k", "50k", "100k", "200k"].iter().enumerate() {
            let x = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0][k];
            s += &format!("{domain},{size},{}\n", a / f64::powf(x, b) + c);
        }
    }
    s
}

fn points(units: bool) -> dctk_laws::Result<Points> {
    // x in thousands: size / 1000, so the fitted A is in the same units as above.
    Points::from_csv_reader_with_units(long_csv().as_bytes(), "long.csv", &ColumnMap::parse("x=size/1000").unwrap(), units)
}

fn spec() -> FitSpec {
    FitSpec { law: "power_law".into(), ..FitSpec::default() }
}

#[test]
fn unit_suffixes_only_when_asked() {
    assert_eq!(parse_number("2.8B", true), Some(2.8e9));
    assert_eq!(parse_number("125M", true), Some(1.25e8));
    assert_eq!(parse_number("3k", true), Some(3e3));
    assert_eq!(parse_number("1.5T", true), Some(1.5e12));
    assert_eq!(parse_number("2.8B", false), None);
    assert_eq!(parse_number("ArXiv", true), None);
    let p = points(true).unwrap();
    assert_eq!(p.column("x").unwrap()[..3], [1.0, 2.0, 5.0]);
    // Without units `size` is text: deriving from it fails, naming the mapping and row;
    // a law reading it names the column, row and value, and says how to read suffixes.
    let err = points(false).unwrap_err().to_string();
    assert!(err.contains("x=size/1000") && err.contains("row 1"), "{err}");
    let err = Points::from_csv_reader(long_csv().as_bytes(), "long.csv", &ColumnMap::parse("x=size").unwrap()).unwrap_err().to_string();
    assert!(err.contains("column 'size', row 1") && err.contains("\"1k\"") && err.contains("--units"), "{err}");
    let raw = Points::from_csv_reader(long_csv().as_bytes(), "long.csv", &ColumnMap::default()).unwrap();
    let err = raw.column("size").unwrap_err().to_string();
    assert!(err.contains("column 'size', row 1") && err.contains("--units"), "{err}");
    let err = raw.column("domain").unwrap_err().to_string();
    assert!(err.contains("\"ArXiv\"") && !err.contains("--units"), "{err}");
}

#[test]
fn where_filters_by_strings_and_numbers_and_names_the_row() {
    let p = points(true).unwrap();
    let arxiv = p.filter_where(r#"domain == "ArXiv" && x >= 5"#).unwrap();
    assert_eq!(arxiv.len(), 6);
    assert_eq!(arxiv.rows, vec![3, 4, 5, 6, 7, 8], "source rows survive the filter");
    assert_eq!(arxiv.text_column("domain").unwrap()[0], "ArXiv");
    let err = p.filter_where("domain + 1").unwrap_err().to_string();
    assert!(err.contains("domain + 1") && err.contains("row 1"), "{err}");
    let err = p.filter_where("dommain == \"Web\"").unwrap_err().to_string();
    assert!(err.contains("dommain") && err.contains("domain (text)"), "{err}");
    let s = FitSpec { where_rows: Some("x > 1e9".into()), ..spec() };
    assert!(s.select_points(p).unwrap_err().to_string().contains("keeps none"));
}

#[test]
fn group_by_equals_separate_filtered_fits() {
    let p = points(true).unwrap();
    let grouped = FitSpec { group_by: Some("domain".into()), ..spec() }.run_groups(Some(&p)).unwrap();
    assert_eq!(grouped.iter().map(|(g, _)| g.clone().unwrap()).collect::<Vec<_>>(), ["ArXiv", "Web"]);
    for (group, fit) in &grouped {
        let alone = FitSpec { where_rows: Some(format!("domain == {:?}", group.as_ref().unwrap())), ..spec() }.run(Some(&p)).unwrap();
        assert_eq!(fit.params(), alone.params(), "group {group:?}");
        assert_eq!(fit.report.n_points, 8);
    }
    let (a, b) = (&grouped[0].1, &grouped[1].1);
    assert!((a.get("B").unwrap() - 0.5).abs() < 1e-4 && (b.get("B").unwrap() - 0.8).abs() < 1e-4);
    // Numeric groups are labelled by the number; `run` refuses a grouped spec.
    let by_x = FitSpec { group_by: Some("x".into()), ..spec() };
    assert_eq!(p.groups("x").unwrap()[0].0, "1");
    assert!(by_x.run(Some(&p)).unwrap_err().to_string().contains("run_groups"));
}

#[test]
fn evaluate_at_generating_parameters_and_every_parameter_fixed() {
    let p = points(true).unwrap().filter_where(r#"domain == "Web""#).unwrap();
    let named: Vec<(String, f64)> = vec![("A".into(), 3.0), ("B".into(), 0.8)];
    let s = FitSpec { fixed: [("C".to_string(), 1.5)].into(), ..spec() };
    let e = s.evaluate_named(&PowerLaw, &p, &named).unwrap();
    assert!((e.metrics.r2_loss - 1.0).abs() < 1e-12 && e.objective_value < 1e-20, "{}", e.to_text());
    assert_eq!(e.predicted.len(), 8);
    let all_fixed = FitSpec { fixed: [("A".to_string(), 3.0), ("B".to_string(), 0.8), ("C".to_string(), 1.5)].into(), ..spec() };
    let err = all_fixed.run(Some(&p)).unwrap_err().to_string();
    assert!(err.contains("--eval") && err.contains("evaluate("), "{err}");
    let err = s.evaluate_named(&PowerLaw, &p, &[("C".into(), 1.0), ("A".into(), 3.0), ("B".into(), 0.8)]).unwrap_err().to_string();
    assert!(err.contains("'C'") && err.contains("fixed"), "{err}");
}

#[test]
fn starts_grid_axes_and_grid_files() {
    let v: Vec<usize> = (0..10).collect();
    assert_eq!(evenly_spaced(&v, 3).unwrap(), [0, 5, 9]);
    assert_eq!(evenly_spaced(&v, 1).unwrap(), [5]);
    assert_eq!(evenly_spaced(&v, 20).unwrap().len(), 10);
    assert!(evenly_spaced(&v, 0).is_err());
    let law = PowerLaw;
    let axes = ["C=0.5|1".to_string(), "A=1:3:3".into(), "B=0.1:1:2".into()];
    let g = grid_from_axes(&law, &axes).unwrap();
    assert_eq!(g.len(), 12);
    assert_eq!(g[0], [1.0, 0.1, 0.5], "law order A, B, C whatever the order given");
    assert_eq!(grid_from_axes(&law, &["A=1:1000:3".into(), "B=1".into(), "C=1".into()]).unwrap()[1][0].round(), 32.0, "wide positive ranges are log-spaced");
    let err = grid_from_axes(&law, &axes[..2]).unwrap_err().to_string();
    assert!(err.contains("'B'") && err.contains("every parameter"), "{err}");
    assert!(grid_from_axes(&law, &["Z=1|2".into()]).unwrap_err().to_string().contains("Z"));
    let dir = std::env::temp_dir().join(format!("dctk-laws-grid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("starts.csv");
    std::fs::write(&file, "C,B,A\n1,0.5,2\n1.5,0.8,3\n").unwrap();
    let g = grid_from_csv(&law, file.to_str().unwrap()).unwrap();
    assert_eq!(g, vec![vec![2.0, 0.5, 1.0], vec![3.0, 0.8, 1.5]]);
    std::fs::write(&file, "C,B,A\n1,x,2\n").unwrap();
    let err = grid_from_csv(&law, file.to_str().unwrap()).unwrap_err().to_string();
    assert!(err.contains("'B (in ") && err.contains("row 1"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    // `starts` picks from the given grid: 2 of these 12, and the fit still converges.
    let p = points(true).unwrap().filter_where(r#"domain == "ArXiv""#).unwrap();
    let s = FitSpec { grid: Some(grid_from_axes(&law, &axes).unwrap()), starts: Some(2), ..spec() };
    let opts = s.options_for(&law, &p).unwrap();
    assert_eq!(opts.grid.as_ref().unwrap().len(), 2);
    assert!((s.run(Some(&p)).unwrap().get("B").unwrap() - 0.5).abs() < 1e-4);
    // ... or from the law's default grid.
    let default = law.default_grid(&p.law_inputs(&law).unwrap(), &p.loss).len();
    let opts = FitSpec { starts: Some(3), ..spec() }.options_for(&law, &p).unwrap();
    assert_eq!(opts.grid.unwrap().len(), 3.min(default));
}

#[test]
fn rhai_map_accepts_the_selection_keys() {
    let engine = rhai::Engine::new();
    let map: rhai::Dynamic =
        engine.eval(r#"#{ law: "power_law", where: "domain == \"Web\"", group_by: "domain", units: true, starts: 4 }"#).unwrap();
    let s: FitSpec = rhai::serde::from_dynamic(&map).unwrap();
    assert_eq!(s.where_rows.as_deref(), Some("domain == \"Web\""));
    assert_eq!((s.group_by.as_deref(), s.units, s.starts), (Some("domain"), true, Some(4)));
}
