//! The CLI as a user meets it: versions, doctor, and positioned errors from bad scripts.
#[path = "support/mod.rs"]
mod support;
use support::*;

#[test]
fn version_and_doctor_answer() {
    let s = Scratch::new("version");
    let out = dctk(s.path(), &["--version"]);
    assert!(out.status.success());
    assert!(text(&out).starts_with("dctk 0."), "{}", text(&out));
    let out = dctk(s.path(), &["doctor"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    for needle in ["tch         0.24.0", "libtorch    2.11.0", "loaded from", "threads", "status      ok"] {
        assert!(t.contains(needle), "doctor output lacks {needle:?}:\n{t}");
    }
}

/// Runs a one-off script and returns (success, output).
fn run_script(body: &str) -> (bool, String) {
    let s = Scratch::new("script");
    let corpus = repo_root().join("data/corpora/quotes.jsonl");
    let body = body.replace("CORPUS", &corpus.display().to_string());
    let path = s.write("bad.rhai", &body);
    let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q", "--max-operations", "100000"]);
    (out.status.success(), text(&out))
}

#[test]
fn script_errors_are_positioned_and_name_the_key() {
    let cases: &[(&str, &str)] = &[
        // (script, expected fragment of the error)
        ("let x = 1;\nlet y = ;\n", "bad.rhai:2:9: syntax error"),
        (
            "let a = 1;\nlet r = train(#{corpus: \"CORPUS\", unique_tokens: 5000, epochs: 1, lrr: 0.1});\n",
            "bad.rhai:2:9: train: unknown key \"lrr\" (did you mean \"lr\"?)",
        ),
        (
            "train(#{corpus: \"CORPUS\", unique_tokens: 5000, epochs: \"two\"});",
            "bad.rhai:1:1: train: key \"epochs\": invalid type: string \"two\"",
        ),
        ("train(#{corpus: \"CORPUS\", epochs: 1});", "missing required key \"unique_tokens\""),
        ("train(#{corpus: \"CORPUS\", unique_tokens: 5000, epochs: 1, model: \"huge\"});", "unknown preset \"huge\""),
        ("train(#{corpus: \"nope.jsonl\", unique_tokens: 5000, epochs: 1});", "nope.jsonl: No such file"),
        ("let i = 0;\nloop { i += 1; }\n", "operations limit"),
        ("eval(\"1 + 1\");", "bad.rhai:1:1"),
        ("print(table([1, 2]));", "table: row 0 is not a map"),
    ];
    for (body, want) in cases {
        let (ok, out) = run_script(body);
        assert!(!ok, "script should fail: {body}");
        assert!(out.contains(want), "for script\n{body}\nexpected {want:?} in:\n{out}");
        assert!(!out.contains("panicked"), "panic for script {body}:\n{out}");
    }
}

#[test]
fn bad_corpus_lines_name_file_and_line() {
    let s = Scratch::new("badcorpus");
    let good = "{\"id\": \"a\", \"text\": \"hello there world\"}\n".repeat(3);
    s.write("c.jsonl", &format!("{good}{{\"id\": \"b\", \"body\": \"no text field\"}}\n"));
    let path = s.write("s.rhai", "train(#{corpus: \"c.jsonl\", unique_tokens: 500, epochs: 1, seq_len: 8, val_tokens: 10});");
    let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("c.jsonl:4: missing string field \"text\""), "{}", text(&out));
}
