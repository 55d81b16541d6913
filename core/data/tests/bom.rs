//! A UTF-8 byte-order mark (U+FEFF, which Windows editors put at the start of a file) is not
//! part of the JSON: JSONL inputs, a `tokenizer.json` and a corpus `manifest.ron` that start
//! with one read as without it.

mod scratch;
use std::path::{Path, PathBuf};

use dctk_data::*;

const BOM: &str = "\u{feff}";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn ingest_one(out: &Path, input: &Path, tokenizer: TokenizerSpec) -> CorpusManifest {
    ingest(&IngestConfig {
        out: out.to_path_buf(),
        domains: vec![DomainInput::new("quotes", vec![input.to_path_buf()])],
        tokenizer,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn shards(dir: &Path) -> Vec<Vec<u8>> {
    let m = CorpusManifest::read(dir).unwrap();
    m.domains[0].shards.iter().flat_map(|s| [std::fs::read(dir.join(&s.tokens_file)).unwrap(), std::fs::read(dir.join(&s.index_file)).unwrap()]).collect()
}

#[test]
fn a_byte_order_mark_is_not_json() {
    let t = scratch::tempdir().unwrap();
    let plain = std::fs::read_to_string(fixtures().join("quotes.jsonl")).unwrap();
    // A BOM at the start of the file, and one at the start of a later line (`cat` of two such
    // files), read as the same documents.
    let lines: Vec<&str> = plain.lines().collect();
    let (head, tail) = lines.split_at(lines.len() / 2);
    let with_bom = format!("{BOM}{}\n{BOM}{}\n", head.join("\n"), tail.join("\n"));
    let (a, b) = (t.path().join("plain.jsonl"), t.path().join("bom.jsonl"));
    std::fs::write(&a, &plain).unwrap();
    std::fs::write(&b, &with_bom).unwrap();
    let ma = ingest_one(&t.path().join("a"), &a, TokenizerSpec::Gpt2);
    let mb = ingest_one(&t.path().join("b"), &b, TokenizerSpec::Gpt2);
    assert_eq!((ma.domains[0].docs, ma.domains[0].tokens), (mb.domains[0].docs, mb.domains[0].tokens));
    assert_eq!(shards(&t.path().join("a")), shards(&t.path().join("b")), "same documents, same tokens");

    // A tokenizer.json with a BOM loads as the file without it.
    let tok = Tokenizer::train_bpe(&[a.clone()], 400).unwrap();
    let file = t.path().join("tokenizer.json");
    tok.save(&file).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{BOM}{text}")).unwrap();
    let loaded = Tokenizer::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.hash(), tok.hash());
    let mc = ingest_one(&t.path().join("c"), &b, TokenizerSpec::HfFile { path: file, eot_token: None });
    assert_eq!(mc.tokenizer.hash, tok.hash());

    // A hand-edited manifest saved with a BOM still opens.
    let dir = t.path().join("a");
    let m = std::fs::read_to_string(dir.join("manifest.ron")).unwrap();
    std::fs::write(dir.join("manifest.ron"), format!("{BOM}{m}")).unwrap();
    Corpus::open(&dir).unwrap_or_else(|e| panic!("{e}"));
}
