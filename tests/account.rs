//! Training on real + synthetic streams end to end: a study mixes two synthetic corpora
//! (raw `.jsonl` ingested with the real corpus's GPT-2 tokenizer, given under `synthetic`, so
//! synthetic in the run) into the bundled quotes corpus at mix_ratio 0.75, and the counts add
//! up exactly (real + synthetic = steps × batch × seq_len, per-domain sums, the realised
//! ratio within one sequence of the asked one, the streams split by size); a mix_ratio 1.0
//! run trains on the synthetic stream only and still reports the real domain's held-out
//! loss; `data_efficiency` over real-only baselines gives the multiplier the library computes
//! from the same numbers; a tokenizer mismatch and too few baseline runs are clear errors.
use std::path::Path;

#[path = "support/mod.rs"]
mod support;
use support::*;

const STUDY: &str = r#"
let common = #{ model: "micro", corpus: "data:corpora/quotes.jsonl", val_tokens: 256, seq_len: 32, batch_size: 8,
                lr: 3e-3, seed: 1, threads: 1, evals_per_epoch: 1 };
let mixed = common;
mixed.name = "mixed";
mixed.unique_tokens = 2_000;
mixed.epochs = 2;
mixed.synthetic = ["a/gen.jsonl", "b/gen.jsonl"];
mixed.mix_ratio = 0.75;
let only = common;
only.name = "synthetic-only";
only.unique_tokens = 2_000;
only.epochs = 1;
only.synthetic = ["a/gen.jsonl"];
only.mix_ratio = 1.0;
let runs = [train(mixed), train(only)];
let baseline = [];
for u in [1_000, 2_000, 4_000, 8_000] {
    let b = common;
    b.name = `base-${u}`;
    b.unique_tokens = u;
    b.epochs = 2;
    baseline.push(train(b));
}
let m = runs[0];
print(`mixed ${m.real_tokens_seen} ${m.synthetic_tokens_seen} ${m.mix_ratio_realized} ${m.real_tokens_equivalent}`);
let e = data_efficiency(#{ baseline: baseline, method: m, bootstrap: 50, seed: 3 });
print(`efficiency ${e.multiplier} ${e.d_method} ${e.d_equivalent} ${e.bootstrap_used}`);
print(`reading ${e.reading}`);
print(`params ${e.fit.params.A} ${e.fit.params.B} ${e.fit.params.C}`);
try { data_efficiency(#{ baseline: [baseline[0], baseline[1]], method: m }); } catch (err) { print(`few: ${err}`); }
try { data_efficiency(#{ baseline: [baseline[0], baseline[1], m], method: m }); } catch (err) { print(`synthetic baseline: ${err}`); }
ingest(#{ out: "bpe", inputs: ["a/gen.jsonl"], tokenizer: "bpe:300" });
let other = mixed;
other.synthetic = ["bpe"];
try { train(other); } catch (err) { print(`tokenizer: ${err}`); }
"#;

/// `n` synthetic-looking documents: bundled quotes from line `from`, "rephrased".
fn synthetic_jsonl(from: usize, n: usize) -> String {
    let quotes = std::fs::read_to_string(repo_root().join("data/corpora/quotes.jsonl")).unwrap();
    quotes
        .lines()
        .skip(from)
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::json!({"text": format!("In other words: {}", v["text"].as_str().unwrap())}).to_string() + "\n"
        })
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The finished cell whose manifest's label is `label`: (manifest.json, result.json).
fn cell(runs: &Path, label: &str) -> (serde_json::Value, serde_json::Value) {
    for d in cells(runs) {
        if let Ok(text) = std::fs::read_to_string(d.join("manifest.json")) {
            let m: serde_json::Value = serde_json::from_str(&text).unwrap();
            if m["label"] == label {
                return (m, json(&d.join("result.json")));
            }
        }
    }
    panic!("no cell labelled {label} under {}", runs.display())
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no line {prefix:?} in:\n{out}"))
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn synthetic_streams_account_exactly_and_data_efficiency_runs_from_a_script() {
    let s = Scratch::new("account");
    std::fs::create_dir_all(s.path().join("a")).unwrap();
    std::fs::create_dir_all(s.path().join("b")).unwrap();
    s.write("a/gen.jsonl", &synthetic_jsonl(5_000, 60));
    s.write("b/gen.jsonl", &synthetic_jsonl(6_000, 90));
    let script = s.write("account.rhai", STUDY);
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q", "-j", "2", "--threads", "1"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let runs = s.path().join("runs");

    // --- mix_ratio 0.75 over two streams of different sizes.
    let (manifest, r) = cell(&runs, "mixed");
    let acc = &r["accounting"];
    let (steps, batch, seq) = (u(&r["steps"]), u(&acc["batch_size"]), u(&acc["seq_len"]));
    let total = steps * batch * seq;
    let domains = acc["domains"].as_array().unwrap();
    let names: Vec<&str> = domains.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["quotes", "gen", "gen.2"], "two streams named gen: the second is renamed");
    let served = |d: &serde_json::Value| u(&d["tokens_served"]);
    let is_synth = |d: &serde_json::Value| d["kind"].get("Synthetic").is_some();
    assert!(!is_synth(&domains[0]) && is_synth(&domains[1]) && is_synth(&domains[2]), "{domains:?}");
    assert_eq!(u(&r["real_tokens_seen"]) + u(&r["synthetic_tokens_seen"]), total);
    assert_eq!(u(&r["train_tokens"]), total);
    assert_eq!(domains.iter().map(served).sum::<u64>(), total);
    assert_eq!(served(&domains[0]), u(&r["real_tokens_seen"]));
    assert_eq!(served(&domains[1]) + served(&domains[2]), u(&r["synthetic_tokens_seen"]));
    for d in domains {
        assert_eq!(served(d), u(&d["sequences_served"]) * seq, "{d}");
    }
    // The step count: the real budget's epoch tokens × epochs / (1 − mix_ratio).
    let real_epoch = u(&domains[0]["epoch_tokens"]);
    assert_eq!(u(&domains[0]["unique_tokens"]), 2_000);
    assert_eq!(steps, (real_epoch as f64 * 2.0 * 4.0 / (batch * seq) as f64).floor() as u64);
    // Realised vs asked: within one sequence, in total and per stream (split by size).
    let sequences = (steps * batch) as f64;
    let synth_seqs = (u(&domains[1]["sequences_served"]) + u(&domains[2]["sequences_served"])) as f64;
    assert!((synth_seqs - 0.75 * sequences).abs() <= 1.0, "{synth_seqs} of {sequences}");
    assert_eq!(f(&r["mix_ratio"]), 0.75);
    assert!((f(&r["mix_ratio_realized"]) - 0.75).abs() <= 1.0 / sequences, "{}", r["mix_ratio_realized"]);
    let (ua, ub) = (u(&domains[1]["unique_tokens"]), u(&domains[2]["unique_tokens"]));
    assert!(ua < ub, "the streams differ in size: {ua} vs {ub}");
    let want_a = 0.75 * sequences * ua as f64 / (ua + ub) as f64;
    assert!((u(&domains[1]["sequences_served"]) as f64 - want_a).abs() <= 1.0, "stream a: {} vs {want_a}", domains[1]["sequences_served"]);
    // Per-stream and total synthetic epochs; Kim et al.'s real-token equivalent.
    let epochs = |d: &serde_json::Value| served(d) as f64 / u(&d["epoch_tokens"]) as f64;
    assert!((f(&r["synthetic_epochs_by_stream"]["gen.2"]) - epochs(&domains[2])).abs() < 1e-12);
    let synth_epoch_tokens = u(&domains[1]["epoch_tokens"]) + u(&domains[2]["epoch_tokens"]);
    assert!((f(&r["synthetic_epochs"]) - u(&r["synthetic_tokens_seen"]) as f64 / synth_epoch_tokens as f64).abs() < 1e-12);
    let kim = 2_000.0 * (epochs(&domains[0]) + total as f64 / synth_epoch_tokens as f64);
    assert!((f(&r["real_tokens_equivalent"]) - kim).abs() < 1e-6 * kim, "{} vs {kim}", r["real_tokens_equivalent"]);
    // Evaluated on the real domain only; the manifest carries the same accounting.
    let by_domain: Vec<&String> = r["final_val_loss_by_domain"].as_object().unwrap().keys().collect();
    assert_eq!(by_domain, ["quotes"]);
    assert_eq!(manifest["real_synthetic"]["synthetic_tokens_seen"], r["synthetic_tokens_seen"]);
    assert_eq!(manifest["synthetic_paths"].as_array().unwrap().len(), 2);
    let m = line(&printed, "mixed ");
    assert!(m.starts_with(&format!("{} {} ", r["real_tokens_seen"], r["synthetic_tokens_seen"])), "{m}");

    // --- mix_ratio 1.0: the real domain is evaluation-only, `epochs` counts synthetic passes.
    let (_, r1) = cell(&runs, "synthetic-only");
    let d1 = r1["accounting"]["domains"].as_array().unwrap();
    assert_eq!(u(&r1["real_tokens_seen"]), 0);
    assert_eq!(served(&d1[0]), 0);
    assert_eq!(u(&r1["synthetic_tokens_seen"]), u(&r1["steps"]) * batch * seq);
    assert_eq!(u(&r1["steps"]), u(&d1[1]["epoch_tokens"]) / (batch * seq), "one pass over the synthetic stream");
    let curve = r1["curve"].as_array().unwrap();
    assert!(curve.len() >= 2 && curve.iter().all(|p| f(&p["val_loss_by_domain"]["quotes"]).is_finite()), "{curve:?}");
    assert!(f(&r1["final_val_loss"]).is_finite());

    // --- data_efficiency: the multiplier the library gives for the same runs' numbers.
    let (d, loss): (Vec<f64>, Vec<f64>) = [1_000, 2_000, 4_000, 8_000]
        .iter()
        .map(|b| {
            let (_, rb) = cell(&runs, &format!("base-{b}"));
            assert_eq!(u(&rb["synthetic_tokens_seen"]), 0);
            (f(&rb["real_unique_tokens"]), f(&rb["final_val_loss"]))
        })
        .unzip();
    assert_eq!(d, [1_000.0, 2_000.0, 4_000.0, 8_000.0]);
    let lib = dctk_laws::data_efficiency(Arc::new(dctk_laws::laws::PowerLaw), &d, &loss, 2_000.0, f(&r["final_val_loss"]), None).unwrap();
    let eff: Vec<&str> = line(&printed, "efficiency ").split(' ').collect();
    let multiplier: f64 = eff[0].parse().unwrap();
    if lib.multiplier.is_finite() {
        assert!((multiplier - lib.multiplier).abs() <= 1e-9 * lib.multiplier, "{multiplier} vs {}", lib.multiplier);
    } else {
        assert!(multiplier.is_infinite(), "{printed}");
    }
    assert_eq!(eff[1].parse::<f64>().unwrap(), 2_000.0, "D₀ is the method's real unique tokens");
    assert!(eff[3].parse::<u64>().unwrap() > 0, "bootstrap refits: {printed}");
    assert!(line(&printed, "reading ").contains("our reading"), "{printed}");
    assert!(line(&printed, "few: ").contains("2 runs for law \"power_law\" with 3 parameters"), "{printed}");
    assert!(line(&printed, "synthetic baseline: ").contains("trained on synthetic tokens"), "{printed}");
    let tok = line(&printed, "tokenizer: ");
    assert!(tok.contains("share one tokenizer") && tok.contains("bpe") && tok.contains("quotes"), "{tok}");
}

use std::sync::Arc;

/// `synthetic: [gen, gen]`: a `generate` handle (a local micro model's rephrases) is a
/// synthetic stream; the same corpus twice gives two streams, the second renamed.
const WITH_GENERATE: &str = r#"
let src = train(#{ name: "src", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 1,
                   val_tokens: 256, seq_len: 32, batch_size: 8, lr: 3e-3, seed: 1, threads: 1 });
let gen = generate(#{ name: "gen", generator: #{ kind: "local", run: src, device: "cpu" }, template: "Rephrase: {document}\nRephrased:",
                      template_name: "rephrase", n_per_doc: 2, max_docs: 4, max_tokens: 8, temperature: 1.0, seed: 5,
                      val_fraction: 0.2 });
let m = train(#{ name: "with-gen", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000, epochs: 1,
                 synthetic: [gen, gen], mix_ratio: 0.5, val_tokens: 256, seq_len: 32, batch_size: 8, lr: 3e-3, seed: 1,
                 threads: 1 });
print(`streams ${m.synthetic_epochs_by_stream.keys()}`);
print(`seen ${m.real_tokens_seen} ${m.synthetic_tokens_seen} ${m.train_tokens}`);
"#;

#[test]
fn a_generate_handle_is_a_synthetic_stream() {
    let s = Scratch::new("account-generate");
    let script = s.write("g.rhai", WITH_GENERATE);
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q", "--threads", "1"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let streams = line(&printed, "streams ");
    assert!(streams.contains("generated") && streams.contains("generated.2"), "{streams}");
    let seen: Vec<u64> = line(&printed, "seen ").split(' ').map(|x| x.parse().unwrap()).collect();
    assert_eq!(seen[0] + seen[1], seen[2]);
    assert!(seen[0] > 0 && seen[1] > 0, "{printed}");
    let (manifest, _) = cell(&s.path().join("runs"), "with-gen");
    let dirs: Vec<&str> = manifest["data"]["domains"].as_array().unwrap().iter().filter_map(|d| d["corpus_dir"].as_str()).collect();
    assert_eq!(dirs.len(), 2);
    assert_eq!(dirs[0], dirs[1], "one generated corpus, given twice");
}
