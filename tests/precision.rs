//! bf16 training (bf16 weights and activations, fp32 master weights and moments in
//! dctk's AdamW) runs and learns. On the CPU here; on CUDA it is the default precision.
#[path = "support/mod.rs"]
mod support;
use support::*;

#[test]
fn bf16_run_trains_with_falling_loss() {
    let s = Scratch::new("bf16");
    let corpus = repo_root().join("data/corpora/literature.jsonl");
    let script = format!(
        r#"let r = train(#{{ model: "micro", corpus: "{}", unique_tokens: 8000, val_tokens: 1024,
            epochs: 2, seq_len: 64, batch_size: 8, precision: "bf16", evals_per_epoch: 1, threads: 2 }});
           print(`${{r.precision}} ${{r.curve[0].val_loss}} ${{r.final_val_loss}}`);"#,
        corpus.display()
    );
    let path = s.write("bf16.rhai", &script);
    let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    let fields: Vec<&str> = t.lines().next().unwrap_or("").split(' ').collect();
    assert_eq!(fields[0], "bf16");
    let (first, last): (f64, f64) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    assert!(last < first - 2.0, "bf16 validation loss did not fall: {first} → {last}");
}
