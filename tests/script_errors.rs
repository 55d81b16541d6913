//! Malformed studies: each gives an error that names the file, line and column, exits
//! non-zero, and never panics. Syntax errors, unknown keys, wrong types, missing files,
//! paths outside the sandbox, unknown plugins, runaway loops, disabled eval, bad imports,
//! errors inside functions and imported scripts, bad sweeps, fits and tables.
#[path = "support/mod.rs"]
mod support;
use support::*;

const OK: &str = r#"corpus: "data:corpora/quotes.jsonl", unique_tokens: 2000, epochs: 1, seq_len: 32, batch_size: 8, val_tokens: 256"#;

/// (script, the file:line:col it must point at, a phrase the message must contain).
fn cases() -> Vec<(String, &'static str, &'static str)> {
    let t = |extra: &str| format!("let x = 1;\nlet r = train(#{{ {OK}{extra} }});\n");
    vec![
        ("let x = ;\n".into(), "s.rhai:1:9", "syntax error"),
        ("let m = #{ a: 1;\n".into(), "s.rhai:1:", "syntax error"),
        ("let r = train(#{ model: \"micro\" };\n".into(), "s.rhai:1:", "syntax error"),
        (t(", lrr: 0.1"), "s.rhai:2:9", "unknown key \"lrr\""),
        (t(", lr: \"fast\""), "s.rhai:2:9", "lr"),
        ("let r = train(#{ corpus: \"data:corpora/quotes.jsonl\", epochs: 1 });\n".into(), "s.rhai:1:9", "missing required key \"unique_tokens\""),
        (t(", model: \"huge\""), "s.rhai:2:9", "unknown preset \"huge\""),
        ("let r = train(#{ corpus: \"data:corpora/quotes.jsonl\", unique_tokens: 300, epochs: 0.5, seq_len: 32, batch_size: 16 });\n".into(), "s.rhai:1:9", "fewer than one batch"),
        ("\n\nlet r = train(#{ corpus: \"nope.jsonl\", unique_tokens: 2000, epochs: 1 });\n".into(), "s.rhai:3:9", "nope.jsonl"),
        ("let r = train(#{ corpus: \"/etc\", unique_tokens: 2000, epochs: 1 });\n".into(), "s.rhai:1:9", "outside the study directory"),
        ("let r = train(#{ corpus: \"data:missing\", unique_tokens: 2000, epochs: 1 });\n".into(), "s.rhai:1:9", "in none of the data roots"),
        (t(", regularizers: [\"nope\"]"), "s.rhai:2:9", "nope"),
        (t(", regularizers: [#{ name: \"mir\", settings: #{ lambdaa: 1.0 } }]"), "s.rhai:2:9", "lambdaa"),
        ("let i = 0;\nloop { i += 1; }\n".into(), "s.rhai:2:", "operations limit"),
        ("let v = eval(\"1 + 1\");\n".into(), "s.rhai:1:9", "eval"),
        ("import \"nope\" as n;\n".into(), "s.rhai:1:8", "nope.rhai"),
        ("import \"../../../../etc/passwd\" as n;\n".into(), "s.rhai:1:8", "outside the study directory"),
        (format!("fn make() {{\n  train(#{{ {OK}, dropout: \"high\" }})\n}}\nlet r = make();\n"), "s.rhai:2:3", "dropout"),
        ("import \"lib\" as lib;\nlet r = lib::make();\n".into(), "lib.rhai:2:3", "unknown key \"bogus\""),
        ("let g = grid(#{ lr: 0.1 });\n".into(), "s.rhai:1:9", "must be an array"),
        ("let z = zip(#{ lr: [1, 2], wd: [1] });\n".into(), "s.rhai:1:9", "has 1 values"),
        ("let f = fit(#{ law: \"nope\", data: \"x.csv\" });\n".into(), "s.rhai:1:9", "nope"),
        ("print(table([1, 2]));\n".into(), "s.rhai:1:7", "not a map"),
        ("let r = train(5);\n".into(), "s.rhai:1:9", "train"),
        ("let x = [1, 2];\nlet y = x[5];\n".into(), "s.rhai:2:", "out of bounds"),
    ]
}

