//! A CPU run killed mid-way (SIGKILL) and resumed produces the same losses, step for
//! step, as a run that never stopped; and its validation loss falls.
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::*;

fn study(corpus: &str) -> String {
    format!(
        r#"
let r = train(#{{
    name: "resume", model: "micro", corpus: "{corpus}",
    unique_tokens: 24000, val_tokens: 4000, epochs: 3,
    seq_len: 64, batch_size: 8, micro_batch: 4, lr: 3e-3, dropout: 0.1,
    evals_per_epoch: 2, checkpoint_every: 4, threads: 2, seed: 7,
}});
print(`final ${{r.final_val_loss}}`);
"#
    )
}

/// (step, loss) of every training record, and (step, val_loss) of every evaluation.
fn losses(run_dir: &std::path::Path) -> (Vec<(u64, f64)>, Vec<(u64, f64)>) {
    let m = metrics(run_dir);
    let pick = |kind: &str, key: &str| -> Vec<(u64, f64)> {
        m.iter()
            .filter(|r| r["kind"] == kind)
            .map(|r| (r["step"].as_u64().unwrap(), r[key].as_f64().unwrap()))
            .collect()
    };
    (pick("train", "loss"), pick("eval", "val_loss"))
}

#[test]
fn killed_and_resumed_run_matches_uninterrupted_run() {
    let s = Scratch::new("resume");
    let corpus = repo_root().join("data/corpora/literature.jsonl");
    let script = s.write("study.rhai", &study(&corpus.display().to_string()));
    let script = script.to_str().unwrap();

    // The reference: one uninterrupted run.
    let out = dctk(s.path(), &["run", script, "--runs", "straight", "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let straight = only_run(&s.path().join("straight"));
    let (train_a, eval_a) = losses(&straight);
    assert!(train_a.len() > 20, "too few steps to test resume: {}", train_a.len());

    // The same study, SIGKILLed after its second checkpoint (mid-way), then rerun.
    let mut child = dctk_cmd(s.path()).args(["run", script, "--runs", "killed", "-q"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed_at = loop {
        let state = std::fs::read_dir(s.path().join("killed"))
            .ok()
            .and_then(|d| d.flatten().find(|e| e.file_name() != "studies"))
            .and_then(|e| std::fs::read_to_string(e.path().join("ckpt/state.ron")).ok());
        if let Some(st) = state {
            if !st.contains("step: 4,") {
                break st;
            }
        }
        assert!(Instant::now() < deadline, "the run made no second checkpoint in time");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = only_run(&s.path().join("killed"));
    assert_ne!(std::fs::read_to_string(killed.join("status")).unwrap().trim(), "done", "killed too late: {killed_at}");

    let out = dctk(s.path(), &["run", script, "--runs", "killed", "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let result = std::fs::read_to_string(killed.join("result.ron")).unwrap();
    assert!(result.contains("resumed_from_step: Some("), "the second process did not resume:\n{result}");
    let (train_b, eval_b) = losses(&killed);
    assert_eq!(train_a, train_b, "training losses differ after resume");
    assert_eq!(eval_a, eval_b, "validation losses differ after resume");

    // The loss falls: last evaluation clearly below the one at step 0.
    let (first, last) = (eval_a.first().unwrap().1, eval_a.last().unwrap().1);
    assert!(last < first - 1.0, "validation loss did not fall: {first} → {last}");

    // A third run reuses the finished result without training.
    let out = dctk(s.path(), &["run", script, "--runs", "killed", "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(losses(&killed).0, train_a, "a finished run must not be retrained");
}

#[test]
fn stop_after_steps_leaves_a_resumable_run() {
    let s = Scratch::new("stop");
    let corpus = repo_root().join("data/corpora/quotes.jsonl");
    let script = s.write("study.rhai", &study(&corpus.display().to_string()).replace("epochs: 3", "epochs: 1"));
    let script = script.to_str().unwrap();
    let out = dctk(s.path(), &["run", script, "-q", "--stop-after-steps", "6"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("run the study again to resume"), "{}", text(&out));
    let run = only_run(&s.path().join("runs"));
    assert_eq!(std::fs::read_to_string(run.join("status")).unwrap().trim(), "running");
    let out = dctk(s.path(), &["run", script, "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(run.join("status")).unwrap().trim(), "done");
    // Checkpoints were at steps 4 (and 8); the resumed run restarted from step 4.
    assert!(std::fs::read_to_string(run.join("result.ron")).unwrap().contains("resumed_from_step: Some(4)"));
}
