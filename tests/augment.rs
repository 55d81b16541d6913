//! Augmenters in `generate` cells, end to end through the `dctk` binary: a micro model
//! trained on the bundled quotes generates with each built-in (rephrase styles cycle;
//! a stitched megadoc is the concatenation of the same rephrases that `megadoc_simple`
//! shuffles as separate documents, answered from the request cache; a stretched megadoc
//! is its source's G+1 equal-token pieces with G rationales between `<think>` delimiters)
//! and with a plugin augmenter (the `aug_echo` fixture, ABI 3). Errors: a malformed
//! template fails the plan naming the key and style; an augmenter that errors, panics or
//! returns nothing fails naming the augmenter, the document and the cell; a generator that
//! fails on some requests keeps the answered ones cached and a rerun sends only the rest.
//!
//! Needs the fixture built (`cargo build --release -p dctk-fixture-aug-echo`, or the workspace).
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[path = "support/mod.rs"]
mod support;
use support::*;

const SOURCE: &str = r#"
let src = train(#{ name: "src", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 1,
                   val_tokens: 256, seq_len: 128, batch_size: 4, lr: 3e-3, seed: 1, threads: 1 });
let g = #{ kind: "local", run: src, device: "cpu" };
"#;

/// A plugin directory holding the `aug_echo` fixture under its plugin file name.
fn plugin_dir(s: &Scratch) -> PathBuf {
    let built = dctk_bin().parent().unwrap().join("libdctk_fixture_aug_echo.so");
    assert!(built.exists(), "{} is missing: run `cargo build --release -p dctk-fixture-aug-echo` first", built.display());
    let dir = s.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&built, dir.join("libdctk_plugin_aug_echo.so")).unwrap();
    dir
}

fn run(s: &Scratch, name: &str, script: &str) -> Output {
    run_with(s, name, script, &[])
}