#[test]
fn malformed_scripts_give_positioned_errors_and_never_panic() {
    let s = Scratch::new("malformed");
    s.write("lib.rhai", &format!("fn make() {{\n  train(#{{ {OK}, bogus: 1 }})\n}}\n"));
    s.write("x.csv", "N,D,loss\n1,2,3\n");
    let cases = cases();
    assert!(cases.len() >= 20);
    for (i, (script, at, phrase)) in cases.iter().enumerate() {
        let path = s.write("s.rhai", script);
        let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q", "--max-operations", "200000"]);
        let t = text(&out);
        assert!(!out.status.success(), "case {i} succeeded:\n{script}\n{t}");
        assert!(!t.contains("panicked") && !t.contains("RUST_BACKTRACE"), "case {i} panicked:\n{script}\n{t}");
        assert!(t.contains(at), "case {i}: expected an error at {at}:\n{script}\n{t}");
        assert!(t.contains(phrase), "case {i}: expected \"{phrase}\" in the error:\n{script}\n{t}");
        assert_eq!(out.status.code(), Some(1), "case {i}: exit code\n{t}");
    }
}

/// Settings that plan (they are well-formed script) but that no run can do, each with the
/// position and phrase of its error.
fn plannable_cases() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let t = |extra: &str| format!("let x = 1;\nlet r = train(#{{ {OK}{extra} }});\nprint(r.final_val_loss);\n");
    let big = "let a = [];\nfor i in 0..2000 { a.push(#{ lr: i }); }\nlet b = [];\nfor i in 0..2000 { b.push(#{ seed: i }); }\nlet p = product(a, b);\n";
    vec![
        ("threads", t(", threads: 1000000"), "s.rhai:2:9", "key \"threads\": 1000000"),
        ("nan", t(", lr: 0.0 / 0.0"), "s.rhai:2:9", "key \"lr\": NaN is not a number"),
        ("inf", t(", weight_decay: 1e308 * 10.0"), "s.rhai:2:9", "key \"weight_decay\": inf is not a number"),
        ("nested nan", t(", domains: #{ quotes: #{ weight: 0.0 / 0.0 } }"), "s.rhai:2:9", "key \"domains.quotes.weight\": NaN"),
        ("product", big.to_string(), "s.rhai:5:9", "product: 2000 × 2000 variants is more than the limit"),
        ("self-import", "import \"s\" as me;\n".to_string(), "s.rhai:1:8", "an import cycle: s.rhai → s.rhai"),
        ("import cycle", "import \"cyc_a\" as a;\n".to_string(), "cyc_b.rhai:1:8", "an import cycle: cyc_a.rhai → cyc_b.rhai → cyc_a.rhai"),
        ("epochs 1e300", t("").replace("train(#{", "train(#{ epochs: 1e300, ").replace("epochs: 1,", ""), "s.rhai:2:9", "key \"epochs\""),
        (
            "absurd model",
            t(", model: #{ n_layer: 4096, d_model: 65536, n_head: 64 }"),
            "s.rhai:2:9",
            "memory",
        ),
    ]
}

#[test]
fn malformed_but_plannable_settings_are_refused_cleanly_by_plan_and_by_run() {
    let s = Scratch::new("plannable");
    s.write("cyc_a.rhai", "import \"cyc_b\" as b;\nfn f() { 1 }\n");
    s.write("cyc_b.rhai", "import \"cyc_a\" as a;\nfn g() { 2 }\n");
    for (i, (name, script, at, phrase)) in plannable_cases().into_iter().enumerate() {
        let path = s.write("s.rhai", &script);
        let runs = format!("runs-{i}");
        for cmd in ["plan", "run"] {
            let mut args = vec![cmd, path.to_str().unwrap(), "--runs", &runs, "--max-operations", "1000000"];
            if cmd == "run" {
                args.push("-q");
            }
            let out = dctk(s.path(), &args);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(1), "{name}: dctk {cmd} must fail cleanly (not 101/134):\n{t}");
            assert!(!t.contains("panicked") && !t.contains("overflow"), "{name}: {cmd} crashed:\n{t}");
            assert!(t.contains(at) && t.contains(phrase), "{name}: {cmd}: expected \"{phrase}\" at {at}:\n{t}");
        }
        let runs = s.path().join(&runs);
        if runs.exists() {
            assert!(cells(&runs).iter().all(|c| !c.join("result.ron").exists()), "{name}: no result");
            assert!(!std::fs::read_dir(runs.join("studies")).map(|d| d.flatten().any(|e| e.path().join("results.csv").exists())).unwrap_or(false), "{name}: no table");
        }
    }
}

#[test]
fn a_script_with_a_byte_order_mark_plans() {
    let s = Scratch::new("bom");
    let path = s.write("s.rhai", &format!("\u{feff}let r = train(#{{ {OK} }});\nprint(\"planned\");\n"));
    let out = dctk(s.path(), &["plan", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // And an error after it is still positioned on the right line.
    let path = s.write("s.rhai", "\u{feff}let x = 1;\nlet y = ;\n");
    let t = text(&dctk(s.path(), &["plan", path.to_str().unwrap()]));
    assert!(t.contains("s.rhai:2:") && t.contains("syntax error"), "{t}");
}
