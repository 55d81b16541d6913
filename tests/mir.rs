//! A CPU run with the MIR regularizer plugin trains with a falling loss, logs MIR's
//! auxiliary loss into metrics.jsonl and records the plugin's hash in the manifest.
#[path = "support/mod.rs"]
mod support;
use support::*;

#[test]
fn mir_run_trains_and_logs_its_auxiliary_loss() {
    let s = Scratch::new("mir");
    let corpus = repo_root().join("data/corpora/literature.jsonl");
    let script = format!(
        r#"
let r = train(#{{
    name: "mir", model: "micro", corpus: "{}",
    unique_tokens: 12000, val_tokens: 1024, epochs: 2, seq_len: 64, batch_size: 8,
    lr: 3e-3, evals_per_epoch: 1, threads: 2, seed: 1,
    regularizers: [#{{ name: "mir", settings: #{{ lambda: 0.4 }} }}],
}});
print(`final ${{r.final_val_loss}}`);
"#,
        corpus.display()
    );
    let path = s.write("mir.rhai", &script);
    let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let run = only_run(&s.path().join("runs"));
    let m = metrics(&run);
    let train: Vec<&serde_json::Value> = m.iter().filter(|r| r["kind"] == "train").collect();
    assert!(train.len() >= 20);
    for r in &train {
        let aux = r["mir/aux_loss"].as_f64().unwrap_or_else(|| panic!("no mir/aux_loss in {r}"));
        assert!(aux.is_finite() && aux > 0.0);
        // The masked pass sees less context, so its loss is not below the clean one by much.
        assert!(aux > r["loss"].as_f64().unwrap() - 1.0, "{r}");
    }
    let first = train.first().unwrap()["mir/aux_loss"].as_f64().unwrap();
    let last = train.last().unwrap()["mir/aux_loss"].as_f64().unwrap();
    assert!(last < first - 1.0, "MIR's auxiliary loss did not fall: {first} → {last}");
    let evals: Vec<f64> = m.iter().filter(|r| r["kind"] == "eval").map(|r| r["val_loss"].as_f64().unwrap()).collect();
    assert!(evals.last().unwrap() < &(evals[0] - 1.0), "validation loss did not fall: {evals:?}");
    let manifest = std::fs::read_to_string(run.join("manifest.ron")).unwrap();
    assert!(manifest.contains("name: \"mir\"") && manifest.contains("blake3:"), "{manifest}");
}

#[test]
fn bad_regularizer_settings_name_the_plugin_and_key() {
    let s = Scratch::new("mirbad");
    let corpus = repo_root().join("data/corpora/quotes.jsonl");
    for (regs, want) in [
        (r#"[#{ name: "mir", settings: #{ lamda: 0.4 } }]"#, "unknown setting `lamda`"),
        (r#"["no_such_plugin"]"#, "no_such_plugin"),
    ] {
        let script = format!(
            "train(#{{ corpus: \"{}\", unique_tokens: 5000, epochs: 1, seq_len: 32, regularizers: {regs} }});",
            corpus.display()
        );
        let path = s.write("bad.rhai", &script);
        let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q"]);
        assert!(!out.status.success());
        let t = text(&out);
        assert!(t.contains("bad.rhai:1:1: train:") && t.contains(want), "{t}");
        assert!(!t.contains("panicked"), "{t}");
    }
}
