//! `dctk export-hf`: a trained run, exported, loads in Hugging Face `transformers`
//! (`AutoModelForCausalLM`, `AutoTokenizer`; the venv of `tools/hf_env.sh`) and gives dctk's
//! ids and dctk's logits (to 1e-4) on the same texts, for the built-in GPT-2 tokenizer and for a
//! BPE trained by dctk. The transformers side is tests/support/hf_check.py.
#[path = "support/mod.rs"]
mod support;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// The largest |dctk − transformers| logit difference the export may have.
const MAX_LOGIT_ABS_DIFF: f32 = 1e-4;

/// Texts with unicode, runs of spaces, tabs, newlines, digits and code.
const TEXTS: &[&str] = &[
    "The quick brown fox jumps over the lazy dog. It's 2026!",
    "  Two leading spaces,\ttabs\t\tand\n\nnewlines\r\n   and trailing   ",
    "Ünïcödé: café €3.50 — 日本語 🎉, digits 1234567890 and 3.14159.",
    "def f(x):\n    return x ** 2  # squared\n",
];

/// The venv's python (`DCTK_HF_PYTHON` overrides), from `tools/hf_env.sh`: idempotent and
/// locked, so this waits for the install `.ci/run` started in the background (the ~4.9 GB
/// download then overlaps the build and the tests before this one), or installs it.
/// Missing is a failure, not a skip: this check is part of CI.
fn hf_python() -> PathBuf {
    if let Some(python) = std::env::var_os("DCTK_HF_PYTHON") {
        return PathBuf::from(python);
    }
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = Command::new("bash").arg(repo_root().join("tools/hf_env.sh")).output().expect("running bash tools/hf_env.sh");
            assert!(out.status.success(), "tools/hf_env.sh failed (the transformers venv):\n{}", text(&out));
            let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            assert!(python.exists(), "{}: tools/hf_env.sh printed no python", python.display());
            python
        })
        .clone()
}

/// Ingests the bundled quotes in `dir` with `tokenizer`, trains a micro model on them in
/// `precision` (fp32 or bf16: the checkpoint's, which the export keeps), and
/// returns its run. (An explicit ingest, so the manifest records the corpus by absolute path
/// and the library can open the run from the test's own working directory.)
fn train_micro(dir: &Path, tokenizer: &str, precision: &str) -> PathBuf {
    let quotes = repo_root().join("data/corpora/quotes.jsonl");
    let out = dctk(dir, &["data", "ingest", quotes.to_str().unwrap(), "--out", "corpus", "--tokenizer", tokenizer, "--val-fraction", "0.05", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out));
    // A high learning rate, so the norm gains move off 1 and a swapped norm would show.
    let script = format!(
        r#"let r = train(#{{ name: "m", model: "micro", corpus: "corpus", unique_tokens: 3_000, epochs: 1, val_tokens: 256, seq_len: 64, batch_size: 4, lr: 0.01, precision: "{precision}", threads: 1 }});
print(`status ${{r.status}}`);"#
    );
    let path = dir.join("m.rhai");
    std::fs::write(&path, script).unwrap();
    let out = dctk(dir, &["run", path.to_str().unwrap(), "-q"]);
    let t = text(&out);
    assert!(out.status.success() && t.contains("status done"), "{t}");
    only_run(&dir.join("runs"))
}

fn export(dir: &Path, run: &Path, out: &Path, force: bool) -> std::process::Output {
    let mut args = vec!["export-hf", run.to_str().unwrap(), "--out", out.to_str().unwrap()];
    if force {
        args.push("--force");
    }
    dctk(dir, &args)
}

/// Loads the export in transformers and compares its tokenizer's ids and its logits with dctk's.
fn check_in_transformers(run: &Path, hf_dir: &Path, scratch: &Path, want_tokenizer_class: &str) {
    let model = dctk::generate::LoadedModel::open(run, tch::Device::Cpu).unwrap();
    let max_len = model.config.max_seq_len as usize;
    let dctk_ids: Vec<Vec<u32>> = TEXTS.iter().map(|t| model.encode(t)).collect();
    // The model runs on at most its context; the tokenizer is compared on the whole text.
    let run_ids: Vec<Vec<u32>> = dctk_ids.iter().map(|ids| ids[..ids.len().min(max_len)].to_vec()).collect();
    let input = scratch.join("hf_in.json");
    std::fs::write(&input, serde_json::json!({ "texts": TEXTS, "ids": run_ids }).to_string()).unwrap();
    let out_dir = scratch.join("hf_out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let script = repo_root().join("tests/support/hf_check.py");
    let out = Command::new(hf_python())
        .args([script.as_os_str(), "--model".as_ref(), hf_dir.as_os_str(), "--input".as_ref(), input.as_os_str(), "--out".as_ref(), out_dir.as_os_str()])
        .output()
        .expect("running hf_check.py");
    assert!(out.status.success(), "hf_check.py failed: {}", text(&out));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["model_class"], "LlamaForCausalLM", "{report}");
    assert_eq!(report["tokenizer_class"], want_tokenizer_class, "{report}");
    assert!(report["rope_inv_freq_max_abs_diff"].as_f64().unwrap() < 1e-6, "{report}");

    let hf_ids: Vec<Vec<u32>> = serde_json::from_value(report["ids"].clone()).unwrap();
    for ((text, want), got) in TEXTS.iter().zip(&dctk_ids).zip(&hf_ids) {
        assert_eq!(got, want, "AutoTokenizer's ids differ from dctk's on {text:?}");
    }
    let decoded: Vec<String> = serde_json::from_value(report["decoded"].clone()).unwrap();
    for (ids, got) in run_ids.iter().zip(&decoded) {
        assert_eq!(*got, model.decode(ids).unwrap(), "decoding {ids:?}");
    }

    let bytes = std::fs::read(out_dir.join("logits.f32")).unwrap();
    let hf_logits: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let vocab = model.config.vocab_size as usize;
    let mut offset = 0;
    let (mut max_diff, mut max_logit) = (0f32, 0f32);
    for ids in &run_ids {
        let ours = dctk::hf::dctk_logits(&model, ids).unwrap();
        assert_eq!(ours.len(), ids.len() * vocab);
        let theirs = &hf_logits[offset..offset + ours.len()];
        offset += ours.len();
        for (a, b) in ours.iter().zip(theirs) {
            max_diff = max_diff.max((a - b).abs());
            max_logit = max_logit.max(a.abs());
        }
    }
    assert_eq!(offset, hf_logits.len(), "transformers returned more logits than asked");
    // Logits near zero would match anything: the model must say something.
    assert!(max_logit > 0.5, "dctk's logits are all near zero ({max_logit}): the comparison would prove nothing");
    assert!(max_diff <= MAX_LOGIT_ABS_DIFF, "max |dctk − transformers| logit difference {max_diff} > {MAX_LOGIT_ABS_DIFF}");
    eprintln!("{}: max |logit diff| {max_diff:.2e} over {} logits (max |logit| {max_logit:.2})", hf_dir.display(), hf_logits.len());
}

