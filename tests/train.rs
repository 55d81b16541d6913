//! End-to-end training contracts: what `train(#{...})` promises holds through a real
//! `dctk run` (plan, manifest, cell process, result).
#[path = "support/mod.rs"]
mod support;
use support::*;

/// A custom model shape (with and without `d_ff`) plans, writes a manifest that reads back,
/// trains to done, and its parameter count is the shape's.
#[test]
fn custom_model_shapes_train_to_done() {
    let s = Scratch::new("shape");
    let script = s.write(
        "shape.rhai",
        r#"
let base = #{ corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 4, threads: 1 };
let a = base; a.name = "a"; a.model = #{ n_layer: 1, d_model: 64, n_head: 2 };
let b = base; b.name = "b"; b.model = #{ n_layer: 1, d_model: 64, n_head: 2, d_ff: 96 };
let runs = train([a, b]);
print(`statuses ${runs[0].status} ${runs[1].status}`);
print(`params ${runs[0].params} ${runs[1].params}`);
"#,
    );
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("statuses done done"), "{t}");
    // d_ff 96 instead of the default 256 (= 256·⌈(8·64/3)/256⌉): 3 matrices of 64 × 160 fewer.
    let params: Vec<i64> = t.lines().find_map(|l| l.strip_prefix("params ")).unwrap().split(' ').map(|p| p.parse().unwrap()).collect();
    assert_eq!(params[0] - params[1], 3 * 64 * (256 - 96), "{t}");
    for cell in cells(&s.path().join("runs")) {
        let manifest = std::fs::read_to_string(cell.join("manifest.ron")).unwrap();
        assert!(manifest.contains("\"n_layer\": 1") || manifest.contains("n_layer: 1"), "{manifest}");
        // The checkpoint says what it holds: the model config and vocabulary layout.
        let meta = safetensors_metadata(&cell.join("ckpt/model.safetensors"));
        let dctk: serde_json::Value = serde_json::from_str(meta["dctk"].as_str().unwrap()).unwrap();
        let cfg = &dctk["model_config"];
        assert_eq!((cfg["n_layer"].as_i64(), cfg["d_model"].as_i64(), cfg["n_head"].as_i64()), (Some(1), Some(64), Some(2)), "{dctk}");
        assert!(cfg["d_ff"] == 96 || cfg["d_ff"] == 256, "{dctk}");
        assert_eq!((cfg["vocab_size"].as_i64(), dctk["vocab"]["base"].as_i64(), dctk["vocab"]["padded"].as_i64()), (Some(50_304), Some(50_257), Some(50_304)));
        assert_eq!(dctk["run_id"].as_str(), cell.file_name().unwrap().to_str());
    }
}

/// The `__metadata__` of a safetensors file's header: 8 bytes of little-endian length, then JSON.
fn safetensors_metadata(path: &std::path::Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"].clone()
}

