//! `dctk fit` and Rhai `fit()` on real and synthetic data.
#[path = "support/mod.rs"]
mod support;
use support::*;

/// Epoch AI's 245 Chinchilla points, the 5 highest losses dropped (as Epoch did).
fn epoch_csv(s: &Scratch) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("core/laws/tests/data/chinchilla_epoch_svg_extracted.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let loss_col = header.split(',').position(|c| c == "loss").unwrap();
    let mut rows: Vec<(f64, &str)> = lines.map(|l| (l.split(',').nth(loss_col).unwrap().parse().unwrap(), l)).collect();
    rows.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    rows.truncate(rows.len() - 5);
    let body: Vec<&str> = rows.iter().map(|r| r.1).collect();
    s.write("epoch.csv", &format!("{header}\n{}\n", body.join("\n")))
}

#[test]
fn cli_reproduces_epoch_chinchilla_fit() {
    let s = Scratch::new("fitcli");
    let csv = epoch_csv(&s);
    let out = dctk(
        s.path(),
        &["fit", "--law", "chinchilla", "--data", csv.to_str().unwrap(), "--columns", "N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss", "--json", "--plots", "plots"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |name: &str| -> f64 {
        let all = report["params"].as_array().unwrap().iter().chain(report["derived"].as_array().unwrap());
        all.clone().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no {name} in {report}"))["value"].as_f64().unwrap()
    };
    for (name, want) in [("A", 477.84), ("B", 2143.86), ("E", 1.8172), ("alpha", 0.3473), ("beta", 0.3672)] {
        let got = find(name);
        assert!((got / want - 1.0).abs() < 0.005, "{name}: {got} vs Epoch's {want}");
    }
    let objective = report["objective_value"].as_f64().unwrap();
    assert!((objective / 1.01827e-3 - 1.0).abs() < 1e-4, "objective {objective}");
    assert!(s.path().join("plots/chinchilla.residuals.svg").exists());
    assert!(s.path().join("plots/chinchilla.curve.svg").exists());
}

#[test]
fn cli_fit_errors_are_clear() {
    let s = Scratch::new("fiterr");
    let csv = epoch_csv(&s);
    let out = dctk(s.path(), &["fit", "--law", "chinchilla", "--data", csv.to_str().unwrap(), "--columns", "N=Params,D=Training FLOP,loss=loss"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("Params"), "{}", text(&out));
    let out = dctk(s.path(), &["fit", "--law", "nope", "--data", "x.csv"]);
    assert!(text(&out).contains("law \"nope\" is not built in"), "{}", text(&out));
}

#[test]
fn script_fits_runs_and_user_formulas() {
    let s = Scratch::new("fitscript");
    // Points drawn exactly from L = 2 + 30 / x^0.5, given as run-like maps.
    let script = r#"
let runs = [];
for x in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0] {
    runs.push(#{ tokens: x, final_val_loss: 2.0 + 30.0 / x ** 0.5 });
}
let f = fit(#{ law: "power_law", runs: runs, columns: "x=tokens,loss=final_val_loss", loss: "lsq" });
let g = fit(#{ law: "mine", formula: "C + A / x ** B", inputs: ["x"],
               params: [#{name: "A", lower: 0, upper: 100}, #{name: "B", lower: 0, upper: 2}, #{name: "C", lower: 0, upper: 10}],
               runs: runs, columns: "x=tokens,loss=final_val_loss", loss: "lsq" });
for p in f.params { print(`builtin ${p.name} ${p.value}`); }
for p in g.params { print(`formula ${p.name} ${p.value}`); }
"#;
    let path = s.write("fit.rhai", script);
    let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    for prefix in ["builtin", "formula"] {
        for (name, want) in [("A", 30.0), ("B", 0.5), ("C", 2.0)] {
            let line = t.lines().find(|l| l.starts_with(&format!("{prefix} {name} "))).unwrap_or_else(|| panic!("{prefix} {name} in {t}"));
            let got: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!((got - want).abs() < 1e-3 * want.max(1.0), "{prefix} {name}: {got} vs {want}");
        }
    }
    let bad = s.write("bad.rhai", "let f = fit(#{ law: \"power_law\", runs: [#{x: 1.0}], columns: \"x=x,loss=loss\" });");
    let out = dctk(s.path(), &["run", bad.to_str().unwrap(), "-q"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("bad.rhai:1:9: fit:"), "{}", text(&out));
}

#[test]
fn script_decisions_predict_allocate_multiply_and_hitchhike() {
    let s = Scratch::new("decide");
    let csv = epoch_csv(&s);
    let script = format!(
        r#"
let f = fit(#{{ law: "chinchilla", data: "{}", columns: "N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss",
               predict: [#{{N: 7e10, D: 1.4e12}}], compute_optimal: 5.76e23,
               effective_data: #{{ input: "D", loss: 2.0, at: 1e11, fixed: #{{N: 1e10}} }} }});
let p = f.predictions[0];
print(`predict ${{p.loss}}`);
let c = f.compute_optimal[0];
print(`optimal ${{c.params}} ${{c.tokens}} ${{c.flops}}`);
print(`multiplier ${{f.effective_data.multiplier}}`);

// Runs drawn exactly from L = 1.5 + 400/N^0.3 + 900/D^0.3, logged at several token counts.
let runs = [];
for n in [1e6, 2e6, 4e6, 8e6, 1.6e7] {{
    let curve = [];
    for d in [1e6, 2e6, 4e6, 8e6, 1.6e7, 3.2e7, 6.4e7, 1.28e8] {{
        curve.push(#{{ tokens: d, val_loss: 1.5 + 400.0 / n ** 0.3 + 900.0 / d ** 0.3 }});
    }}
    runs.push(#{{ params: n, curve: curve, run_id: `n${{n}}` }});
}}
let h = hitchhiker(#{{ law: "chinchilla", runs: runs, cut_beginning_tokens: 0 }});
print(`hitchhiker ${{h.held_out.are}}`);
"#,
        csv.display()
    );
    let path = s.write("d.rhai", &script);
    let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let val = |key: &str| -> Vec<f64> {
        let line = t.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} in {t}"));
        line.split(' ').skip(1).map(|x| x.parse().unwrap()).collect()
    };
    // Chinchilla-70B at 1.4T tokens: Epoch's fit predicts ≈ 1.94.
    let p = val("predict")[0];
    assert!((p - 1.94).abs() < 0.05, "prediction {p}");
    let c = val("optimal");
    assert!((6.0 * c[0] * c[1] / c[2] - 1.0).abs() < 1e-6, "C = 6ND must hold: {c:?}");
    assert!(c[0] > 1e10 && c[0] < 1e12, "N_opt {}", c[0]);
    let m = val("multiplier")[0];
    assert!(m.is_finite() && m > 0.0, "multiplier {m}");
    let are = val("hitchhiker")[0];
    assert!(are < 1e-3, "exact synthetic law must extrapolate: ARE {are}");
}

#[test]
fn a_law_named_by_a_path_is_refused() {
    let s = Scratch::new("fitpath");
    // A real library: the old loader opened any file a script named.
    let lib = support::dctk_bin().parent().unwrap().join("libdctk_plugin_mir.so");
    for law in [lib.display().to_string(), "/x/lib.so".to_string()] {
        let script = format!(
            "let f = fit(#{{ law: \"{law}\", runs: [#{{x: 1.0, loss: 2.0}}, #{{x: 2.0, loss: 1.5}}], columns: \"x=x,loss=loss\" }});"
        );
        let path = s.write("law.rhai", &script);
        let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q"]);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("law.rhai:1:9: fit:") && t.contains(&format!("law \"{law}\"")) && t.contains("is not a plugin name"), "{t}");
        assert!(!t.contains("is not a law"), "the library must not have been opened: {t}");
    }
}
