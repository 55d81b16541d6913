//! BoLT's EM loop as a study (Ruan, Band, Maddison, Hashimoto 2025, arXiv 2503.18866, §3):
//! warm-start thoughts from a generator, an M-step on the thought-augmented text judged on
//! held-out raw text, then E-steps in which the current model samples K = 4 posterior thoughts
//! per chunk, scores them and keeps one by importance resampling. Every E- and M-step is a
//! cell; the study SIGKILLed in the middle of an E-step reruns to the end and sends no
//! answered generation request again.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::*;

/// Two EM iterations on a few short documents with the `micro` model (seconds per cell).
/// E-steps decode one prompt at a time (`batch_size: 1`) so a kill lands mid-cell.
const EM: &str = r#"
let raw = "data:corpora/quotes.jsonl";
let common = #{ model: "micro", corpus: raw, unique_tokens: 4_000, val_tokens: 256, seq_len: 128, batch_size: 8,
                lr: 3e-3, evals_per_epoch: 1, seed: 1, threads: 1 };
let g = common; g.name = "warm-generator"; g.epochs = 2;
let warm = train(g);
let thoughts = generate(#{ name: "E0", generator: #{ kind: "local", run: warm }, corpus: raw,
    augmenter: #{ name: "latent_thoughts", template: "{prefix}\n{suffix}\nThoughts:", system: "", prefix_chunks: 1 },
    max_docs: 10, max_tokens: 8, seed: 0 });
let m = common; m.name = "M0"; m.synthetic = [thoughts]; m.mix_ratio = 1.0; m.epochs = 4; m.batch_size = 2;
let model = train(m);
let rows = [#{ iteration: 0, elbo: 0.0, heldout_raw_loss: model.final_val_loss }];
for it in 1..3 {
    let z = generate(#{ name: `E${it}`, generator: #{ kind: "local", run: model, batch_size: 1 }, corpus: raw,
        augmenter: #{ name: "latent_thoughts", samples: 4, prefix_chunks: 1 }, max_docs: 10, max_tokens: 12, seed: it });
    let mi = m; mi.name = `M${it}`; mi.synthetic = [z];
    model = train(mi);
    rows.push(#{ iteration: it, elbo: z.augmenter_stats.elbo_sum / z.augmenter_stats.chunks, heldout_raw_loss: model.final_val_loss,
                 requests: z.requests, sent: z.sent, cache_hits: z.cache_hits });
}
print(table(rows));
for r in rows { print(`row ${r.iteration} ${r.elbo} ${r.heldout_raw_loss}`); }
print(`E1 ${rows[1].requests} ${rows[1].sent} ${rows[1].cache_hits}`);
"#;

/// The generation cell labelled `label` under `runs`, if planned yet.
fn cell_labelled(runs: &Path, label: &str) -> Option<PathBuf> {
    let needle = format!("label: \"{label}\"");
    if !runs.exists() {
        return None;
    }
    cells(runs).into_iter().find(|d| std::fs::read_to_string(d.join("manifest.ron")).is_ok_and(|m| m.contains(&needle) && m.contains("kind: \"generate\"")))
}

/// Answers in the request cache beside `runs` (`<key>.json`; a kill may leave the temporary
/// file of an answer being written, which is not one).
fn cached_answers(runs: &Path) -> usize {
    let dir = runs.parent().unwrap().join(".dctk/requests");
    let Ok(shards) = std::fs::read_dir(dir) else { return 0 };
    let is_answer = |name: &str| name.ends_with(".json") && !name.starts_with('.');
    shards
        .map(|s| std::fs::read_dir(s.unwrap().path()).map_or(0, |f| f.filter(|e| e.as_ref().is_ok_and(|e| is_answer(&e.file_name().to_string_lossy()))).count()))
        .sum()
}

fn requests_of(cell: &Path) -> usize {
    let r = std::fs::read_to_string(cell.join("result.ron")).unwrap();
    let at = r.find("requests: ").unwrap() + "requests: ".len();
    r[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn an_em_study_killed_mid_e_step_resumes_without_asking_twice() {
    let s = Scratch::new("bolt_em");
    let script = s.write("em.rhai", EM);
    let runs = s.path().join("runs");
    let args = ["run", script.to_str().unwrap(), "--runs", "runs", "-q", "-j", "1", "--threads", "1"];

    // Run until E1 has answered a few of its requests, then SIGKILL the whole study.
    let mut child = dctk_cmd(s.path()).args(args).spawn().unwrap();
    let started = Instant::now();
    let answered_before_kill = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the study ended ({status}) before E1 was interrupted");
        }
        assert!(started.elapsed() < Duration::from_secs(240), "E1 never started");
        if let (Some(e0), Some(e1)) = (cell_labelled(&runs, "E0"), cell_labelled(&runs, "E1")) {
            if e0.join("result.ron").exists() && !e1.join("result.ron").exists() {
                let e1_answers = cached_answers(&runs) - requests_of(&e0);
                if e1_answers >= 3 {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    break cached_answers(&runs) - requests_of(&e0);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let e1 = cell_labelled(&runs, "E1").unwrap();
    assert!(!e1.join("result.ron").exists(), "E1 finished before the kill");

    // The rerun finishes; E1 asks only what was not answered before the kill.
    let out = dctk(s.path(), &args);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let e1_counts: Vec<usize> = t.lines().find_map(|l| l.strip_prefix("E1 ")).unwrap().split(' ').map(|v| v.parse().unwrap()).collect();
    let (requests, sent, hits) = (e1_counts[0], e1_counts[1], e1_counts[2]);
    assert_eq!(hits, answered_before_kill, "{t}");
    assert_eq!(sent + hits, requests, "{t}");
    // Every request of every E-step is answered exactly once in the cache.
    let total: usize = ["E0", "E1", "E2"].iter().map(|l| requests_of(&cell_labelled(&runs, l).unwrap())).sum();
    assert_eq!(cached_answers(&runs), total);

    // Per-iteration ELBO (finite, ≤ 0 up to the estimator: it is a log-likelihood bound) and held-out raw loss.
    let rows: Vec<Vec<f64>> = t.lines().filter_map(|l| l.strip_prefix("row ")).map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 3, "{t}");
    for r in &rows[1..] {
        assert!(r[1].is_finite() && r[1] < 0.0, "ELBO {} of iteration {}: {t}", r[1], r[0]);
        assert!(r[2].is_finite() && r[2] > 0.0, "{t}");
    }

    // The E-step's output: thought-augmented documents whose delimiters are single ids.
    let corpus = e1.join("corpus");
    let manifest = std::fs::read_to_string(corpus.join("manifest.ron")).unwrap();
    assert!(manifest.contains("<|START_OF_LATENT|>") && manifest.contains("<|POSTERIOR_PREFIX|>"), "{manifest}");
}
