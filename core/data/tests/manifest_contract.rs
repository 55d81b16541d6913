//! A corpus manifest is checked, not trusted: the files it names must lie inside the corpus
//! directory (no `..`, no absolute paths, no symlinks out), and its counts and vocabulary must
//! agree with the hash-checked shards and indexes.

mod scratch;
use std::path::{Path, PathBuf};

use dctk_data::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A two-domain corpus in `parent/corpus`.
fn corpus(parent: &Path) -> (PathBuf, CorpusManifest) {
    let out = parent.join("corpus");
    let cfg = IngestConfig {
        out: out.clone(),
        domains: ["code", "math"]
            .iter()
            .map(|d| DomainInput {
                val_fraction: 0.1,
                ..DomainInput::new(*d, vec![fixtures().join(format!("{d}.jsonl"))])
            })
            .collect(),
        ..Default::default()
    };
    let m = ingest(&cfg).unwrap();
    (out, m)
}

fn write_manifest(dir: &Path, m: &CorpusManifest) {
    std::fs::write(dir.join("manifest.ron"), m.to_ron().unwrap()).unwrap();
}

fn open_err(dir: &Path) -> String {
    Corpus::open(dir).unwrap_err().to_string()
}

#[test]
fn manifest_paths_outside_the_corpus_directory_are_refused() {
    let t = scratch::tempdir().unwrap();
    let (dir, m) = corpus(t.path());
    let manifest = dir.join("manifest.ron").display().to_string();
    // A byte-identical copy of the shard outside the corpus: without the check it would open
    // (sizes and hashes match) and train from a file outside every data root.
    let secret = t.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    let shard = dir.join(&m.domains[0].shards[0].tokens_file);
    std::fs::copy(&shard, secret.join("x.tok")).unwrap();
    let up = "../".repeat(dir.components().count()) + &secret.join("x.tok").display().to_string()[1..];
    for (bad, why) in [
        ("../secret/x.tok".to_string(), "not a plain relative path"),
        (up, "not a plain relative path"),
        (secret.join("x.tok").display().to_string(), "is an absolute path"),
        ("/etc/passwd".to_string(), "is an absolute path"),
    ] {
        let mut edited = m.clone();
        edited.domains[0].shards[0].tokens_file = bad.clone();
        write_manifest(&dir, &edited);
        let e = open_err(&dir);
        assert!(
            e.contains(&manifest) && e.contains("domains[code].shards[0].tokens_file") && e.contains(&format!("\"{bad}\"")) && e.contains(why),
            "{bad}: {e}"
        );
        // `data verify` must not reveal the size of a file outside the corpus.
        assert!(!e.contains("bytes, found"), "{e}");
    }
    let mut edited = m.clone();
    edited.domains[1].shards[0].index_file = "../secret/x.idx".into();
    write_manifest(&dir, &edited);
    let e = open_err(&dir);
    assert!(e.contains("domains[math].shards[0].index_file") && e.contains("../secret/x.idx"), "{e}");

    // A symlink inside the corpus that leads outside it is refused after resolving it.
    write_manifest(&dir, &m);
    Corpus::open(&dir).unwrap();
    std::fs::remove_file(&shard).unwrap();
    std::os::unix::fs::symlink(secret.join("x.tok"), &shard).unwrap();
    let e = open_err(&dir);
    assert!(e.contains(&manifest) && e.contains("through a symlink") && e.contains("x.tok"), "{e}");
    // A symlink that stays inside the corpus is fine.
    std::fs::remove_file(&shard).unwrap();
    std::fs::copy(secret.join("x.tok"), dir.join("inside.tok")).unwrap();
    std::os::unix::fs::symlink(dir.join("inside.tok"), &shard).unwrap();
    Corpus::open(&dir).unwrap();
}

#[test]
fn a_manifest_tokenizer_file_outside_the_corpus_is_refused() {
    let t = scratch::tempdir().unwrap();
    let info = TokenizerInfo { kind: "hf".into(), vocab_size: 10, eot_id: 0, hash: "x".into(), file: Some("../tokenizer.json".into()) };
    std::fs::create_dir_all(t.path().join("c")).unwrap();
    std::fs::write(t.path().join("tokenizer.json"), "{}").unwrap();
    let e = Tokenizer::from_info(&info, &t.path().join("c")).err().unwrap().to_string();
    assert!(e.contains("tokenizer.file") && e.contains("../tokenizer.json"), "{e}");
}

#[test]
fn hand_edited_counts_and_vocabulary_are_refused() {
    let t = scratch::tempdir().unwrap();
    let (dir, m) = corpus(t.path());
    let manifest = dir.join("manifest.ron").display().to_string();
    type Edit = fn(&mut CorpusManifest);
    let edits: [(&str, Edit); 6] = [
        ("domains[code].tokens", |m| m.domains[0].tokens += 1000),
        ("domains[math].train_tokens", |m| m.domains[1].train_tokens *= 2),
        ("domains[code].val_tokens", |m| m.domains[0].val_tokens -= 1),
        ("domains[math].docs", |m| m.domains[1].docs += 1),
        ("domains[code].train_docs", |m| m.domains[0].train_docs += 1),
        ("domains[math].val_docs", |m| m.domains[1].val_docs += 1),
    ];
    for (field, edit) in edits {
        let mut edited = m.clone();
        edit(&mut edited);
        write_manifest(&dir, &edited);
        let e = open_err(&dir);
        assert!(e.contains(&manifest) && e.contains(field) && e.contains("shard indexes hold"), "{field}: {e}");
    }
    // A shard's document count must match its index's size (it used to index past the end).
    let mut edited = m.clone();
    edited.domains[0].shards[0].docs += 5;
    write_manifest(&dir, &edited);
    let e = open_err(&dir);
    assert!(e.contains("index_bytes") && e.contains("00000.idx"), "{e}");
    // A vocabulary smaller than the ids the shards hold.
    let mut edited = m.clone();
    edited.tokenizer.vocab_size = 300;
    write_manifest(&dir, &edited);
    let e = open_err(&dir);
    assert!(e.contains("holds token id") && e.contains("vocab_size is 300"), "{e}");
    // The tokenizer's own size is checked against the tokenizer it names.
    let mut edited = m.clone();
    edited.tokenizer.vocab_size += 64;
    write_manifest(&dir, &edited);
    let c = Corpus::open(&dir).unwrap();
    let e = c.tokenizer().err().unwrap().to_string();
    assert!(e.contains("vocab_size") && e.contains(&manifest), "{e}");
    // The untouched manifest opens.
    write_manifest(&dir, &m);
    Corpus::open(&dir).unwrap().tokenizer().unwrap();
}