fn run_with(s: &Scratch, name: &str, script: &str, extra: &[&str]) -> Output {
    let path = s.write(name, script);
    dctk_cmd(s.path())
        .args(["run", path.to_str().unwrap(), "-q", "--threads", "1"])
        .args(extra)
        .env("DCTK_HOME", s.path().join("home"))
        .env("DCTK_PLUGIN_PATH", plugin_dir(s))
        .output()
        .expect("running dctk")
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The generate cell labelled `label`.
fn cell(runs: &Path, label: &str) -> PathBuf {
    let found: Vec<PathBuf> = cells(runs)
        .into_iter()
        .filter(|d| std::fs::read_to_string(d.join("manifest.ron")).is_ok_and(|m| m.starts_with("GenerateManifest(") && m.contains(&format!("label: \"{label}\""))))
        .collect();
    assert_eq!(found.len(), 1, "{label}: {found:?}");
    found.into_iter().next().unwrap()
}

fn result(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap()
}

fn raw_quotes() -> Vec<String> {
    std::fs::read_to_string(repo_root().join("data/corpora/quotes.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn built_in_and_plugin_augmenters_run_in_a_study() {
    let s = Scratch::new("augment-study");
    let script = format!(
        r#"{SOURCE}
let reph = generate(#{{ name: "reph", generator: g, augmenter: "rephrase", n_per_doc: 5, max_docs: 2, max_tokens: 8, seed: 6 }});
let stitch = generate(#{{ name: "stitch", generator: g, augmenter: "megadoc_stitch", n_per_doc: 3, max_docs: 3, max_tokens: 8, seed: 5 }});
print(`stitch requests=${{stitch.requests}} sent=${{stitch.sent}} docs=${{stitch.generated_docs}}`);
let simple = generate(#{{ name: "simple", generator: g, augmenter: "megadoc_simple", n_per_doc: 3, max_docs: 3, max_tokens: 8, seed: 5 }});
let stretch = generate(#{{ name: "stretch", generator: g, augmenter: #{{ name: "megadoc_stretch", template: "{{prefix}} ... {{suffix}}" }},
                          n_per_doc: 3, max_docs: 3, max_tokens: 8, seed: 5 }});
let echo = generate(#{{ name: "echo", generator: g, augmenter: #{{ name: "aug_echo", n: 2 }}, max_docs: 3, max_tokens: 8, seed: 5 }});
let few = generate(#{{ name: "budget-300", generator: g, template: "{{document}}", unique_tokens: 300, max_tokens: 2, seed: 5 }});
let more = generate(#{{ name: "budget-900", generator: g, template: "{{document}}", unique_tokens: 900, max_tokens: 2, seed: 5 }});
let all = generate(#{{ name: "budget-all", generator: g, template: "{{document}}", max_docs: 60, max_tokens: 2, seed: 5 }});
print(`simple requests=${{simple.requests}} hits=${{simple.cache_hits}} sent=${{simple.sent}} docs=${{simple.generated_docs}}`);
print(`stretch docs=${{stretch.generated_docs}} thoughts=${{stretch.augmenter_stats.thoughts}}`);
print(`echo requests=${{echo.requests}} docs=${{echo.generated_docs}} augmenter=${{echo.augmenter}}`);
"#
    );
    let out = run(&s, "aug.rhai", &script);
    let t = text(&out);
    assert!(out.status.success(), "{t}");

    // `unique_tokens`: the source documents of a budget are the nested prefix `train` serves.
    let sources = |label: &str| -> Vec<u64> {
        read_jsonl(&cell(&s.path().join("runs"), label).join("corpus/documents.jsonl")).iter().map(|r| r["source"]["index"].as_u64().unwrap()).collect()
    };
    let (few, more, all) = (sources("budget-300"), sources("budget-900"), sources("budget-all"));
    assert!(!few.is_empty() && few.len() < more.len() && more.len() < all.len(), "{} {} {}", few.len(), more.len(), all.len());
    assert_eq!(few[..], more[..few.len()]);
    assert_eq!(more[..], all[..more.len()]);
    assert!(t.contains("stitch requests=9 sent=9 docs=3"), "{t}");
    // The control asks exactly the stitched megadocs' requests: all answered from the cache.
    assert!(t.contains("simple requests=9 hits=9 sent=0 docs=9"), "{t}");
    assert!(t.contains("stretch docs=3 thoughts=9"), "{t}");
    assert!(t.contains("echo requests=6 docs=6 augmenter=aug_echo"), "{t}");
    let runs = s.path().join("runs");
    let raw = raw_quotes();

    // rephrase: request j in style j mod 4, one document per answer.
    let reph = read_jsonl(&cell(&runs, "reph").join("corpus/documents.jsonl"));
    assert_eq!(reph.len(), 10);
    for (k, d) in reph.iter().enumerate() {
        let style = ["wikipedia", "qa", "easy", "erudite"][(k % 5) % 4];
        assert_eq!(d["augmenter"], "rephrase");
        assert_eq!(d["meta"]["style"], style, "{d}");
        assert_eq!(d["uses"][0]["tag"], format!("style={style},j={}", k % 5), "{d}");
    }

    // stitch = the concatenation of the same rephrases, which simple holds as separate, shuffled documents.
    let stitch_dir = cell(&runs, "stitch");
    let simple_dir = cell(&runs, "simple");
    let stitched = read_jsonl(&stitch_dir.join("generated.jsonl"));
    let simple = read_jsonl(&simple_dir.join("generated.jsonl"));
    let simple_rows = read_jsonl(&simple_dir.join("corpus/documents.jsonl"));
    assert_eq!((stitched.len(), simple.len()), (3, 9));
    let mut unshuffled: Vec<(u64, &serde_json::Value)> = simple_rows.iter().map(|r| r["unshuffled"].as_u64().unwrap()).zip(&simple).collect();
    assert!(unshuffled.windows(2).any(|w| w[0].0 > w[1].0), "simple's documents are shuffled");
    unshuffled.sort_by_key(|(u, _)| *u);
    for (i, m) in stitched.iter().enumerate() {
        let parts: Vec<&str> = unshuffled[3 * i..3 * i + 3].iter().map(|(_, d)| d["text"].as_str().unwrap()).collect();
        assert_eq!(m["text"].as_str().unwrap(), parts.join("\n\n"), "megadoc {i}");
        for (_, d) in &unshuffled[3 * i..3 * i + 3] {
            assert_eq!(d["source"], m["source"]);
        }
        let seeds: Vec<&serde_json::Value> = m["uses"].as_array().unwrap().iter().map(|u| &u["seed"]).collect();
        let simple_seeds: Vec<&serde_json::Value> = unshuffled[3 * i..3 * i + 3].iter().map(|(_, d)| &d["uses"][0]["seed"]).collect();
        assert_eq!(seeds, simple_seeds);
    }
    assert_eq!(result(&simple_dir)["shuffled"], true);
    assert_eq!(result(&stitch_dir)["shuffled"], false);

    // stretch: the G+1 equal-token pieces of the (possibly truncated) source with G thoughts between delimiters.
    let tokenizer = dctk_data::Tokenizer::gpt2().unwrap();
    for d in read_jsonl(&cell(&runs, "stretch").join("generated.jsonl")) {
        let text = d["text"].as_str().unwrap();
        let bytes: Vec<usize> = d["meta"]["piece_bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as usize).collect();
        assert_eq!(bytes.len(), 4);
        let (mut rest, mut pieces) = (text, Vec::new());
        for (k, &b) in bytes.iter().enumerate() {
            pieces.push(&rest[..b]);
            rest = &rest[b..];
            if k < 3 {
                let inner = rest.strip_prefix("<think>").unwrap_or_else(|| panic!("no <think> after piece {k}: {text:?}"));
                let end = inner.find("</think>").unwrap();
                rest = &inner[end + "</think>".len()..];
            }
        }
        assert_eq!(rest, "");
        let source = pieces.concat();
        let index = d["source"]["index"].as_u64().unwrap() as usize;
        assert!(raw[index].starts_with(&source) && !source.is_empty(), "{source:?}");
        let counts: Vec<usize> = pieces.iter().map(|p| tokenizer.encode(p).len()).collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 3, "{counts:?}");
        let tags: Vec<&str> = d["uses"].as_array().unwrap().iter().map(|u| u["tag"].as_str().unwrap()).collect();
        assert_eq!(tags, ["thought=1", "thought=2", "thought=3"]);
    }

    // The plugin: one document per answer, each "ECHO: <answer>", provenance like a built-in's.
    let echo_dir = cell(&runs, "echo");
    let docs = read_jsonl(&echo_dir.join("corpus/documents.jsonl"));
    for (k, d) in read_jsonl(&echo_dir.join("generated.jsonl")).iter().enumerate() {
        assert!(d["text"].as_str().unwrap().starts_with("ECHO: "), "{d}");
        assert_eq!(docs[k]["augmenter"], "aug_echo");
        assert_eq!(docs[k]["uses"].as_array().unwrap().len(), 2);
    }
    let manifest = std::fs::read_to_string(echo_dir.join("manifest.json")).unwrap();
    assert!(manifest.contains("blake3"), "the plugin file's hash is in the cell's inputs: {manifest}");

    // The local generator's scorer (what augmenters' `assemble` gets): Σ log p in nats, by the
    // chain rule log p(a b | c) = log p(a | c) + log p(b | c a).
    use dctk::generate::augment::Scorer;
    let src_dir = cells(&runs).into_iter().find(|d| std::fs::read_to_string(d.join("manifest.ron")).is_ok_and(|m| m.starts_with("Manifest(") && m.contains("label: \"src\""))).unwrap();
    let model = dctk::generate::LoadedModel::open(&src_dir, tch::Device::Cpu).unwrap();
    let (c, a, b) = ("The", " only thing we have to fear", " is fear itself.");
    let ab: Vec<u32> = model.tokenizer.encode(a).into_iter().chain(model.tokenizer.encode(b)).collect();
    let direct: f64 = model.score(&model.tokenizer.encode(c), &ab).unwrap().iter().map(|&v| v as f64).sum();
    let local = dctk::generate::generator::LocalGenerator::new(model, 4);
    let scores = dctk::study::generate_cell::LocalScorer(&local).score(&[(c.to_string(), a.to_string()), (format!("{c}{a}"), b.to_string())]).unwrap();
    assert!(scores.iter().all(|s| *s < 0.0), "{scores:?}");
    assert!((scores[0] + scores[1] - direct).abs() < 1e-3 * direct.abs().max(1.0), "{scores:?} vs {direct}");
}

#[test]
fn augmenter_errors_name_the_key_document_and_cell() {
    let s = Scratch::new("augment-errors");
    let gen = |name: &str, aug: &str| format!("{SOURCE}\nlet x = generate(#{{ name: \"{name}\", generator: g, augmenter: {aug}, max_docs: 3, max_tokens: 4, seed: 2 }});\nprint(`{name} docs=${{x.generated_docs}} hits=${{x.cache_hits}} sent=${{x.sent}}`);\n");

    // Malformed templates fail the plan (before anything is generated), naming key and style.
    let out = run(&s, "t1.rhai", &gen("bad", r#"#{ name: "rephrase", templates: #{ qa: "no placeholder" } }"#));
    let t = text(&out);
    assert!(!out.status.success() && t.contains("augmenter.templates.qa") && t.contains("style \"qa\"") && t.contains("{document}"), "{t}");
    let out = run(&s, "t2.rhai", &gen("bad", r#"#{ name: "megadoc_stretch", template: "only {prefix}" }"#));
    let t = text(&out);
    assert!(!out.status.success() && t.contains("augmenter.template") && t.contains("{suffix}"), "{t}");

    // An augmenter that errors / panics / returns nothing: the augmenter, the document and the cell.
    // A word of the second source document's beginning (which documents are sources: a probe cell's provenance).
    let probe = |seed: u64| format!("{SOURCE}\nlet x = generate(#{{ name: \"probe\", generator: g, augmenter: \"aug_echo\", max_docs: 3, max_tokens: 4, seed: {seed} }});\n");
    let out = run(&s, "probe.rhai", &probe(9));
    assert!(out.status.success(), "{}", text(&out));
    let rows = read_jsonl(&cell(&s.path().join("runs"), "probe").join("corpus/documents.jsonl"));
    let index = rows[1]["source"]["index"].as_u64().unwrap() as usize;
    let quote = raw_quotes()[index].split_whitespace().take(8).find(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_alphabetic())).unwrap().to_string();
    for (label, settings, why) in [
        ("fails", format!(r#"#{{ name: "aug_echo", fail_on: "{quote}" }}"#), "aug_echo fails on"),
        ("panics", format!(r#"#{{ name: "aug_echo", panic_on: "{quote}" }}"#), "plugin panicked: aug_echo panics on"),
        ("plan-fails", format!(r#"#{{ name: "aug_echo", fail_on: "{quote}", stage: "plan" }}"#), "aug_echo fails on"),
        ("empty", r#"#{ name: "aug_echo", empty: true }"#.to_string(), "returned no documents"),
    ] {
        let out = run(&s, &format!("{label}.rhai"), &gen(label, &settings));
        let t = text(&out);
        assert!(!out.status.success(), "{label}: {t}");
        assert!(t.contains("augmenter `aug_echo`") && t.contains("document quotes#") && t.contains(&format!("in cell {label} (")) && t.contains(why), "{label}: {t}");
    }
    // The answers of the failed cells stay cached: the well-behaved plugin asks nothing again.
    let out = run(&s, "ok.rhai", &gen("ok", r#"#{ name: "aug_echo" }"#));
    let t = text(&out);
    assert!(out.status.success() && t.contains("ok docs=3 hits=3 sent=0"), "{t}");
}

/// A loopback OpenAI-compatible completions server: answers `POST /v1/completions`,
/// failing (400) the prompts whose blake3 is odd while `flaky` is set.
fn fake_server(flaky: Arc<AtomicBool>, served: Arc<AtomicU64>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (flaky, served) = (flaky.clone(), served.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let prompt = req["prompt"].as_str().unwrap_or("").to_string();
                let fail = flaky.load(Ordering::SeqCst) && blake3::hash(prompt.as_bytes()).as_bytes()[0] & 1 == 1;
                let (status, answer) = if fail {
                    ("400 Bad Request", serde_json::json!({"error": {"message": "flaky server refuses this prompt"}}))
                } else {
                    served.fetch_add(1, Ordering::SeqCst);
                    ("200 OK", serde_json::json!({"choices": [{"text": format!("answer {}", prompt.len()), "finish_reason": "stop"}], "usage": {"completion_tokens": 2}}))
                };
                let answer = answer.to_string();
                let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len());
            });
        }
    });
    addr
}

#[test]
fn a_generator_failing_on_some_requests_keeps_the_answered_ones() {
    let s = Scratch::new("augment-flaky");
    let (flaky, served) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
    let addr = fake_server(flaky.clone(), served.clone());
    let script = format!(
        r#"let x = generate(#{{ name: "flaky", generator: #{{ kind: "openai", base_url: "http://{addr}/v1", model: "m", concurrency: 1, max_retries: 0 }},
                 corpus: "data:corpora/quotes.jsonl", augmenter: "rephrase", n_per_doc: 4, max_docs: 4, max_tokens: 8, seed: 1 }});
print(`flaky requests=${{x.requests}} hits=${{x.cache_hits}} sent=${{x.sent}} docs=${{x.generated_docs}}`);
"#
    );
    let out = run(&s, "flaky.rhai", &script);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    let answered = served.load(Ordering::SeqCst);
    assert!(answered > 0 && answered < 16, "some requests fail, some are answered: {answered}");
    let failed = 16 - answered;
    assert!(t.contains(&format!("{failed} of 16 request(s) failed")) && t.contains("cell flaky (") && t.contains("document quotes#"), "{t}");
    // The server recovers: the rerun sends only what failed.
    flaky.store(false, Ordering::SeqCst);
    let out = run_with(&s, "flaky.rhai", &script, &["--rerun-failed"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("flaky requests=16 hits={answered} sent={failed} docs=16")), "{t}");
}