/// The default GPT-2 tokenizer: the built tokenizer.json, config, weights; refusals and --force.
#[test]
fn gpt2_run_exports_and_matches_in_transformers() {
    let s = Scratch::new("hf-gpt2");
    let run = train_micro(s.path(), "gpt2", "fp32");
    let hf_dir = s.path().join("hf");
    let out = export(s.path(), &run, &hf_dir, false);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for f in ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
        assert!(hf_dir.join(f).is_file() && t.contains(f), "{f} missing: {t}");
    }
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(hf_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!((config["vocab_size"].as_i64(), config["eos_token_id"].as_i64()), (Some(50_304), Some(50_256)), "{config}");
    assert_eq!(config["dctk"]["run_id"].as_str(), run.file_name().unwrap().to_str());
    assert_eq!(config["torch_dtype"], "float32");
    // No stray temporary directory is left beside the export.
    let debris: Vec<_> = std::fs::read_dir(s.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains(".tmp-")).collect();
    assert!(debris.is_empty(), "{debris:?}");

    check_in_transformers(&run, &hf_dir, s.path(), "GPT2Tokenizer");

    // A non-empty --out is refused, and left as it was; --force replaces it whole.
    std::fs::write(hf_dir.join("mine.txt"), "keep").unwrap();
    let out = export(s.path(), &run, &hf_dir, false);
    assert!(!out.status.success() && text(&out).contains("exists and is not empty; pass --force"), "{}", text(&out));
    assert!(hf_dir.join("mine.txt").exists());
    let out = export(s.path(), &run, &hf_dir, true);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!hf_dir.join("mine.txt").exists() && hf_dir.join("model.safetensors").exists());
    // --force replaces only an earlier export, never some other directory.
    let other = s.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let out = export(s.path(), &run, &other, true);
    assert!(!out.status.success() && text(&out).contains("not an earlier dctk export"), "{}", text(&out));
    assert!(other.join("notes.txt").exists());
    // Bad input: a directory that is not a run; an --out whose parent does not exist.
    let out = export(s.path(), s.path(), &s.path().join("x"), false);
    assert!(!out.status.success() && text(&out).contains("not a dctk run directory"), "{}", text(&out));
    let out = export(s.path(), &run, &s.path().join("no/such/dir"), false);
    assert!(!out.status.success() && text(&out).contains("parent directory"), "{}", text(&out));
    assert!(!s.path().join("x").exists());
}

/// A corpus with a BPE trained by dctk (its tokenizer.json is copied: PreTrainedTokenizerFast),
/// and a bf16 run: the export keeps bf16 weights, which transformers upcasts to compare.
#[test]
fn bpe_run_exports_and_matches_in_transformers() {
    let s = Scratch::new("hf-bpe");
    let run = train_micro(s.path(), "bpe:1024", "bf16");
    let hf_dir = s.path().join("hf-bpe");
    let out = export(s.path(), &run, &hf_dir, false);
    assert!(out.status.success(), "{}", text(&out));
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(hf_dir.join("config.json")).unwrap()).unwrap();
    let vocab = config["vocab_size"].as_i64().unwrap();
    assert!(vocab <= 1024 && vocab % 64 == 0 && Some(vocab) == config["dctk"]["vocab"]["padded"].as_i64(), "{config}");
    assert_eq!((config["torch_dtype"].as_str(), config["dtype"].as_str()), (Some("bfloat16"), Some("bfloat16")), "{config}");
    let header = std::fs::read(hf_dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(header[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&header[8..8 + n]).unwrap();
    assert_eq!(header["lm_head.weight"]["dtype"], "BF16", "{header}");
    assert_eq!(header["__metadata__"]["format"], "pt", "{header}");
    check_in_transformers(&run, &hf_dir, s.path(), "TokenizersBackend");
}
