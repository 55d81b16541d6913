//! The data pipeline end to end through the binary: `dctk data ingest` (byte-identical when
//! repeated, and the same from a script's `ingest(#{...})`), mixture runs whose accounting adds
//! up exactly, per-domain validation losses, document-masked attention, and exact resume of a
//! mixture (with an epoch limit and a proportion schedule).
//!
//! The corpora are small synthetic JSONL files written by the test, so ingest takes well under
//! a second and the `micro` model trains a few dozen steps of 4 × 32 tokens.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[path = "support/mod.rs"]
mod support;
use support::*;

/// Two domains, `apples.jsonl` and `bolts.jsonl`, of short distinct documents.
fn write_corpus(s: &Scratch) -> PathBuf {
    let dir = s.path().join("raw");
    std::fs::create_dir_all(&dir).unwrap();
    let doc = |topic: &str, i: usize| {
        format!(
            "{{\"id\": \"{topic}{i}\", \"text\": \"Note {i} on {topic}: the {topic} of row {} were counted {} times, and {} of them were kept for the {} season.\"}}\n",
            i * 7 % 13,
            i % 5 + 2,
            i * 3 % 11,
            ["spring", "summer", "autumn", "winter"][i % 4]
        )
    };
    let a: String = (0..400).map(|i| doc("apples", i)).collect();
    let b: String = (0..400).map(|i| doc("bolts", i)).collect();
    std::fs::write(dir.join("apples.jsonl"), a).unwrap();
    std::fs::write(dir.join("bolts.jsonl"), b).unwrap();
    dir
}

/// `key=value` pairs the study scripts print on lines starting with `@`.
fn values(out: &str) -> BTreeMap<String, f64> {
    out.lines()
        .filter_map(|l| l.strip_prefix('@'))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse::<f64>().unwrap_or_else(|_| panic!("{k}={v} is not a number"))))
        .collect()
}

fn run_study(s: &Scratch, file: &str, body: &str, runs: &str, extra: &[&str]) -> (bool, String) {
    let script = s.write(file, body);
    let mut args = vec!["run", script.to_str().unwrap(), "--runs", runs, "-q"];
    args.extend_from_slice(extra);
    let out = dctk(s.path(), &args);
    (out.status.success(), text(&out))
}

const MIX: &str = r#"
let r = train(#{
    name: "mix", model: "micro", corpus: "raw",
    domains: #{ apples: #{ weight: 3.0 }, bolts: #{ weight: 1.0 } },
    unique_tokens: 2000, val_tokens: 200, val_fraction: 0.1, epochs: 2,
    seq_len: 32, batch_size: 4, lr: 3e-3, evals_per_epoch: 1, threads: 2, seed: 3,
    cross_doc_attention: CROSS,
});
let a = r.accounting.domains[0];
let b = r.accounting.domains[1];
print(`@steps=${r.steps} served=${r.accounting.tokens_served} train_tokens=${r.train_tokens}`);
print(`@a_name_ok=${if a.name == "apples" { 1 } else { 0 }} a_unique=${a.unique_tokens} a_served=${a.tokens_served} a_seqs=${a.sequences_served} a_epochs=${a.realized_epochs} a_epoch_tokens=${a.epoch_tokens}`);
print(`@b_unique=${b.unique_tokens} b_served=${b.tokens_served} b_seqs=${b.sequences_served} b_epochs=${b.realized_epochs} b_epoch_tokens=${b.epoch_tokens}`);
print(`@val=${r.final_val_loss} val_a=${r.final_val_loss_by_domain.apples} val_b=${r.final_val_loss_by_domain.bolts}`);
print(`@val0=${r.curve[0].val_loss}`);
"#;

