//! BoLT latent thoughts end to end (Ruan et al. 2025, arXiv 2503.18866): a corpus ingested
//! with the four special tokens trains a model whose embedding has rows for them; the loaded
//! model encodes them as single ids, decodes them back, may generate them (so a stop sequence
//! on `<|END_OF_LATENT|>` ends a thought), and scores a prior-format text; and the
//! `latent_thoughts` augmenter's E-step (K = 2) runs on a real document with the real
//! `LocalGenerator` for the samples and the real model as scorer.
use std::path::Path;

use dctk::generate::augment::{AugAnswer, Augmenter, Scorer, SourceText};
use dctk::generate::generator::{Generator, LocalGenerator, TextRequest};
use dctk::generate::latent::chunk::Chunking;
use dctk::generate::latent::format::prior_form;
use dctk::generate::latent::resample::importance_resample;
use dctk::generate::latent::{joint_continuation, posterior_prompt, LatentSettings, LatentThoughts, EOL, POSTERIOR, PRIOR, SOL, SPECIAL_TOKENS};
use dctk::generate::{FinishReason, GenRequest, LoadedModel, SamplingParams};

#[path = "support/mod.rs"]
mod support;
use support::*;

/// Thought-augmented arithmetic in the prior and posterior forms, regular enough that a
/// one-layer model learns where a thought ends.
fn training_docs() -> Vec<String> {
    (0..400)
        .map(|i| {
            let (a, b) = (i % 10, (i / 10) % 10);
            let z = format!("add {a} and {b}");
            let x = format!("{a} plus {b} is {}.", a + b);
            if i % 2 == 0 {
                prior_form(&z, &x)
            } else {
                format!("{SOL}{EOL}{x}{SOL}{POSTERIOR}{z}{EOL}")
            }
        })
        .collect()
}

fn write_input(dir: &Path) {
    let lines: String = training_docs().iter().map(|d| format!("{}\n", serde_json::json!({ "text": d }))).collect();
    std::fs::write(dir.join("latent.jsonl"), lines).unwrap();
}

#[test]
fn special_tokens_train_load_generate_score_and_drive_the_e_step() {
    let s = Scratch::new("latent");
    write_input(s.path());
    let script = s.write(
        "l.rhai",
        r#"let c = ingest(#{ inputs: ["latent.jsonl"], out: "corpus",
                  special_tokens: ["<|START_OF_LATENT|>", "<|END_OF_LATENT|>", "<|PRIOR_PREFIX|>", "<|POSTERIOR_PREFIX|>"] });
print(`specials ${c.special_tokens.len()} vocab ${c.vocab_size}`);
let r = train(#{ name: "latent", model: "micro", corpus: "corpus", unique_tokens: 5_000, epochs: 8,
                          val_tokens: 256, seq_len: 64, batch_size: 8, lr: 5e-3, seed: 1, threads: 1 });