/// `epochs_realized` is the sampler's count of passes over the data as served (documents and
/// their separators), and the epoch-end evaluations sit on those passes.
#[test]
fn epochs_realized_is_the_samplers_count() {
    let s = Scratch::new("epochs");
    let script = s.write(
        "e.rhai",
        r#"
let r = train(#{ name: "e", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 3, val_tokens: 256, seq_len: 32, batch_size: 4, evals_per_epoch: 1, threads: 1 });
print(`realized ${r.epochs_realized}`);
"#,
    );
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let run = only_run(&s.path().join("runs"));
    let result: dctk::train::RunResult = ron::from_str(&std::fs::read_to_string(run.join("result.ron")).unwrap()).unwrap();
    let served: u64 = result.accounting.domains.iter().map(|d| d.tokens_served).sum();
    let epoch_tokens: u64 = result.accounting.domains.iter().map(|d| d.epoch_tokens).sum();
    assert!(epoch_tokens > result.unique_tokens, "an epoch as served includes the separators");
    assert_eq!(result.epochs_realized, served as f64 / epoch_tokens as f64);
    assert_eq!(result.epochs_realized, result.accounting.realized_epochs());
    assert_eq!(result.epochs_realized, result.accounting.domains[0].realized_epochs);
    assert!(t.contains(&format!("realized {}", result.epochs_realized)), "{t}");
    // The epoch-end evaluations: at each whole pass (to the nearest step), the last at the end.
    let per_epoch = epoch_tokens as f64 / result.tokens_per_step as f64;
    let ends: Vec<u64> = result.val_loss_by_epoch.iter().map(|p| p.step).collect();
    assert_eq!(ends[0], per_epoch.round() as u64, "{ends:?}");
    assert_eq!(*ends.last().unwrap(), result.steps);
    for p in &result.curve {
        assert!((p.epoch - (p.step * result.tokens_per_step) as f64 / epoch_tokens as f64).abs() < 1e-12);
    }
}

/// What a run could not do is refused at `plan`, naming the key; never a crash.
#[test]
fn impossible_runs_are_refused_at_plan() {
    let s = Scratch::new("impossible");
    for (setting, key) in [
        ("epochs: 1e300, eval_every: 1", "key \"epochs\""),
        ("epochs: 1e6, eval_every: 1", "key \"eval_every\""),
        ("epochs: 1, model: #{ n_layer: 2000, d_model: 65536, n_head: 64 }", "key \"model\""),
    ] {
        let script = s.write(
            "i.rhai",
            &format!("train(#{{ corpus: \"data:corpora/quotes.jsonl\", unique_tokens: 3_000, val_tokens: 256, seq_len: 32, batch_size: 4, {setting} }});"),
        );
        for cmd in ["plan", "run"] {
            let out = dctk(s.path(), &[cmd, script.to_str().unwrap(), "-q"][..if cmd == "plan" { 2 } else { 3 }]);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(1), "{cmd} {setting}: {t}");
            assert!(t.contains(key) && t.contains("i.rhai:1"), "{cmd} {setting}: {t}");
        }
    }
}

#[test]
fn bench_refuses_zero_rounds_and_steps() {
    let s = Scratch::new("bench0");
    for args in [["bench", "regularizer", "--rounds", "0"], ["bench", "regularizer", "--steps", "0"], ["bench", "train", "--steps", "0"], ["bench", "plan", "--rounds", "0"]] {
        let out = dctk(s.path(), &args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains(&format!("--{} must be at least 1", args[2].trim_start_matches("--"))), "{args:?}: {t}");
    }
}