#[test]
fn mixture_run_accounts_for_every_token_by_domain() {
    let s = Scratch::new("mix");
    write_corpus(&s);
    let (ok, out) = run_study(&s, "mix.rhai", &MIX.replace("CROSS", "true"), "runs", &[]);
    assert!(ok, "{out}");
    let v = values(&out);
    let (steps, served) = (v["steps"], v["served"]);
    // An epoch is one pass as served (the budget's 2,000 tokens + one separator per
    // document): floor(epoch_tokens × 2 / (4 × 32)) steps, at least the 31 of the
    // separator-free count; every token of them is a domain's.
    let epoch_tokens = v["a_epoch_tokens"] + v["b_epoch_tokens"];
    assert!(epoch_tokens > 2000.0, "{out}");
    assert_eq!(steps, (epoch_tokens * 2.0 / 128.0).floor());
    assert!(steps >= 31.0);
    assert_eq!(served, steps * 4.0 * 32.0);
    assert_eq!(v["train_tokens"], served);
    assert_eq!(v["a_served"] + v["b_served"], served, "{out}");
    assert_eq!(v["a_name_ok"], 1.0);
    // The budget is split 3:1 by weight, exactly.
    assert_eq!((v["a_unique"], v["b_unique"]), (1500.0, 500.0));
    // Sequences follow the weights to within one row.
    let rows = steps * 4.0;
    assert!((v["a_seqs"] - 0.75 * rows).abs() <= 1.0, "{out}");
    assert_eq!(v["a_seqs"] + v["b_seqs"], rows);
    // Realized epochs are tokens served over one epoch's tokens (budget + separators).
    for d in ["a", "b"] {
        let want = v[&format!("{d}_served")] / v[&format!("{d}_epoch_tokens")];
        assert!((v[&format!("{d}_epochs")] - want).abs() < 1e-9, "{d}: {out}");
        assert!(v[&format!("{d}_epochs")] > 1.5, "{d} should have been repeated: {out}");
    }
    // Overall validation loss is the token-weighted mean of the two domains (equal val tokens).
    assert!((v["val"] - (v["val_a"] + v["val_b"]) / 2.0).abs() < 1e-9, "{out}");

    // The run's files say the same: per-domain eval records, accounting in manifest and result.
    let run = only_run(&s.path().join("runs"));
    let evals: Vec<serde_json::Value> = metrics(&run).into_iter().filter(|r| r["kind"] == "eval").collect();
    assert!(evals.len() >= 2);
    for e in &evals {
        let by = e["val_loss_by_domain"].as_object().expect("val_loss_by_domain");
        assert_eq!(by.keys().collect::<Vec<_>>(), vec!["apples", "bolts"]);
    }
    for f in ["manifest.ron", "result.ron"] {
        let t = std::fs::read_to_string(run.join(f)).unwrap();
        assert!(t.contains("realized_epochs") && t.contains(&format!("tokens_served: {served}")), "{f}:\n{t}");
    }
    // The raw input was ingested once, beside the runs root, and is reused.
    let cache: Vec<_> = std::fs::read_dir(s.path().join(".dctk/corpora")).unwrap().collect();
    assert_eq!(cache.len(), 1);

    // Unknown domains are errors that list the corpus's domains.
    let bad = MIX.replace("CROSS", "true").replace("bolts: #{ weight: 1.0 }", "bolt: #{ weight: 1.0 }");
    let (ok, out) = run_study(&s, "bad.rhai", &bad, "runs", &[]);
    assert!(!ok);
    assert!(out.contains("unknown domain \"bolt\"; the corpus has: apples, bolts"), "{out}");
}

