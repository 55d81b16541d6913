//! Corpus special tokens (BoLT's latent delimiters; Ruan et al. 2025, arXiv 2503.18866): each
//! is one id after the base vocabulary in the shards, the corpus's tokenizer encodes and
//! decodes them, and a manifest without them (older corpora) still reads.

mod scratch;
use std::path::Path;

use dctk_data::*;

const SPECIALS: [&str; 4] = ["<|START_OF_LATENT|>", "<|END_OF_LATENT|>", "<|PRIOR_PREFIX|>", "<|POSTERIOR_PREFIX|>"];

fn specials() -> Vec<String> {
    SPECIALS.iter().map(|s| s.to_string()).collect()
}

fn ingest_docs(out: &Path, docs: &[&str], special_tokens: Vec<String>, tokenizer: TokenizerSpec) -> CorpusManifest {
    let input = out.with_extension("jsonl");
    let lines: String = docs.iter().map(|d| format!("{}\n", serde_json::json!({ "text": d }))).collect();
    std::fs::write(&input, lines).unwrap();
    let mut d = DomainInput::new("latent", vec![input]);
    d.val_fraction = 0.0;
    ingest(&IngestConfig { out: out.to_path_buf(), domains: vec![d], tokenizer, special_tokens, ..Default::default() }).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn special_tokens_are_single_ids_from_ingest_to_decode() {
    let t = scratch::tempdir().unwrap();
    let doc = "<|START_OF_LATENT|><|PRIOR_PREFIX|>x is 2<|END_OF_LATENT|>So x + 1 = 3.<|START_OF_LATENT|><|END_OF_LATENT|> Done.";
    let m = ingest_docs(&t.path().join("c"), &[doc], specials(), TokenizerSpec::Gpt2);
    assert_eq!(m.special_tokens, specials());
    assert_eq!((m.tokenizer.vocab_size, m.total_ids()), (50_257, 50_261));
    let corpus = Corpus::open(t.path().join("c")).unwrap();
    let ids = corpus.domain("latent").unwrap().train_subset().span_ids(0);
    let base = Tokenizer::gpt2().unwrap();
    let mut want = vec![50_257, 50_259];
    want.extend(base.encode("x is 2"));
    want.push(50_258);
    want.extend(base.encode("So x + 1 = 3."));
    want.extend([50_257, 50_258]);
    want.extend(base.encode(" Done."));
    assert_eq!(ids, want);
    // The corpus's tokenizer knows them: encode gives the same ids, decode the same text.
    let tok = corpus.tokenizer().unwrap();
    assert_eq!(tok.special_tokens(), &specials()[..]);
    assert_eq!(tok.encode(doc), ids);
    assert_eq!(tok.decode(&ids).unwrap(), doc);
    assert_eq!(tok.special_id("<|POSTERIOR_PREFIX|>"), Some(50_260));
    // Without special tokens the same string is ordinary text (many ids, all below the base).
    let plain = base.encode(doc);
    assert!(plain.len() > ids.len() + 10 && plain.iter().all(|&i| i < 50_257));
}

#[test]
fn a_trained_bpe_corpus_numbers_specials_after_its_vocabulary() {
    let t = scratch::tempdir().unwrap();
    let docs: Vec<String> = (0..40).map(|i| format!("The number {i} is {} more than {}. <|START_OF_LATENT|>think<|END_OF_LATENT|>", i % 7, i / 3)).collect();
    let refs: Vec<&str> = docs.iter().map(|s| s.as_str()).collect();
    let m = ingest_docs(&t.path().join("c"), &refs, specials(), TokenizerSpec::TrainBpe { vocab_size: 300, domains: None });
    let v = m.tokenizer.vocab_size;
    let corpus = Corpus::open(t.path().join("c")).unwrap();
    let ids = corpus.domain("latent").unwrap().train_subset().span_ids(0);
    assert_eq!(ids.iter().filter(|&&i| i == v).count(), 1);
    assert_eq!(ids.iter().filter(|&&i| i == v + 1).count(), 1);
    // Budget order is by content key, not input order: span 0 is one of the documents.
    let text = corpus.tokenizer().unwrap().decode(&ids).unwrap();
    assert!(docs.contains(&text), "{text}");
}

#[test]
fn a_manifest_without_special_tokens_reads_and_writes_none() {
    let t = scratch::tempdir().unwrap();
    let m = ingest_docs(&t.path().join("c"), &["plain text"], Vec::new(), TokenizerSpec::Gpt2);
    assert!(m.special_tokens.is_empty());
    let ron = std::fs::read_to_string(t.path().join("c/manifest.ron")).unwrap();
    assert!(!ron.contains("special_tokens"), "an empty list is not written, so older readers and ids are unchanged");
    assert!(Corpus::open(t.path().join("c")).unwrap().tokenizer().unwrap().special_tokens().is_empty());
}

#[test]
fn bad_special_token_lists_are_refused() {
    let t = scratch::tempdir().unwrap();
    let input = t.path().join("a.jsonl");
    std::fs::write(&input, "{\"text\": \"a\"}\n").unwrap();
    for (bad, why) in [(vec!["<|A|>".to_string(), "<|A|>".to_string()], "twice"), (vec![String::new()], "empty")] {
        let cfg = IngestConfig { out: t.path().join("c"), domains: vec![DomainInput::new("a", vec![input.clone()])], special_tokens: bad, ..Default::default() };
        let e = ingest(&cfg).unwrap_err().to_string();
        assert!(e.contains("special_tokens") && e.contains(why), "{e}");
        assert!(!t.path().join("c").exists());
    }
}
