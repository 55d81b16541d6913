//! `dctk sample` and `dctk score` on a real trained cell: the cache and the reference path
//! agree, seeds reproduce, scores are the sampled tokens' log-probabilities, an unfinished
//! (checkpointed) cell can be sampled, and bad input is named.
#[path = "support/mod.rs"]
mod support;
use support::*;

const STUDY: &str = r#"
let r = train(#{ name: "m", corpus: "data:corpora/quotes.jsonl", unique_tokens: 6_000, epochs: 2, val_tokens: 256,
                 seq_len: 32, batch_size: 4, model: "micro", threads: 1, checkpoint_every: 10 });
print(`status ${r.status}`);
"#;

fn samples(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn sample(dir: &std::path::Path, run: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["sample", run, "--threads", "1", "--json", "-p", "The best way to", "-p", "In"];
    args.extend(extra);
    let out = dctk(dir, &args);
    assert!(out.status.success(), "{}", text(&out));
    samples(&out)
}

#[test]
fn sample_and_score_a_trained_cell() {
    let s = Scratch::new("sample");
    let script = s.write("s.rhai", STUDY);
    // First only part of the run: a checkpointed cell is already a model to look at.
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q", "--stop-after-steps", "10"]);
    assert!(!out.status.success(), "{}", text(&out));
    let run = only_run(&s.path().join("runs"));
    let run = run.to_str().unwrap();
    let early = sample(s.path(), run, &["-t", "0", "--max-tokens", "12"]);
    assert_eq!(early.len(), 2);
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q"]);
    assert!(text(&out).contains("status done"), "{}", text(&out));

    // Greedy: the KV cache and recomputing the prefix give the same tokens.
    let greedy = sample(s.path(), run, &["-t", "0", "--max-tokens", "24", "--ignore-eot"]);
    let reference = sample(s.path(), run, &["-t", "0", "--max-tokens", "24", "--ignore-eot", "--no-kv-cache"]);
    for (a, b) in greedy.iter().zip(&reference) {
        assert_eq!(a["tokens"], b["tokens"]);
        assert_eq!(a["tokens"].as_array().unwrap().len(), 24);
    }
    assert_ne!(greedy[0]["tokens"], early[0]["tokens"], "the finished model is not the early checkpoint");

    // Seeded sampling reproduces; sample j of a prompt uses seed + j.
    let a = sample(s.path(), run, &["--seed", "7", "-n", "2", "--max-tokens", "16", "--ignore-eot"]);
    let b = sample(s.path(), run, &["--seed", "7", "-n", "2", "--max-tokens", "16", "--ignore-eot"]);
    assert_eq!(a, b);
    assert_eq!(a.len(), 4);
    assert_ne!(a[0]["tokens"], a[1]["tokens"]);
    assert_eq!((a[0]["seed"].as_u64(), a[1]["seed"].as_u64()), (Some(7), Some(8)));

    // Scoring the greedy text gives the log-probabilities decoding reported.
    let g = &greedy[0];
    let out = dctk(s.path(), &["score", run, "--threads", "1", "--json", "-p", "The best way to", "-c", g["text"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let scored = &samples(&out)[0];
    let decoded: Vec<f64> = g["token_logprobs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let rescored: Vec<f64> = scored["token_logprobs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    // Re-encoding the text can merge tokens differently; compare where the ids agree.
    if scored["tokens"] == g["tokens"] {
        for (x, y) in decoded.iter().zip(&rescored) {
            assert!((x - y).abs() < 1e-3, "{x} vs {y}");
        }
    }
    let sum: f64 = rescored.iter().sum();
    assert!((scored["sum_logprob"].as_f64().unwrap() - sum).abs() < 1e-6);
    assert!(sum < 0.0);

    // `dctk bench generate` runs its three sides and the server part on this cell, and
    // prints the ratios (a benchmark: what is checked is that it runs, not its numbers).
    let root = repo_root();
    let python = root.join(".dctk/hf-venv/bin/python");
    let reference = root.join("bench/hf_generate.py");
    let out = dctk(
        s.path(),
        &[
            "bench", "generate", "--run", run, "--rounds", "1", "--batch", "1,2", "--prompt-tokens", "4", "--new-tokens", "4", "--threads", "1",
            "--device", "cpu", "--python", python.to_str().unwrap(), "--reference", reference.to_str().unwrap(), "--server-clients", "1,2",
            "--server-requests", "1",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for expect in ["batch 1: median KV cache speed-up", "batch 2: median KV cache speed-up", "dctk / transformers", "dctk serve (4 tokens per request"] {
        assert!(t.contains(expect), "{expect:?} missing from:\n{t}");
    }
    assert!(!t.contains("not measured"), "the transformers side ran: {t}");

    // Bad input is named.
    for (args, expect) in [
        (vec!["sample", run, "--top-p", "1.5"], "--top-p"),
        (vec!["sample", run, "-t", "-1"], "temperature"),
        (vec!["sample", run, "-n", "0"], "-n"),
        (vec!["sample", "runs/0000000000000000"], "not a dctk run directory"),
        (vec!["score", run, "-c", ""], "--continuation"),
        (vec!["bench", "generate", "--run", run, "--prompt-tokens", "60", "--new-tokens", "60", "--no-reference"], "exceed the model's context"),
    ] {
        let out = dctk(s.path(), &args);
        assert!(!out.status.success() && text(&out).contains(expect), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
}
