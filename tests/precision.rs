//! bf16 training (bf16 weights and activations, fp32 master weights and moments in
//! dctk's AdamW) runs and learns. On the CPU here; on CUDA it is the default precision.
#[path = "support/mod.rs"]
mod support;
use support::*;

#[test]
fn bf16_run_trains_with_falling_loss() {
    let s = Scratch::new("bf16");
    // A 512-id BPE vocabulary learned from the text: libtorch's CPU bf16 matmul is slow where the
    // CPU lacks bf16 instructions (4.5 s a step through GPT-2's 50,257-id head on 2 AMD cores),
    // and the head is what dominates; the precision path under test is the same.
    let corpus = repo_root().join("data/corpora/literature.jsonl");
    let out = dctk(s.path(), &["data", "ingest", corpus.to_str().unwrap(), "--out", "c", "--tokenizer", "bpe:512"]);
    assert!(out.status.success(), "{}", text(&out));
    let script = r#"let r = train(#{ model: "micro", corpus: "c", unique_tokens: 8000, val_tokens: 1024,
            epochs: 2, seq_len: 64, batch_size: 8, precision: "bf16", evals_per_epoch: 1, threads: 2 });
           print(`${r.precision} ${r.curve[0].val_loss} ${r.final_val_loss}`);"#;
    let path = s.write("bf16.rhai", script);
    let out = dctk(s.path(), &["run", path.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    let fields: Vec<&str> = t.lines().next().unwrap_or("").split(' ').collect();
    assert_eq!(fields[0], "bf16", "{t}");
    let (first, last): (f64, f64) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    // From about ln 512 = 6.2 nats at the first evaluation.
    assert!(last < first - LEARNED_NATS, "bf16 validation loss did not fall by {LEARNED_NATS} nats: {first} → {last} ({t})");
}

const LEARNED_NATS: f64 = 1.0;