print(`run ${r.status}`);"#,
    );
    let out = dctk(s.path(), &["run", script.to_str().unwrap(), "-q", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("run done") && text(&out).contains("specials 4 vocab 50257"), "{}", text(&out));
    let run = only_run(&s.path().join("runs"));

    // The model has rows for the special tokens, before any plugin ids.
    let model = LoadedModel::open(&run, tch::Device::Cpu).unwrap();
    assert_eq!((model.vocab.base, model.vocab.corpus_specials(), model.vocab.text_ids()), (50_257, 4, 50_261));
    assert_eq!(model.vocab.extra[0].plugin, "corpus");
    assert!(model.config.vocab_size >= 50_261);

    // Single ids from prompt text, and back.
    for (i, s) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(model.encode(s), vec![50_257 + i as u32], "{s}");
    }
    let t = format!("{SOL}{PRIOR}add 2 and 3{EOL}2 plus 3 is 5.");
    let ids = model.encode(&t);
    assert_eq!(&ids[..2], &[50_257, 50_259]);
    assert_eq!(ids.iter().filter(|&&i| i >= 50_257).count(), 3);
    assert_eq!(model.decode(&ids).unwrap(), t);

    // Generation may emit a special token: greedy after a thought's text, the model closes
    // it, and the stop sequence on the rendered EoL ends the completion.
    let prompt = model.encode(&format!("{SOL}{PRIOR}add 4 and 7"));
    let params = SamplingParams { max_tokens: 6, temperature: 0.0, stop: vec![EOL.to_string()], ..Default::default() };
    let c = model.generate(&[GenRequest { prompt, params }]).unwrap().remove(0);
    assert!(c.tokens.contains(&50_258), "tokens {:?} text {:?}", c.tokens, c.text);
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert!(!c.text.contains(EOL));

    // Scoring a prior-format text: the Scorer is the sum of the model's own token scores.
    let z_x = prior_form("add 2 and 3", "2 plus 3 is 5.");
    let via_scorer = Scorer::score(&model, &[(String::new(), z_x.clone())]).unwrap()[0];
    let direct: f64 = model.score(&[], &model.encode(&z_x)).unwrap().iter().map(|&v| f64::from(v)).sum();
    assert!(via_scorer.is_finite() && via_scorer < 0.0, "{via_scorer}");
    assert!((via_scorer - direct).abs() < 1e-6);
    // A pair longer than the context loses context tokens from the left; a continuation that
    // alone does not fit is an error.
    let max = model.config.max_seq_len as usize;
    let long_context = "one two three ".repeat(max);
    let (ci, xi) = (model.encode(&long_context), model.encode(&z_x));
    assert!(ci.len() + xi.len() > max);
    let got = Scorer::score(&model, &[(long_context, z_x.clone())]).unwrap()[0];
    let want: f64 = model.score(&ci[ci.len() - (max - xi.len())..], &xi).unwrap().iter().map(|&v| f64::from(v)).sum();
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    let e = Scorer::score(&model, &[(String::new(), z_x.clone()), (String::new(), "word ".repeat(max))]).unwrap_err().to_string();
    assert!(e.contains("item 1") && e.contains("context"), "{e}");

    // The E-step on one document: K = 2 posterior samples per chunk from the real local
    // generator, scored by the real model, resampled.
    let text = "Two plus three is five. Add one more. Now it is six. Double it. That is twelve. Halve it. Back to six.";
    let doc = SourceText { domain: "math", index: 0, key: dctk_data::manifest::doc_key(text), text };
    let aug = LatentThoughts::new(LatentSettings { samples: 2, max_tokens: Some(8), format: "random".into(), ..Default::default() }).unwrap();
    let plan = aug.plan(&doc).unwrap();
    let chunking = Chunking::of(text);
    assert_eq!(plan.len(), 2 * chunking.len());
    assert_eq!(plan, aug.plan(&doc).unwrap());
    let requests: Vec<TextRequest> = plan
        .iter()
        .enumerate()
        .map(|(j, r)| TextRequest {
            prompt: r.prompt.clone(),
            params: SamplingParams {
                max_tokens: r.max_tokens.unwrap(),
                temperature: r.temperature.unwrap(),
                stop: r.stop.clone().unwrap(),
                seed: 100 + j as u64,
                ..Default::default()
            },
        })
        .collect();
    let generator = LocalGenerator::new(model, 4);
    let done: Vec<_> = generator.complete(&requests, &|_, _| {}).into_iter().map(|r| r.unwrap()).collect();
    let answers: Vec<AugAnswer> = done.iter().map(|c| AugAnswer { text: &c.text, finish_reason: &c.finish_reason }).collect();
    let model = generator.model.lock().unwrap();
    let out = aug.assemble(&doc, &answers, Some(&*model as &dyn Scorer)).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].stats["chunks"], chunking.len() as f64);
    let elbo_sum = out[0].stats["elbo_sum"];
    assert!(elbo_sum.is_finite() && elbo_sum < 0.0, "{elbo_sum}");
    // The first chunk's ELBO, recomputed from the model's token scores.
    let x0 = chunking.chunk(0);
    let (mut log_p, mut log_q) = (Vec::new(), Vec::new());
    for a in &answers[..2] {
        // As the augmenter cleans a thought: cut at the first special token.
        let z = &a.text[..SPECIAL_TOKENS.iter().filter_map(|s| a.text.find(s)).min().unwrap_or(a.text.len())];
        let p: f32 = model.score(&[], &model.encode(&joint_continuation(z, &x0))).unwrap().iter().sum();
        let q: f32 = model.score(&model.encode(&posterior_prompt("N/A", &x0)), &model.encode(z)).unwrap().iter().sum();
        log_p.push(f64::from(p));
        log_q.push(f64::from(q));
    }
    let elbo0 = importance_resample(&log_p, &log_q, 0.5).unwrap().elbo;
    assert!((out[0].meta["elbo"][0].as_f64().unwrap() - elbo0).abs() < 1e-3, "{} vs {elbo0}", out[0].meta["elbo"][0]);
    // The output is training text whose delimiters are single ids again.
    let ids = model.encode(&out[0].text);
    assert!(ids.iter().filter(|&&i| i == 50_257).count() >= chunking.len(), "{}", out[0].text);
    assert_eq!(model.decode(&ids).unwrap(), out[0].text);
    assert_eq!(aug.special_tokens(), SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect::<Vec<_>>());
}

#[test]
fn dctk_data_ingest_takes_special_tokens_in_id_order() {
    let s = Scratch::new("latent-cli");
    s.write("t.jsonl", &format!("{}\n", serde_json::json!({ "text": format!("a{EOL}b{SOL}c") })));
    let out = dctk(s.path(), &["data", "ingest", "t.jsonl", "--out", "c", "--val-fraction", "0", "--special-token", SOL, "--special-token", EOL]);
    assert!(out.status.success(), "{}", text(&out));
    let corpus = dctk_data::Corpus::open(s.path().join("c")).unwrap();
    assert_eq!(corpus.special_tokens(), &[SOL.to_string(), EOL.to_string()]);
    let ids = corpus.domain("t").unwrap().train_subset().span_ids(0);
    let gpt2 = dctk_data::Tokenizer::gpt2().unwrap();
    let want: Vec<u32> = [gpt2.encode("a"), vec![50_258], gpt2.encode("b"), vec![50_257], gpt2.encode("c")].concat();
    assert_eq!(ids, want);
}
