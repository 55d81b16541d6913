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

/// `dctk fit` runs in the front binary, which is not linked to libtorch: the Epoch fit
/// completes without libtorch ever mapped into the process (its `/proc/self/maps`, read at
/// the end of the command), the binary has no libtorch among its needed libraries, and the
/// commands that need tensors still work through `dctk-torch`.
#[test]
fn fit_runs_without_libtorch_and_torch_commands_hand_over() {
    let s = Scratch::new("fitlite");
    let csv = epoch_csv(&s);
    let out = dctk_cmd(s.path())
        .env("DCTK_REPORT_LIBTORCH", "1")
        .args(["fit", "--law", "chinchilla", "--data", csv.to_str().unwrap(), "--columns", "N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((report["objective_value"].as_f64().unwrap() / 1.01827e-3 - 1.0).abs() < 1e-4);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("libtorch mapped: no"), "{err}");
    let elf = std::fs::read(dctk_bin()).unwrap();
    assert!(!elf.windows(b"libtorch_cpu.so".len()).any(|w| w == b"libtorch_cpu.so"), "the dctk front names libtorch_cpu.so");
    // `doctor` needs tensors: handed to dctk-torch, which loads libtorch and runs a tensor op.
    let out = dctk(s.path(), &["doctor"]);
    assert!(out.status.success() && text(&out).contains("check       a tensor op on the CPU works"), "{}", text(&out));
    // A lite command forced through the full build gives the same answer.
    let lite = dctk(s.path(), &["fit", "--law", "chinchilla", "--data", csv.to_str().unwrap(), "--columns", "N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss", "--json"]);
    let full = dctk_cmd(s.path())
        .env("DCTK_FRONT", "torch")
        .args(["fit", "--law", "chinchilla", "--data", csv.to_str().unwrap(), "--columns", "N=Model Size,C=Training FLOP,D=C/(6*N),loss=loss", "--json"])
        .output()
        .unwrap();
    let (a, b): (serde_json::Value, serde_json::Value) = (serde_json::from_slice(&lite.stdout).unwrap(), serde_json::from_slice(&full.stdout).unwrap());
    assert_eq!(a["params"], b["params"]);
    assert_eq!(a["objective_value"], b["objective_value"]);
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
let h = hitchhiker(#{{ law: "chinchilla", runs: runs, cut_beginning_tokens: 0, compare_final_only: true }});
print(`hitchhiker ${{h.held_out.are}}`);
print(`hitchhiker_parts ${{h.params.len()}} ${{h.predictions.len()}} ${{h.final_only.n_train}}`);
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
    // The fitted parameters, the held-out predictions and the final-only comparison (one
    // final checkpoint per smaller run) come back too.
    let parts = val("hitchhiker_parts");
    assert_eq!(parts[0], 5.0, "{t}");
    assert!(parts[1] >= 1.0, "{t}");
    assert_eq!(parts[2], 4.0, "{t}");
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

/// Chinchilla's law L = e^e + e^a/N^alpha + e^b/D^beta at these parameters.
const CHIN: [(&str, f64); 5] = [("a", 5.991464547107982), ("b", 6.802394763324311), ("e", 0.4054651081081644), ("alpha", 0.3), ("beta", 0.3)];

fn chinchilla_loss(n: f64, d: f64) -> f64 {
    CHIN[2].1.exp() + CHIN[0].1.exp() / n.powf(CHIN[3].1) + CHIN[1].1.exp() / d.powf(CHIN[4].1)
}

/// Noiseless points of [`CHIN`] on a 5 × 6 design, as a CSV.
fn chinchilla_csv(s: &Scratch) -> std::path::PathBuf {
    let mut csv = String::from("N,D,loss\n");
    for n in [1e7, 3e7, 1e8, 3e8, 1e9] {
        for d in [1e8, 3e8, 1e9, 3e9, 1e10, 3e10] {
            csv += &format!("{n},{d},{}\n", chinchilla_loss(n, d));
        }
    }
    s.write("chin.csv", &csv)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn param(report: &serde_json::Value, name: &str) -> f64 {
    report["params"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no {name} in {report}"))["value"].as_f64().unwrap()
}

#[test]
fn cli_eval_at_the_generating_parameters_gives_r2_one() {
    let s = Scratch::new("fiteval");
    let csv = chinchilla_csv(&s);
    let at = CHIN.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let args = ["fit", "--law", "chinchilla", "--data", csv.to_str().unwrap(), "--eval", "--at", &at];
    let e = json(&dctk(s.path(), &[&args[..], &["--json", "--predict", "N=7e10,D=1.4e12"]].concat()));
    let r2 = e["metrics"]["r2_loss"].as_f64().unwrap();
    assert!((r2 - 1.0).abs() < 1e-12, "R² {r2}");
    assert!(e["objective_value"].as_f64().unwrap() < 1e-20 && e["metrics"]["mean_abs_rel_error"].as_f64().unwrap() < 1e-12, "{e}");
    assert_eq!(e["metrics"]["fit_space"], "ln", "{e}");
    let p = e["predictions"][0]["loss"].as_f64().unwrap();
    assert!((p / chinchilla_loss(7e10, 1.4e12) - 1.0).abs() < 1e-12, "{p}");
    // The text form names every metric by its scale.
    let t = text(&dctk(s.path(), &args));
    assert!(t.contains("nothing fitted") && t.contains("R²(loss) 1.000000") && t.contains("RSS(ln residuals)"), "{t}");
    // Off the generating parameters R² drops below 1.
    let off = at.replace("alpha=0.3", "alpha=0.31");
    let e = json(&dctk(s.path(), &["fit", "--law", "chinchilla", "--data", csv.to_str().unwrap(), "--eval", "--at", &off, "--json"]));
    assert!(e["metrics"]["r2_loss"].as_f64().unwrap() < 0.999, "{e}");
    // Fixing every parameter without --eval says how to evaluate; a missing one is named.
    let fix: Vec<String> = CHIN.iter().flat_map(|(k, v)| ["--fix".to_string(), format!("{k}={v}")]).collect();
    let mut fit_all = vec!["fit", "--law", "chinchilla", "--data", csv.to_str().unwrap()];
    fit_all.extend(fix.iter().map(String::as_str));
    let t = text(&dctk(s.path(), &fit_all));
    assert!(t.contains("nothing to fit") && t.contains("--eval"), "{t}");
    let out = dctk(s.path(), &["fit", "--law", "chinchilla", "--data", csv.to_str().unwrap(), "--eval", "--at", "a=6,b=7,e=0.4,alpha=0.3"]);
    assert!(!out.status.success() && text(&out).contains("beta"), "{}", text(&out));
}

#[test]
fn cli_bounds_starts_grid_threads_and_predict() {
    let s = Scratch::new("fitflags");
    let csv = chinchilla_csv(&s);
    let base = ["fit", "--law", "chinchilla", "--data", csv.to_str().unwrap(), "--json", "--threads", "1"];
    // alpha is 0.3; capped at 0.2 it ends on its bound, and the report says so.
    let r = json(&dctk(s.path(), &[&base[..], &["--bounds", "alpha=0:0.2", "--starts", "50"]].concat()));
    assert_eq!(r["n_starts"], 50, "{r}");
    assert!((param(&r, "alpha") - 0.2).abs() < 1e-9, "{r}");
    let on_bound = r["warnings"].as_array().unwrap().iter().find(|w| w["kind"] == "on_bound").unwrap_or_else(|| panic!("{}", r["warnings"]));
    assert_eq!(on_bound["params"][0], "alpha");
    // A grid from axes: 3·3·2·2·2 starts; the fit recovers the law and predicts with it.
    let grid = ["--grid", "a=0:10:3", "--grid", "b=0:10:3", "--grid", "e=0|1", "--grid", "alpha=0.1|0.5", "--grid", "beta=0.1|0.5"];
    let r = json(&dctk(s.path(), &[&base[..], &grid[..], &["--predict", "N=7e10,D=1.4e12", "--predict", "N=1e9,D=2e10"]].concat()));
    assert_eq!(r["n_starts"], 72, "{r}");
    for (name, want) in CHIN {
        assert!((param(&r, name) - want).abs() < 1e-4 * want.abs().max(1.0), "{name}: {} vs {want}", param(&r, name));
    }
    let preds = r["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 2);
    let p = preds[1]["loss"].as_f64().unwrap();
    assert!((p / chinchilla_loss(1e9, 2e10) - 1.0).abs() < 1e-5, "{p}");
    // Bad flags name themselves.
    let t = text(&dctk(s.path(), &[&base[..], &["--bounds", "alpha=0"]].concat()));
    assert!(t.contains("--bounds alpha=0: expected NAME=LOWER:UPPER"), "{t}");
    let t = text(&dctk(s.path(), &[&base[..], &["--grid", "a=0:10:3"]].concat()));
    assert!(t.contains("no grid axis") && t.contains("b"), "{t}");
    let t = text(&dctk(s.path(), &[&base[..], &["--predict", "N=1e9"]].concat()));
    assert!(!t.is_empty() && t.contains("D"), "{t}");
}

/// Three domains, each its own power law L = C + A/x^B, with a small deterministic wobble;
/// `size` carries x with a unit suffix.
fn domains_csv(s: &Scratch) -> std::path::PathBuf {
    let mut csv = String::from("domain,x,size,loss\n");
    for (k, (domain, a, b, c)) in [("ArXiv", 30.0, 0.5, 2.0), ("Github", 10.0, 0.3, 1.0), ("Wiki", 50.0, 0.7, 2.5)].into_iter().enumerate() {
        for (i, x) in [1.0f64, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0].into_iter().enumerate() {
            let wobble = 1.0 + 1e-3 * (((i * 7 + k * 3) % 5) as f64 - 2.0);
            csv += &format!("{domain},{x},{}k,{}\n", x, (c + a / x.powf(b)) * wobble);
        }
    }
    s.write("domains.csv", &csv)
}

#[test]
fn cli_group_by_equals_separate_fits_and_where_reads_strings() {
    let s = Scratch::new("fitgroups");
    let csv = domains_csv(&s);
    let base = ["fit", "--law", "power_law", "--data", csv.to_str().unwrap(), "--loss", "lsq", "--json"];
    let groups = json(&dctk(s.path(), &[&base[..], &["--group-by", "domain"]].concat()));
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.iter().map(|g| g["group"].as_str().unwrap()).collect::<Vec<_>>(), ["ArXiv", "Github", "Wiki"]);
    for g in groups {
        let domain = g["group"].as_str().unwrap();
        let alone = json(&dctk(s.path(), &[&base[..], &["--where", &format!("domain == \"{domain}\"")]].concat()));
        assert_eq!(alone["n_points"], 8);
        for name in ["A", "B", "C"] {
            let (a, b) = (param(g, name), param(&alone, name));
            assert!((a - b).abs() <= 1e-12 * a.abs(), "{domain} {name}: grouped {a} vs alone {b}");
        }
    }
    // Strings and numbers in one filter; the text table has a row per group.
    let r = json(&dctk(s.path(), &[&base[..], &["--where", "domain != \"Wiki\" && x >= 2"]].concat()));
    assert_eq!(r["n_points"], 14, "{r}");
    let t = text(&dctk(s.path(), &["fit", "--law", "power_law", "--data", csv.to_str().unwrap(), "--loss", "lsq", "--group-by", "domain"]));
    assert!(t.contains("groups     3 by domain") && t.lines().filter(|l| l.trim_start().starts_with("Github")).count() == 1, "{t}");
    let t = text(&dctk(s.path(), &[&base[..], &["--where", "domain == \"Nope\""]].concat()));
    assert!(t.contains("keeps none of the 24 rows"), "{t}");
    // `1k` is text unless --units is given; the error says so.
    let t = text(&dctk(s.path(), &[&base[..], &["--columns", "x=size"]].concat()));
    assert!(t.contains("\"1k\"") && t.contains("--units"), "{t}");
    let units = json(&dctk(s.path(), &[&base[..], &["--columns", "x=size", "--units", "--where", "domain == \"ArXiv\""]].concat()));
    let plain = json(&dctk(s.path(), &[&base[..], &["--where", "domain == \"ArXiv\""]].concat()));
    // x in thousands: A scales by 1000^B, B and C are unchanged.
    assert!((param(&units, "B") / param(&plain, "B") - 1.0).abs() < 1e-6, "{units}");
    assert!((param(&units, "C") / param(&plain, "C") - 1.0).abs() < 1e-6, "{units}");
}

#[test]
fn script_reads_csv_in_the_sandbox_fits_groups_and_evaluates() {
    let s = Scratch::new("fitrows");
    domains_csv(&s);
    std::fs::create_dir_all(s.path().join("study")).unwrap();
    std::fs::copy(s.path().join("domains.csv"), s.path().join("study/domains.csv")).unwrap();
    let script = r#"
let rows = read_csv("domains.csv");
print(`rows ${rows.len()} ${type_of(rows[0].x)} ${type_of(rows[0].domain)} ${type_of(rows[0].size)}`);
let fits = fit(#{ law: "power_law", rows: rows, loss: "lsq", group_by: "domain" });
for f in fits { print(`group ${f.group} ${f.n_points} ${f.metrics.r2_loss}`); }
let one = fit(#{ law: "power_law", rows: rows, loss: "lsq", where: "domain == \"ArXiv\"" });
let e = evaluate(#{ law: "power_law", rows: rows, where: "domain == \"ArXiv\"", loss: "lsq",
                    params: #{ A: 30.0, B: 0.5, C: 2.0 }, predict: [#{ x: 256.0 }] });
print(`evaluate ${e.n_points} ${e.metrics.r2_loss} ${e.predictions[0].loss} ${e.points.len()}`);
let by = evaluate(#{ law: "power_law", data: "domains.csv", params: #{ A: 30.0, B: 0.5, C: 2.0 }, group_by: "domain" });
print(`evaluate_groups ${by.len()} ${by[0].group}`);
print(table(rows.extract(0, 2), ["domain", "x", "size"]));
"#;
    let path = s.write("study/rows.rhai", script);
    let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("rows 24 f64 string string"), "{t}");
    for g in ["ArXiv", "Github", "Wiki"] {
        let line = t.lines().find(|l| l.starts_with(&format!("group {g} 8 "))).unwrap_or_else(|| panic!("{g} in {t}"));
        let r2: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(r2 > 0.999, "{line}");
    }
    let ev: Vec<f64> = t.lines().find(|l| l.starts_with("evaluate ")).unwrap().split(' ').skip(1).map(|x| x.parse().unwrap()).collect();
    assert_eq!((ev[0], ev[3]), (8.0, 8.0), "{t}");
    assert!(ev[1] > 0.999 && ev[1] < 1.0, "the wobble keeps R² just under 1: {t}");
    assert!((ev[2] - (2.0 + 30.0 / 16.0)).abs() < 1e-12, "{t}");
    assert!(t.contains("evaluate_groups 3 ArXiv"), "{t}");
    assert!(t.contains("domain") && t.contains("1k"), "{t}");
    // Outside the study directory and the data roots, read_csv refuses.
    for (name, bad) in [("up.rhai", "../domains.csv"), ("abs.rhai", "/etc/passwd")] {
        let path = s.write(&format!("study/{name}"), &format!("let rows = read_csv(\"{bad}\");"));
        let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q"]);
        let t = text(&out);
        assert!(!out.status.success() && t.contains(&format!("{name}:1:12: read_csv")), "{t}");
    }
}