#[test]
fn document_masked_attention_trains_and_changes_the_losses() {
    let s = Scratch::new("mask");
    write_corpus(&s);
    let short = |cross: &str| MIX.replace("CROSS", cross).replace("epochs: 2", "epochs: 0.5");
    let (ok, masked) = run_study(&s, "masked.rhai", &short("false"), "runs", &[]);
    assert!(ok, "{masked}");
    let (ok, open) = run_study(&s, "open.rhai", &short("true"), "runs", &[]);
    assert!(ok, "{open}");
    let (m, o) = (values(&masked), values(&open));
    assert!(m["val"].is_finite() && m["val"] < m["val0"] - 0.5, "masked run did not learn: {masked}");
    // Same token stream, same initial weights: only the mask differs, and it matters
    // (every 32-token row of these ~35-token documents crosses a boundary).
    assert_eq!((m["served"], m["a_served"]), (o["served"], o["a_served"]));
    assert_ne!(m["val0"], o["val0"], "the document mask had no effect on validation");
    assert_ne!(m["val"], o["val"], "the document mask had no effect on training");
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn data_ingest_is_byte_identical_from_cli_and_script() {
    let s = Scratch::new("ingest");
    write_corpus(&s);
    // Absolute paths: the manifest records the input paths as given, and the script below
    // resolves its relative ones against its directory.
    let apples = s.path().join("raw/apples.jsonl").display().to_string();
    let bolts = format!("bolts={}", s.path().join("raw/bolts.jsonl").display());
    let ingest = |out: &str, threads: &str| {
        let o = dctk(
            s.path(),
            &["data", "ingest", &apples, "--domain", &bolts, "--out", out, "--threads", threads, "--val-fraction", "0.1"],
        );
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    let report = ingest("c1", "1");
    assert!(report.contains("apples") && report.contains("bolts") && report.contains("tokens"), "{report}");
    ingest("c2", "2");
    let (t1, t2) = (tree(&s.path().join("c1")), tree(&s.path().join("c2")));
    assert!(t1.keys().any(|p| p.ends_with("manifest.ron")) && t1.len() >= 5, "{:?}", t1.keys());
    assert_eq!(t1, t2, "two ingests of the same input differ");

    // A second ingest into an existing corpus refuses, naming the directory.
    let o = dctk(s.path(), &["data", "ingest", "raw/apples.jsonl", "--out", "c1"]);
    assert!(!o.status.success() && text(&o).contains("c1: output already exists"), "{}", text(&o));
    let o = dctk(s.path(), &["data", "verify", "c1"]);
    assert!(o.status.success() && text(&o).contains("ok"), "{}", text(&o));

    // The script function writes the same bytes and returns the summary; a run trains on it.
    let script = r#"
let m = ingest(#{ out: "c3", inputs: ["raw/apples.jsonl"], domains: [#{ name: "bolts", paths: ["raw/bolts.jsonl"] }], val_fraction: 0.1 });
print(`@domains=${m.domains.len()} tokens=${m.tokens} apples_train=${m.domains[0].train_tokens}`);
let r = train(#{ model: "micro", corpus: "c3", unique_tokens: 600, val_tokens: 100, epochs: 1,
    seq_len: 32, batch_size: 4, threads: 2, domains: #{ apples: #{} } });
print(`@steps=${r.steps} n_domains=${r.accounting.domains.len()}`);
"#;
    let (ok, out) = run_study(&s, "ingest.rhai", script, "runs", &[]);
    assert!(ok, "{out}");
    let v = values(&out);
    assert_eq!(v["domains"], 2.0);
    assert!(v["apples_train"] > 1000.0, "{out}");
    assert_eq!((v["steps"], v["n_domains"]), (4.0, 1.0), "{out}");
    assert_eq!(tree(&s.path().join("c3")), t1, "ingest(#{{...}}) differs from dctk data ingest");
    // The corpus was used as is: nothing was ingested for the run.
    assert!(!s.path().join(".dctk").exists());

    // Bad input names the file and line.
    s.write("broken.jsonl", "{\"text\": \"fine\"}\n{\"text\": \n");
    let o = dctk(s.path(), &["data", "ingest", "broken.jsonl", "--out", "c4"]);
    assert!(!o.status.success() && text(&o).contains("broken.jsonl:2: malformed JSON"), "{}", text(&o));
    assert!(!s.path().join("c4").exists(), "a failed ingest left its output behind");
}

const RESUMABLE: &str = r#"
let r = train(#{
    name: "mixres", model: "micro", corpus: "raw",
    domains: #{ apples: #{ weight: 1.0 }, bolts: #{ weight: 1.0, epochs_limit: 1 } },
    schedule_mix: [ #{ step: 0, weights: #{ apples: 1.0, bolts: 3.0 } }, #{ step: 12, weights: #{ apples: 3.0, bolts: 1.0 } } ],
    unique_tokens: 1200, val_tokens: 100, val_fraction: 0.1, epochs: 2, dropout: 0.1,
    seq_len: 32, batch_size: 4, micro_batch: 2, lr: 3e-3, eval_every: 5, checkpoint_every: 3, threads: 2, seed: 11,
});
print(`@steps=${r.steps} a_served=${r.accounting.domains[0].tokens_served} b_served=${r.accounting.domains[1].tokens_served} b_exhausted=${if r.accounting.domains[1].exhausted { 1 } else { 0 }}`);
print(`@epoch_tokens=${r.accounting.domains[0].epoch_tokens + r.accounting.domains[1].epoch_tokens}`);
"#;

fn curve(run: &Path) -> Vec<(String, u64, String)> {
    metrics(run)
        .iter()
        .map(|r| {
            let v = if r["kind"] == "train" { r["loss"].to_string() } else { format!("{}|{}", r["val_loss"], r["val_loss_by_domain"]) };
            (r["kind"].as_str().unwrap().to_string(), r["step"].as_u64().unwrap(), v)
        })
        .collect()
}

#[test]
fn resumed_mixture_run_matches_the_uninterrupted_one() {
    let s = Scratch::new("mixres");
    write_corpus(&s);
    let (ok, straight) = run_study(&s, "r.rhai", RESUMABLE, "straight", &[]);
    assert!(ok, "{straight}");
    let (ok, out) = run_study(&s, "r.rhai", RESUMABLE, "stopped", &["--stop-after-steps", "7"]);
    assert!(!ok && out.contains("run the study again to resume"), "{out}");
    let (ok, resumed) = run_study(&s, "r.rhai", RESUMABLE, "stopped", &[]);
    assert!(ok, "{resumed}");
    let run = only_run(&s.path().join("stopped"));
    let result = std::fs::read_to_string(run.join("result.ron")).unwrap();
    assert!(result.contains("resumed_from_step: Some(6)"), "{result}");
    let (a, b) = (values(&straight), values(&resumed));
    assert_eq!(a, b, "accounting differs after resume");
    // floor(epoch_tokens × 2 / 128) steps (epoch_tokens: the 1,200-token budget + one
    // separator per document); bolts (600 unique tokens) hits its one-epoch limit.
    let steps = (a["epoch_tokens"] * 2.0 / 128.0).floor();
    assert!(a["epoch_tokens"] > 1200.0 && steps >= 18.0, "{straight}");
    assert_eq!(a["steps"], steps);
    assert_eq!(a["b_exhausted"], 1.0, "{straight}");
    assert_eq!(a["a_served"] + a["b_served"], steps * 128.0);
    let straight_curve = curve(&only_run(&s.path().join("straight")));
    assert!(straight_curve.len() > 18);
    assert_eq!(straight_curve, curve(&run), "losses differ after resume");
}

/// The README's data example with every default: `dctk data ingest data/corpora --out
/// corpora/bundled`, then `train` on it. The held-out fraction is one default everywhere (CLI
/// ingest, a script's `ingest()`, `train`'s automatic ingest), so the corpus holds the
/// held-out tokens `train`'s default `val_tokens` asks for.
#[test]
fn readme_data_flow_works_with_default_settings() {
    let s = Scratch::new("readme-data");
    let bundled = repo_root().join("data/corpora");
    let o = dctk(s.path(), &["data", "ingest", bundled.to_str().unwrap(), "--out", "corpora/bundled"]);
    assert!(o.status.success(), "{}", text(&o));
    let study = r#"
let m = ingest(#{ out: "corpora/script", inputs: ["data:corpora"] });
let r = train(#{ model: "micro", corpus: "corpora/bundled", unique_tokens: 20_000, epochs: 1, threads: 2 });
print(`@steps=${r.steps} domains=${r.accounting.domains.len()}`);
"#;
    let (ok, out) = run_study(&s, "readme.rhai", study, "runs", &[]);
    assert!(ok, "{out}");
    let v = values(&out);
    assert_eq!((v["steps"], v["domains"]), (4.0, 7.0), "{out}");
    // train's automatic ingest of the same raw input (planned only).
    let auto = s.write("auto.rhai", "train(#{ model: \"micro\", corpus: \"data:corpora\", unique_tokens: 20_000, epochs: 1 });");
    let o = dctk(s.path(), &["plan", auto.to_str().unwrap(), "--runs", "runs"]);
    assert!(o.status.success(), "{}", text(&o));
    let auto_dir = std::fs::read_dir(s.path().join(".dctk/corpora")).unwrap().next().unwrap().unwrap().path();
    for dir in [s.path().join("corpora/bundled"), s.path().join("corpora/script"), auto_dir] {
        let m = std::fs::read_to_string(dir.join("manifest.ron")).unwrap();
        assert_eq!(m.matches("val_ppm: 50000,").count(), 7, "{}: every domain holds out 5%", dir.display());
    }
}

/// `dctk data verify` checks the manifest against the shards: a hand-edited token count, or a
/// shard path outside the corpus, is refused (and a file outside is never opened).
#[test]
fn data_verify_refuses_edited_counts_and_paths_outside_the_corpus() {
    let s = Scratch::new("verify-edits");
    write_corpus(&s);
    let o = dctk(s.path(), &["data", "ingest", "raw", "--out", "c", "--val-fraction", "0.1"]);
    assert!(o.status.success(), "{}", text(&o));
    let manifest = s.path().join("c/manifest.ron");
    let original = std::fs::read_to_string(&manifest).unwrap();
    let verify = || {
        let o = dctk(s.path(), &["data", "verify", "c"]);
        (o.status.success(), text(&o))
    };
    assert!(verify().0, "{}", verify().1);
    // The first `train_tokens: N` (the apples domain) raised by 1000.
    let n: u64 = original.split("train_tokens: ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    std::fs::write(&manifest, original.replacen(&format!("train_tokens: {n},"), &format!("train_tokens: {},", n + 1000), 1)).unwrap();
    let (ok, t) = verify();
    assert!(!ok && t.contains("manifest.ron") && t.contains("domains[apples].train_tokens") && t.contains(&format!("is {}", n + 1000)), "{t}");
    // An absolute shard path: refused without revealing the file's size.
    let first = original.split("tokens_file: \"").nth(1).unwrap().split('"').next().unwrap().to_string();
    std::fs::write(&manifest, original.replacen(&format!("tokens_file: \"{first}\""), "tokens_file: \"/etc/passwd\"", 1)).unwrap();
    let (ok, t) = verify();
    assert!(!ok && t.contains("tokens_file \"/etc/passwd\" is an absolute path") && !t.contains("found"), "{t}");
    std::fs::write(&manifest, original.replacen(&format!("tokens_file: \"{first}\""), "tokens_file: \"../../../secret/x.tok\"", 1)).unwrap();
    let (ok, t) = verify();
    assert!(!ok && t.contains("\"../../../secret/x.tok\" is not a plain relative path"), "{t}");
    std::fs::write(&manifest, &original).unwrap();
    assert!(verify().0);
}

/// SE, JE and CE recomputed here from the shard files (u16 ids; each `.idx` record starts a
/// document), with plain maps: the reference `dctk data stats` must agree with.
fn entropies_from_shards(domain_dir: &Path) -> (u64, f64, f64, f64) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(domain_dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "tok")).collect();
    files.sort();
    let (mut uni, mut bi, mut pre) = (BTreeMap::<u16, f64>::new(), BTreeMap::<(u16, u16), f64>::new(), BTreeMap::<u16, f64>::new());
    for tok in files {
        let ids: Vec<u16> = std::fs::read(&tok).unwrap().chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let idx = std::fs::read(tok.with_extension("idx")).unwrap();
        let offsets: Vec<usize> = idx.chunks_exact(16).map(|r| u64::from_le_bytes(r[..8].try_into().unwrap()) as usize).collect();
        for w in offsets.windows(2) {
            let doc = &ids[w[0]..w[1]];
            doc.iter().for_each(|&t| *uni.entry(t).or_default() += 1.0);
            for p in doc.windows(2) {
                *bi.entry((p[0], p[1])).or_default() += 1.0;
                *pre.entry(p[0]).or_default() += 1.0;
            }
        }
    }
    let n: f64 = uni.values().sum();
    let n2: f64 = bi.values().sum();
    let se = -uni.values().map(|c| c / n * (c / n).ln()).sum::<f64>();
    let je = -bi.values().map(|c| c / n2 * (c / n2).ln()).sum::<f64>();
    let ce = bi.iter().map(|((a, _), c)| c / n2 * -(c / pre[a]).ln()).sum::<f64>();
    (n as u64, se, je, ce)
}

/// `dctk data stats`: the proxies of every domain equal an independent recomputation from the
/// shard files, for any thread count and memory budget (more passes); VNE lies in [0, SE];
/// a mixture needs an explicit normalisation; unknown domains are named.
#[test]
fn data_stats_match_a_recomputation_from_the_shards() {
    let s = Scratch::new("data-stats");
    write_corpus(&s);
    let o = dctk(s.path(), &["data", "ingest", "raw", "--out", "c", "--val-fraction", "0"]);
    assert!(o.status.success(), "{}", text(&o));
    let json = |args: &[&str]| -> serde_json::Value {
        let o = dctk(s.path(), &[&["data", "stats", "c", "--split", "all", "--json"], args].concat());
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let one = json(&["--threads", "1"]);
    let many = json(&["--threads", "2", "--memory-mb", "1", "--mixture", "ce", "--normalise", "softmax:0.5"]);
    for (i, domain) in ["apples", "bolts"].iter().enumerate() {
        let (tokens, se, je, ce) = entropies_from_shards(&s.path().join("c").join(domain));
        let d = &one["domains"][i];
        assert_eq!(d["domain"], *domain);
        assert_eq!(d["tokens"].as_u64().unwrap(), tokens);
        for (key, want) in [("shannon", se), ("joint", je), ("conditional", ce)] {
            let got = d[key].as_f64().unwrap();
            assert!((got - want).abs() < 1e-9, "{domain} {key}: {got} vs {want}");
            assert_eq!(got, many["domains"][i][key].as_f64().unwrap(), "{domain} {key} depends on threads/partitions");
        }
        let vne = d["von_neumann"].as_f64().unwrap();
        assert!(vne > 0.0 && vne <= se + 1e-9, "{domain}: VNE {vne}, SE {se}");
    }
    let r: Vec<f64> = many["mixture"]["proportions"].as_array().unwrap().iter().map(|p| p["proportion"].as_f64().unwrap()).collect();
    let ce: Vec<f64> = (0..2).map(|i| many["domains"][i]["conditional"].as_f64().unwrap()).collect();
    let z = (ce[0] / 0.5).exp() + (ce[1] / 0.5).exp();
    assert!((r[0] - (ce[0] / 0.5).exp() / z).abs() < 1e-12 && (r[0] + r[1] - 1.0).abs() < 1e-12, "{r:?}");
    // The text table names the columns and the normalisation.
    let o = dctk(s.path(), &["data", "stats", "c", "--mixture", "se", "--normalise", "proportional"]);
    let t = text(&o);
    assert!(o.status.success() && t.contains("SE") && t.contains("VNE") && t.contains("proportional (r_i = H_i / sum H)"), "{t}");
    let o = dctk(s.path(), &["data", "stats", "c", "--mixture", "ce"]);
    assert!(!o.status.success() && text(&o).contains("--mixture needs --normalise"), "{}", text(&o));
    let o = dctk(s.path(), &["data", "stats", "c", "--domain", "pears"]);
    assert!(!o.status.success() && text(&o).contains("no domain \"pears\"") && text(&o).contains("apples, bolts"), "{}", text(&o));
    // Rhai `corpus_stats` gives the CLI's numbers and mixture.
    let body = r#"
let st = corpus_stats(#{ corpus: "c", split: "all", mixture: "ce", normalise: "softmax:0.5", memory_mb: 1 });
for d in st.domains { print(`@${d.domain}_ce=${d.conditional} ${d.domain}_vne=${d.von_neumann} ${d.domain}_tokens=${d.tokens}`); }
print(`@r_apples=${st.mixture.apples} r_bolts=${st.mixture.bolts}`);
"#;
    let (ok, out) = run_study(&s, "stats.rhai", body, "runs", &[]);
    assert!(ok, "{out}");
    let v = values(&out);
    for (i, d) in ["apples", "bolts"].iter().enumerate() {
        assert_eq!(v[&format!("{d}_ce")], many["domains"][i]["conditional"].as_f64().unwrap(), "{out}");
        assert_eq!(v[&format!("{d}_vne")], many["domains"][i]["von_neumann"].as_f64().unwrap(), "{out}");
        assert_eq!(v[&format!("r_{d}")], r[i], "{out}");
    }
    let (ok, out) = run_study(&s, "bad.rhai", "corpus_stats(#{ corpus: \"c\", mixture: \"ce\" });", "runs", &[]);
    assert!(!ok && out.contains("bad.rhai") && out.contains("key \"mixture\" needs \"normalise\""), "{out}");
}

/// BiMix from a study's runs: `fit(#{ law: "bimix", runs, per: "domain" })` gives, per domain,
/// the fit `dctk fit --group-by domain` gives on the same rows written to a CSV (the rows being
/// `mixing_rows(runs)`: one per evaluation × domain, `r` the realized share); the fits feed
/// `optimize_mixture`, whose proportions respect the bounds and sum to 1, and whose
/// impossible bounds are an error naming a domain.
#[test]
fn bimix_fits_from_runs_equal_the_csv_fits_and_feed_the_optimiser() {
    let s = Scratch::new("bimix-runs");
    write_corpus(&s);
    let body = r#"
let base = #{ model: "micro", corpus: "raw", unique_tokens: 2000, val_tokens: 200, val_fraction: 0.1, epochs: 2,
              seq_len: 32, batch_size: 4, lr: 3e-3, evals_per_epoch: 3, threads: 2, seed: 5 };
let specs = [];
for w in [1.0, 2.0, 3.0] { specs.push(base + #{ name: `w${w}`, domains: #{ apples: #{ weight: w }, bolts: #{ weight: 4.0 - w } } }); }
let runs = train(specs);
let rows = mixing_rows(runs);
for r in rows { print(`#row,${r.domain},${r.step},${r.r},${r.loss}`); }
let fits = fit(#{ law: "bimix", runs: runs, per: "domain" });
for f in fits { for p in f.params { print(`@${f.group}_${p.name}=${p.value}`); } }
let opt = optimize_mixture(#{ fits: fits, at_step: 100.0, bounds: #{ apples: [0.2, 0.6] } });
print(`@r_apples=${opt.proportions.apples} r_bolts=${opt.proportions.bolts} predicted=${opt.predicted_loss}`);
"#;
    let (ok, out) = run_study(&s, "bimix.rhai", body, "runs", &[]);
    assert!(ok, "{out}");
    let v = values(&out);
    let csv: String = std::iter::once("domain,step,r,loss\n".to_string())
        .chain(out.lines().filter_map(|l| l.strip_prefix("#row,")).map(|l| format!("{l}\n")))
        .collect();
    assert!(csv.lines().count() > 12, "{out}");
    std::fs::write(s.path().join("rows.csv"), csv).unwrap();
    let o = dctk(s.path(), &["fit", "--law", "bimix", "--data", "rows.csv", "--columns", "s=step,r=r,loss=loss", "--group-by", "domain", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let reports: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for report in reports.as_array().unwrap() {
        let group = report["group"].as_str().unwrap();
        for p in report["params"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            assert_eq!(v[&format!("{group}_{name}")], p["value"].as_f64().unwrap(), "{group} {name}: {out}");
        }
    }
    let (ra, rb) = (v["r_apples"], v["r_bolts"]);
    assert!((0.2..=0.6).contains(&ra) && (ra + rb - 1.0).abs() < 1e-12 && v["predicted"].is_finite(), "{out}");
    let bad = "let base = #{ law: \"bimix\", group: \"apples\", params: [#{name: \"AB\", value: 1.0}, #{name: \"CB\", value: 1.0}, #{name: \"a\", value: 0.5}, #{name: \"b\", value: 0.1}] };\n\
               optimize_mixture(#{ fits: [base, base + #{ group: \"bolts\" }], at_step: 10.0, bounds: #{ apples: [0.7, 1.0], bolts: [0.5, 1.0] } });";
    let (ok, out) = run_study(&s, "bad.rhai", bad, "runs", &[]);
    assert!(!ok && out.contains("lower bounds sum to") && out.contains("\"apples\""), "{out}");
}

/// The data-constrained mixing law on rows generated from it (three domains, two small enough
/// to repeat up to 80 times): the per-domain fits recover the generating optimum — at a fixed
/// step under epoch budgets, and over a step range (proportions and total tokens) — and they
/// predict a held-out mixture; a budget no mixture can meet is an error naming the domain.
#[test]
fn data_constrained_mixing_law_recovers_a_known_optimum_with_and_without_budgets() {
    let s = Scratch::new("bimix-dc");
    let body = r#"
let truth = #{ big: [2.0, 1.0, 0.5, 0.15, 5.0], small: [1.5, 1.2, 0.4, 0.3, 2.0], tiny: [3.0, 0.8, 0.6, 0.25, 10.0] };
let budgets = #{ big: 1e6, small: 4e3, tiny: 1e3 };
let tps = 1000.0;
fn law(p, s, r, e) {
    let eta = if e > 1.0 { (1.0 + p[4] * (1.0 - exp(-(e - 1.0) / p[4]))) / e } else { 1.0 };
    (p[0] * s ** (-p[2]) + p[1]) * (r * eta) ** (-p[3])
}
let mixtures = [[0.6, 0.3, 0.1], [0.8, 0.1, 0.1], [0.4, 0.4, 0.2], [0.7, 0.25, 0.05], [0.5, 0.2, 0.3], [0.9, 0.05, 0.05]];
let rows = [];
for m in mixtures {
    for st in [20.0, 40.0, 80.0, 160.0, 320.0] {
        let i = 0;
        for d in ["big", "small", "tiny"] {
            let e = m[i] * st * tps / budgets[d];
            rows.push(#{ domain: d, step: st, r: m[i], e: e, loss: law(truth[d], st, m[i], e) });
            i += 1;
        }
    }
}
let fits = fit(#{ law: "bimix_dc", rows: rows, group_by: "domain", columns: "s=step,r=r,e=e,loss=loss" });
let true_fits = [];
for d in ["big", "small", "tiny"] {
    let p = truth[d];
    true_fits.push(#{ law: "bimix_dc", group: d, params: [#{name: "AB", value: p[0]}, #{name: "CB", value: p[1]}, #{name: "a", value: p[2]}, #{name: "b", value: p[3]}, #{name: "R_star", value: p[4]}] });
}
for c in [#{ name: "free" }, #{ name: "capped", max_epochs: 8.0 }] {
    let ask = #{ at_step: 200.0, budgets: budgets, tokens_per_step: tps };
    if "max_epochs" in c { ask.max_epochs = c.max_epochs; }
    let got = optimize_mixture(ask + #{ fits: fits });
    let want = optimize_mixture(ask + #{ fits: true_fits });
    let naive = optimize_mixture(#{ fits: fit(#{ law: "bimix", rows: rows, group_by: "domain", columns: "s=step,r=r,loss=loss" }), at_step: 200.0 });
    print(`@${c.name}_got=${got.proportions.tiny} ${c.name}_want=${want.proportions.tiny} ${c.name}_loss=${got.predicted_loss} ${c.name}_want_loss=${want.predicted_loss} ${c.name}_epochs=${got.epochs.tiny} ${c.name}_naive=${naive.proportions.tiny}`);
}
let range = #{ steps: [10.0, 5000.0], budgets: budgets, tokens_per_step: tps };
let got = optimize_mixture(range + #{ fits: fits });
let want = optimize_mixture(range + #{ fits: true_fits });
print(`@steps_got=${got.step} steps_want=${want.step} steps_loss=${got.predicted_loss} steps_want_loss=${want.predicted_loss} tokens=${got.tokens}`);
let held = predict_mixture(#{ fits: fits, mixture: #{ big: 0.55, small: 0.3, tiny: 0.15 }, at_step: 250.0, budgets: budgets, tokens_per_step: tps });
let truth_held = predict_mixture(#{ fits: true_fits, mixture: #{ big: 0.55, small: 0.3, tiny: 0.15 }, at_step: 250.0, budgets: budgets, tokens_per_step: tps });
print(`@held=${held.predicted_loss} held_truth=${truth_held.predicted_loss}`);
"#;
    let (ok, out) = run_study(&s, "dc.rhai", body, "runs", &[]);
    assert!(ok, "{out}");
    let v = values(&out);
    for case in ["free", "capped"] {
        let (got, want) = (v[&format!("{case}_got")], v[&format!("{case}_want")]);
        assert!((got - want).abs() < 2e-3, "{case}: tiny's share {got} vs the generating optimum's {want}\n{out}");
        let (l, lw) = (v[&format!("{case}_loss")], v[&format!("{case}_want_loss")]);
        assert!((l / lw - 1.0).abs() < 1e-4, "{case}: {l} vs {lw}");
    }
    assert!(v["capped_epochs"] <= 8.0 + 1e-9, "{out}");
    // Repetition changes the answer: BiMix, which does not see it, feeds tiny far more.
    assert!(v["free_naive"] > 1.5 * v["free_want"], "{out}");
    assert!((v["steps_got"] / v["steps_want"] - 1.0).abs() < 0.02 && (v["steps_loss"] / v["steps_want_loss"] - 1.0).abs() < 1e-4, "{out}");
    assert!(v["steps_want"] > 10.5 && v["steps_want"] < 4900.0, "the generating law has an interior optimum in total tokens: {out}");
    assert!((v["held"] / v["held_truth"] - 1.0).abs() < 1e-4, "{out}");

    let bad = r#"
let f = #{ law: "bimix_dc", params: [#{name: "AB", value: 1.0}, #{name: "CB", value: 1.0}, #{name: "a", value: 0.5}, #{name: "b", value: 0.1}, #{name: "R_star", value: 5.0}] };
optimize_mixture(#{ fits: [f + #{ group: "web" }, f + #{ group: "math" }], at_step: 100.0, tokens_per_step: 1000.0,
                    budgets: #{ web: 1e4, math: 1e3 }, max_epochs: 4.0, bounds: #{ math: [0.2, 1.0] } });"#;
    let (ok, out) = run_study(&s, "bad.rhai", bad, "runs", &[]);
    assert!(!ok && out.contains("\"math\"") && out.contains("budget of 4 epochs") && out.contains("bad.rhai"), "{out}");
}