/// The model's vocabulary is the corpus tokenizer's, plus the plugins' extra tokens, padded to
/// a multiple of 64: a `bpe:8192` corpus trains a model with 8,192 rows, not GPT-2's 50,304.
#[test]
fn the_vocabulary_comes_from_the_corpus() {
    let s = Scratch::new("vocab");
    let quotes = repo_root().join("data/corpora/quotes.jsonl");
    let out = dctk(s.path(), &["data", "ingest", quotes.to_str().unwrap(), "--out", "bpe", "--tokenizer", "bpe:8192", "--val-fraction", "0.05", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let corpus = std::fs::read_to_string(s.path().join("bpe/manifest.ron")).unwrap();
    let base: i64 = corpus.split("vocab_size: ").nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    assert!(base <= 8192 && base > 1000, "{base}");
    let padded = (base + 63) / 64 * 64;
    let script = s.write(
        "v.rhai",
        r#"
let r = train(#{ name: "v", model: "micro", corpus: "bpe", unique_tokens: 3_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 4, threads: 1 });
print(`params ${r.params} ${r.non_embedding_params} ${r.flops_per_token}`);
"#,
    );
    let plan = text(&dctk(s.path(), &["plan", script.to_str().unwrap()]));
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let nums: Vec<f64> = t.lines().find_map(|l| l.strip_prefix("params ")).unwrap().split(' ').map(|p| p.parse().unwrap()).collect();
    let (params, non_embedding) = (nums[0] as i64, nums[1] as i64);
    // Input embedding and output head: 2 × vocabulary × d_model (64).
    assert_eq!(params - non_embedding, 2 * padded * 64, "{t}");
    // 6·(non-embedding + head) + 12·layers·d·seq_len (Kaplan et al. 2020).
    assert_eq!(nums[2], 6.0 * (non_embedding + padded * 64) as f64 + 12.0 * 64.0 * 32.0, "{t}");
    let run = only_run(&s.path().join("runs"));
    let manifest = std::fs::read_to_string(run.join("manifest.ron")).unwrap();
    assert!(manifest.contains(&format!("base: {base},")) && manifest.contains(&format!("padded: {padded},")), "{manifest}");
    assert!(manifest.contains(&format!("vocab_size: {padded},")), "{manifest}");
    // The plan's parameter count is the same as the run's.
    let _ = plan;
}

/// A tokenizer of 50,280 ids with MIR: MASK is id 50,280 (a fresh id, not a real token), the
/// model has 50,304 rows, and the run trains.
#[test]
fn plugin_tokens_get_ids_after_the_tokenizers() {
    let s = Scratch::new("vocab50280");
    // A word-level tokenizer: ids 0 .. 50,199 are fillers, the corpus's 79 words are ids
    // 50,200 .. 50,278 (the top of the vocabulary), the separator is 50,279.
    const N: usize = 50_280;
    let words: Vec<String> = (0..79).map(|i| format!("w{i}")).collect();
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), 0.into());
    for i in 1..(N - 80) {
        vocab.insert(format!("filler{i}"), i.into());
    }
    for (j, w) in words.iter().enumerate() {
        vocab.insert(w.clone(), (N - 80 + j).into());
    }
    vocab.insert("<|endoftext|>".into(), (N - 1).into());
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": N - 1, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    });
    s.write("tokenizer.json", &tok.to_string());
    let docs: String = (0..400)
        .map(|d| {
            let text: Vec<&str> = (0..40).map(|k| words[(d * 7 + k * 13 + k * k) % words.len()].as_str()).collect();
            format!("{}\n", serde_json::json!({"text": text.join(" ")}))
        })
        .collect();
    s.write("words.jsonl", &docs);
    let out = dctk(s.path(), &["data", "ingest", "words.jsonl", "--out", "wl", "--tokenizer", "tokenizer.json", "--eot", "<|endoftext|>", "--val-fraction", "0.1", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    let script = s.write(
        "m.rhai",
        r#"
let r = train(#{ name: "m", model: "micro", corpus: "wl", unique_tokens: 4_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 4, threads: 1,
    regularizers: [#{ name: "mir", settings: #{ lambda: 0.4 } }] });
print(`status ${r.status} params ${r.params} ${r.non_embedding_params}`);
"#,
    );
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let line = t.lines().find_map(|l| l.strip_prefix("status ")).unwrap();
    assert!(line.starts_with("done params "), "{t}");
    let nums: Vec<i64> = line.trim_start_matches("done params ").split(' ').map(|p| p.parse().unwrap()).collect();
    assert_eq!(nums[0] - nums[1], 2 * 50_304 * 64, "{t}");
    let run = only_run(&s.path().join("runs"));
    let manifest = std::fs::read_to_string(run.join("manifest.ron")).unwrap();
    let layout = manifest.split("vocab: VocabLayout(").nth(1).unwrap();
    let compact: String = layout.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(compact.starts_with("base:50280,extra:[ExtraTokens(plugin:\"mir\",first_id:50280,count:1,),],padded:50304,"), "{layout}");
    // The corpus's real tokens reach the top of the tokenizer, below MASK.
    let m = metrics(&run);
    assert!(m.iter().filter(|r| r["kind"] == "train").all(|r| r["mir/aux_loss"].as_f64().unwrap().is_finite()));
}

fn debris(cell: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for dir in [cell.to_path_buf(), cell.join("ckpt")] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name == "ckpt.tmp" || (name.starts_with('.') && name.contains(".tmp-")) {
                found.push(format!("{}/{name}", dir.display()));
            }
        }
    }
    found
}

/// A checkpoint that fails leaves no `ckpt.tmp/`; debris a killed process left (`ckpt.tmp/`,
/// `.*.tmp-*`) is removed when the cell starts again, and the cell resumes and finishes.
#[test]
fn failed_checkpoints_and_leftovers_leave_no_debris() {
    let s = Scratch::new("debris");
    let script = s.write(
        "d.rhai",
        r#"let r = train(#{ name: "d", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 4, checkpoint_every: 2, threads: 1 });
print(`status ${r.status} resumed ${r.resumed_from_step}`);"#,
    );
    let script = script.to_str().unwrap();
    let out = dctk(s.path(), &["run", script, "-q", "--stop-after-steps", "5"]);
    assert!(!out.status.success(), "{}", text(&out));
    let cell = only_run(&s.path().join("runs"));
    assert!(cell.join("ckpt/state.ron").exists());
    // Make the next checkpoint fail after ckpt.tmp/ is written: `ckpt.old` is a file, which the
    // swap cannot remove as a directory.
    std::fs::write(cell.join("ckpt.old"), "in the way").unwrap();
    let out = dctk(s.path(), &["run", script, "-q"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(cell.join("status")).unwrap().trim(), "failed");
    assert_eq!(debris(&cell), Vec::<String>::new(), "a failed checkpoint left debris");
    // Leftovers of a killed writer, then a rerun: removed, and the cell resumes to done.
    std::fs::remove_file(cell.join("ckpt.old")).unwrap();
    std::fs::create_dir_all(cell.join("ckpt.tmp")).unwrap();
    std::fs::write(cell.join("ckpt.tmp/model.safetensors"), "half").unwrap();
    std::fs::write(cell.join(".result.ron.tmp-atomic-1-2"), "half").unwrap();
    std::fs::write(cell.join("ckpt/.state.ron.tmp-atomic-1-2"), "half").unwrap();
    let out = dctk(s.path(), &["run", script, "-q", "--rerun-failed"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("status done resumed 4"), "{t}");
    assert_eq!(debris(&cell), Vec::<String>::new());
}

/// A diverged cell records why: the step, which number was not finite, the grad norm; in
/// result.ron and in the cell's log.
#[test]
fn a_diverged_cell_records_why() {
    let s = Scratch::new("why");
    let script = s.write(
        "w.rhai",
        r#"let r = train(#{ name: "w", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 8, lr: 1e6, threads: 1 });
print(`status ${r.status} step ${r.divergence.step} cause ${r.divergence.cause}`);"#,
    );
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let line = t.lines().find(|l| l.starts_with("status ")).unwrap_or_else(|| panic!("{t}"));
    assert!(line.starts_with("status diverged step "), "{t}");
    let cause = line.split(" cause ").nth(1).unwrap();
    assert!(["train loss", "regularizer aux loss", "grad norm"].contains(&cause), "{t}");
    let cell = only_run(&s.path().join("runs"));
    let result = std::fs::read_to_string(cell.join("result.ron")).unwrap();
    assert!(result.contains("divergence: Some(") && result.contains(&format!("cause: \"{cause}\"")) && result.contains("grad_norm:"), "{result}");
    let log = std::fs::read_to_string(cell.join("log.txt")).unwrap();
    assert!(log.contains("diverged at step") && log.contains(cause) && log.contains("grad norm"), "{log}");
}

/// `numerics: "portable"` pins the CPU kernels inside the cell process: its losses are
/// bit for bit those of a native cell run under the same settings from outside (ATen at
/// AVX2, oneMKL's compatible branch, oneDNN at AVX2), so the in-process settings take
/// effect before libtorch's first kernel; on an AVX-512 CPU they differ from the native
/// kernels' (the settings change which kernels run). The manifest records the CPU and the
/// settings; a conflicting setting in the environment is refused at plan.
#[test]
fn portable_numerics_pin_the_kernels_in_the_cell_process() {
    let s = Scratch::new("portable");
    let study = |numerics: &str| {
        format!(
            r#"
let r = train(#{{ name: "p", model: "tiny", corpus: "data:corpora/quotes.jsonl", unique_tokens: 8_000, epochs: 1, val_tokens: 256, seq_len: 64, batch_size: 8, threads: 1, numerics: "{numerics}" }});
print(`losses ${{r.final_train_loss}} ${{r.final_val_loss}}`);
"#
        )
    };
    let losses = |runs: &str, numerics: &str, env: &[(&str, &str)]| -> String {
        let script = s.write(&format!("{runs}.rhai"), &study(numerics));
        let mut c = dctk_cmd(s.path());
        c.args(["run", script.to_str().unwrap(), "-q", "--runs", runs]);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        t.lines().find_map(|l| l.strip_prefix("losses ")).unwrap_or_else(|| panic!("{t}")).to_string()
    };
    let has = |flag: &str| std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().split_whitespace().any(|f| f == flag);
    if !(has("avx2") && has("fma")) {
        eprintln!("skipped: portable numerics need AVX2 and FMA");
        return;
    }
    let pinned_env = [("ATEN_CPU_CAPABILITY", "avx2"), ("MKL_CBWR", "COMPATIBLE"), ("ONEDNN_MAX_CPU_ISA", "AVX2")];
    let portable = losses("portable", "portable", &[]);
    let native_pinned = losses("native_pinned", "native", &pinned_env);
    assert_eq!(portable, native_pinned, "in-process portable settings differ from the same settings set outside");
    if has("avx512f") {
        let native = losses("native", "native", &[]);
        assert_ne!(portable, native, "portable settings changed no kernel on an AVX-512 CPU");
    }
    let manifest = std::fs::read_to_string(only_run(&s.path().join("portable")).join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["cpu"]["numerics"], "portable", "{manifest}");
    assert_eq!(m["cpu"]["settings"]["MKL_CBWR"], "COMPATIBLE", "{manifest}");
    assert!(m["cpu"]["simd"].as_array().unwrap().iter().any(|f| f == "avx2"), "{manifest}");

    let script = s.write("conflict.rhai", &study("portable"));
    let out = dctk_cmd(s.path()).args(["plan", script.to_str().unwrap(), "--runs", "conflict"]).env("MKL_CBWR", "AUTO").output().unwrap();
    let t = text(&out);
    assert!(!out.status.success() && t.contains("key \"numerics\"") && t.contains("MKL_CBWR=AUTO"), "{t}");
}

/// `init_from`: a run starts from a finished run's final weights (at a vanishing learning
/// rate it keeps them: its validation loss is the source's), the source's id enters the id,
/// and a model that does not fit the source's is refused naming the key.
#[test]
fn init_from_starts_at_the_source_runs_weights() {
    let s = Scratch::new("init_from");
    let script = s.write(
        "init.rhai",
        r#"
let base = #{ model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, val_tokens: 256, seq_len: 32,
              batch_size: 8, lr: 3e-3, evals_per_epoch: 1, seed: 3, threads: 1 };
let a = base; a.name = "source"; a.epochs = 2;
let src = train(a);
let b = base; b.name = "warm"; b.epochs = 0.25; b.lr = 1e-12; b.weight_decay = 0.0; b.init_from = src;
let c = b; c.name = "cold"; c.remove("init_from");
let warm = train(b);
let cold = train(c);
print(`losses ${src.final_val_loss} ${warm.final_val_loss} ${cold.final_val_loss}`);
print(`ids ${warm.id} ${cold.id}`);
"#,
    );
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let losses: Vec<f64> = t.lines().find_map(|l| l.strip_prefix("losses ")).unwrap().split(' ').map(|p| p.parse().unwrap()).collect();
    assert!((losses[0] - losses[1]).abs() < 1e-4, "warm start should keep the source's loss: {t}");
    assert!(losses[2] - losses[1] > 0.3, "a random start should be far worse: {t}");
    let ids: Vec<&str> = t.lines().find_map(|l| l.strip_prefix("ids ")).unwrap().split(' ').collect();
    assert_ne!(ids[0], ids[1]);

    let bad = s.write(
        "bad.rhai",
        r#"
let src = train(#{ name: "s", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 2, val_tokens: 256,
                   seq_len: 32, batch_size: 8, lr: 3e-3, evals_per_epoch: 1, seed: 3, threads: 1 });
train(#{ name: "wider", model: "tiny", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 0.25, val_tokens: 256,
         seq_len: 32, batch_size: 8, seed: 3, threads: 1, init_from: src });
"#,
    );
    let out = dctk(s.path(), &["run", bad.to_str().unwrap(), "-q"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("key \"init_from\"") && t.contains("does not fit"), "{t}");
}
