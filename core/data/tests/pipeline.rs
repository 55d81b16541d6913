//! End-to-end checks of the data pipeline on the bundled 7-domain fixtures (`tests/data/`,
//! ~100 KB per domain, cut from the corpus slices described in the README).

mod scratch;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dctk_data::*;

const DOMAINS: [&str; 7] = [
    "code",
    "dialogue",
    "docs",
    "literature",
    "math",
    "quotes",
    "reference",
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn seven_domain_config(out: &Path) -> IngestConfig {
    IngestConfig {
        out: out.to_path_buf(),
        domains: DOMAINS
            .iter()
            .map(|d| DomainInput {
                val_fraction: 0.1,
                ..DomainInput::new(*d, vec![fixtures().join(format!("{d}.jsonl"))])
            })
            .collect(),
        chunk_bytes: 64 << 10, // small chunks so the tests exercise chunking and parallelism
        shard_tokens: 40_000,  // several shards per domain
        ..Default::default()
    }
}

/// The 7-domain corpus, ingested once per test binary.
fn corpus_dir() -> &'static Path {
    static DIR: OnceLock<(scratch::TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = DIR.get_or_init(|| {
        let t = scratch::tempdir().unwrap();
        let out = t.path().join("corpus");
        ingest(&seven_domain_config(&out)).unwrap();
        (t, out)
    });
    p
}

fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    m
}

fn no_leftovers(parent: &Path) {
    let left: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn gpt2_ids_match_tiktoken_r50k() {
    let t = Tokenizer::gpt2().unwrap();
    assert_eq!(
        t.encode("Hello world! It is a truth universally acknowledged."),
        vec![15496, 995, 0, 632, 318, 257, 3872, 26208, 10810, 13]
    );
    assert_eq!(t.eot_id(), 50256);
    assert_eq!(t.vocab_size(), 50257);
    assert!(t.fits_u16());
    // A literal separator inside a document stays text.
    assert!(!t.encode("a <|endoftext|> b").contains(&50256));
    assert_eq!(
        t.decode(&t.encode("naïve café ☕")).unwrap(),
        "naïve café ☕"
    );
    assert_eq!(t.hash(), Tokenizer::gpt2().unwrap().hash());
}

#[test]
fn reingest_is_byte_identical_and_round_trips() {
    let t = scratch::tempdir().unwrap();
    let b = t.path().join("again");
    let m2 = ingest(&seven_domain_config(&b)).unwrap();
    let a = read_tree(corpus_dir());
    let bb = read_tree(&b);
    assert_eq!(a.keys().collect::<Vec<_>>(), bb.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert!(v == &bb[k], "{k} differs between ingests");
    }
    // Manifest content and the token round trip.
    let c = Corpus::open(corpus_dir()).unwrap();
    assert_eq!(c.manifest, m2);
    assert_eq!(c.manifest.token_bytes, 2);
    assert_eq!(c.domain_names(), DOMAINS.to_vec());
    let tok = c.tokenizer().unwrap();
    let first_quote: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(fixtures().join("quotes.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let q = c.domain("quotes").unwrap();
    let d0 = q.docs()[0];
    let sub = q.unique_subset(0).unwrap();
    assert_eq!(sub.unique_tokens, 0);
    let ids = {
        let mut v = Vec::new();
        // read through a one-document subset built from the whole split
        let all = q.train_subset();
        for i in 0..all.docs() {
            if all.spans[i].start == d0.start && all.spans[i].shard == d0.shard {
                v = all.span_ids(i);
            }
        }
        if v.is_empty() {
            let val = q.val_subset();
            for i in 0..val.docs() {
                if val.spans[i].start == d0.start && val.spans[i].shard == d0.shard {
                    v = val.span_ids(i);
                }
            }
        }
        v
    };
    assert_eq!(
        tok.decode(&ids).unwrap(),
        first_quote["text"].as_str().unwrap()
    );
    for d in c.domains() {
        let m = &d.manifest;
        assert_eq!(m.tokens, m.train_tokens + m.val_tokens);
        assert_eq!(m.docs, m.train_docs + m.val_docs);
        assert_eq!(m.tokens, d.docs().iter().map(|x| x.tokens).sum::<u64>());
        assert_eq!(m.sources.len(), 1);
        assert_eq!(
            m.sources[0].blake3,
            blake3::hash(&std::fs::read(fixtures().join(format!("{}.jsonl", d.name))).unwrap())
                .to_hex()
                .to_string()
        );
    }
    assert!(
        c.domain("code").unwrap().manifest.shards.len() > 1,
        "fixture should span several shards"
    );
}

#[test]
fn gz_text_and_directory_inputs() {
    let t = scratch::tempdir().unwrap();
    // JSONL.gz gives the same tokens as JSONL.
    let raw = std::fs::read(fixtures().join("dialogue.jsonl")).unwrap();
    let gz_path = t.path().join("in/dialogue.jsonl.gz");
    std::fs::create_dir_all(gz_path.parent().unwrap()).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &raw).unwrap();
    std::fs::write(&gz_path, enc.finish().unwrap()).unwrap();
    // A directory of text files, one document each, plus a `%`-separated file.
    let txt = t.path().join("txt");
    std::fs::create_dir_all(txt.join("sub")).unwrap();
    std::fs::write(txt.join("b.txt"), "second file").unwrap();
    std::fs::write(txt.join("sub/a.txt"), "first file\nwith two lines").unwrap();
    std::fs::write(txt.join(".hidden"), "ignored").unwrap();
    let fortunes = t.path().join("fortunes");
    std::fs::write(&fortunes, "one\n%\ntwo\nlines\n%\nthree\n").unwrap();
    let cfg = IngestConfig {
        out: t.path().join("out"),
        domains: vec![
            DomainInput::new("plain", vec![fixtures().join("dialogue.jsonl")]),
            DomainInput::new("gz", vec![gz_path.clone()]),
            DomainInput::new("txt", vec![txt.clone()]),
            DomainInput {
                input: InputSpec {
                    format: InputFormat::Text,
                    text_split: TextSplit::SeparatorLine("%".into()),
                    ..Default::default()
                },
                ..DomainInput::new("fortunes", vec![fortunes])
            },
        ],
        threads: 2,
        ..Default::default()
    };
    let m = ingest(&cfg).unwrap();
    assert_eq!(
        m.domains[0].shards[0].tokens_blake3,
        m.domains[1].shards[0].tokens_blake3
    );
    assert_eq!(m.domains[0].tokens, m.domains[1].tokens);
    let file_hash = |p: &Path| {
        blake3::hash(&std::fs::read(p).unwrap())
            .to_hex()
            .to_string()
    };
    assert_eq!(
        m.domains[1].sources[0].blake3,
        file_hash(&gz_path),
        "sources are hashed as stored (compressed)"
    );
    assert_eq!(
        m.domains[1].sources[0].bytes,
        std::fs::metadata(&gz_path).unwrap().len()
    );
    assert_eq!(
        m.domains[2].sources[1].blake3,
        file_hash(&txt.join("sub/a.txt"))
    );
    assert_eq!(m.domains[2].docs, 2);
    assert_eq!(m.domains[2].sources.len(), 2);
    assert!(
        m.domains[2].sources[0].path.ends_with("b.txt"),
        "sorted order: {:?}",
        m.domains[2].sources
    );
    assert_eq!(m.domains[3].docs, 3);
    let c = Corpus::open(t.path().join("out")).unwrap();
    let tok = c.tokenizer().unwrap();
    let f = c.domain("fortunes").unwrap();
    let texts: Vec<String> = f
        .docs()
        .iter()
        .map(|d| {
            let s = Subset::clone(&f.train_subset());
            let i = s.spans.iter().position(|x| x.start == d.start).or(None);
            match i {
                Some(i) => tok.decode(&s.span_ids(i)).unwrap(),
                None => {
                    let v = f.val_subset();
                    let i = v.spans.iter().position(|x| x.start == d.start).unwrap();
                    tok.decode(&v.span_ids(i)).unwrap()
                }
            }
        })
        .collect();
    assert_eq!(texts, vec!["one\n", "two\nlines\n", "three\n"]);
}

#[test]
fn dedup_drops_exact_duplicates() {
    let t = scratch::tempdir().unwrap();
    let p = t.path().join("dup.jsonl");
    std::fs::write(
        &p,
        "{\"text\":\"same\"}\n{\"text\":\"other\"}\n\n{\"text\":\"same\"}\n{\"text\":\"\"}\n",
    )
    .unwrap();
    let q = t.path().join("dup2.jsonl");
    std::fs::write(&q, "{\"text\":\"other\"}\n").unwrap();
    let cfg = |dedup, out: &str| IngestConfig {
        out: t.path().join(out),
        domains: vec![
            DomainInput::new("a", vec![p.clone()]),
            DomainInput::new("b", vec![q.clone()]),
        ],
        dedup,
        ..Default::default()
    };
    let m = ingest(&cfg(true, "d")).unwrap();
    assert_eq!(
        (
            m.domains[0].docs,
            m.domains[0].dropped_duplicates,
            m.domains[0].dropped_empty
        ),
        (2, 1, 1)
    );
    assert_eq!(
        (m.domains[1].docs, m.domains[1].dropped_duplicates),
        (0, 1),
        "dedup is across domains"
    );
    let m = ingest(&cfg(false, "n")).unwrap();
    assert_eq!(m.domains[0].docs, 3);
}

fn err_of(lines: &str, field: &str) -> (String, scratch::TempDir) {
    let t = scratch::tempdir().unwrap();
    let p = t.path().join("in.jsonl");
    std::fs::write(&p, lines).unwrap();
    let parent = t.path().join("outs");
    std::fs::create_dir_all(&parent).unwrap();
    let mut d = DomainInput::new("a", vec![p]);
    d.input.text_field = field.into();
    let e = ingest(&IngestConfig {
        out: parent.join("out"),
        domains: vec![d],
        ..Default::default()
    })
    .unwrap_err();
    no_leftovers(&parent);
    (e.to_string(), t)
}

#[test]
fn bad_inputs_name_file_and_line_and_write_nothing() {
    let (e, _t) = err_of(
        "{\"text\":\"ok\"}\n{\"text\":\"ok2\"}\n{\"text\": oops}\n",
        "text",
    );
    assert!(e.contains("in.jsonl:3: malformed JSON"), "{e}");
    let (e, _t) = err_of("{\"text\":\"ok\"}\n{\"body\":\"no text\"}\n", "text");
    assert!(e.contains("in.jsonl:2: field `text` is missing"), "{e}");
    let (e, _t) = err_of("{\"text\":\"ok\"}\n{\"content\":7}\n", "content");
    assert!(e.contains("in.jsonl:1: field `content`"), "{e}");
    // Invalid UTF-8 on line 2.
    let t = scratch::tempdir().unwrap();
    let p = t.path().join("bad.jsonl");
    std::fs::write(&p, b"{\"text\":\"ok\"}\n{\"text\":\"\xff\"}\n").unwrap();
    let e = ingest(&IngestConfig {
        out: t.path().join("o"),
        domains: vec![DomainInput::new("a", vec![p])],
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("bad.jsonl:2: not valid UTF-8"), "{e}");
    assert!(!t.path().join("o").exists());
}

#[test]
fn unreadable_parquet_names_the_file() {
    let t = scratch::tempdir().unwrap();
    let p = t.path().join("broken.parquet");
    std::fs::write(&p, b"PAR1 this is not really parquet PAR1").unwrap();
    let parent = t.path().join("outs");
    std::fs::create_dir_all(&parent).unwrap();
    let e = ingest(&IngestConfig {
        out: parent.join("o"),
        domains: vec![DomainInput::new("a", vec![p])],
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("broken.parquet") && e.to_lowercase().contains("parquet"),
        "{e}"
    );
    no_leftovers(&parent);
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_matches_jsonl() {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;
    let texts: Vec<String> = std::fs::read_to_string(fixtures().join("docs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let t = scratch::tempdir().unwrap();
    let pq = t.path().join("docs.parquet");
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message schema { required binary id (UTF8); required binary text (UTF8); }",
        )
        .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_max_row_group_row_count(Some(5))
            .build(),
    );
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(&pq).unwrap(), schema, props).unwrap();
    for chunk in texts.chunks(5) {
        let mut rg = w.next_row_group().unwrap();
        for col in 0..2 {
            let mut c = rg.next_column().unwrap().unwrap();
            let vals: Vec<ByteArray> = chunk
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    if col == 0 {
                        ByteArray::from(format!("id{i}").as_str())
                    } else {
                        ByteArray::from(s.as_str())
                    }
                })
                .collect();
            c.typed::<ByteArrayType>()
                .write_batch(&vals, None, None)
                .unwrap();
            c.close().unwrap();
        }
        rg.close().unwrap();
    }
    w.close().unwrap();
    let m = ingest(&IngestConfig {
        out: t.path().join("o"),
        domains: vec![
            DomainInput::new("pq", vec![pq]),
            DomainInput::new("js", vec![fixtures().join("docs.jsonl")]),
        ],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.domains[0].docs, texts.len() as u64);
    assert_eq!(
        m.domains[0].shards[0].tokens_blake3,
        m.domains[1].shards[0].tokens_blake3
    );
}

#[test]
fn damaged_shards_are_refused_naming_the_file() {
    let t = scratch::tempdir().unwrap();
    let dir = t.path().join("c");
    let mut cfg = seven_domain_config(&dir);
    cfg.domains.truncate(2);
    let m = ingest(&cfg).unwrap();
    let shard = dir.join(&m.domains[1].shards[0].tokens_file);
    let bytes = std::fs::read(&shard).unwrap();
    // Truncated.
    std::fs::write(&shard, &bytes[..bytes.len() - 6]).unwrap();
    let e = Corpus::open(&dir).unwrap_err();
    assert!(matches!(e, DataError::ShardTruncated { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&shard.display().to_string())
            && msg.contains(&format!("byte offset {}", bytes.len() - 6)),
        "{msg}"
    );
    // Same size, one byte changed.
    let mut b2 = bytes.clone();
    b2[10] ^= 1;
    std::fs::write(&shard, &b2).unwrap();
    let e = Corpus::open(&dir).unwrap_err();
    assert!(
        matches!(e, DataError::ShardHash { .. }) && e.to_string().contains("00000.tok"),
        "{e}"
    );
    // Restored: opens again.
    std::fs::write(&shard, &bytes).unwrap();
    Corpus::open(&dir).unwrap();
    // A missing index file.
    let idx = dir.join(&m.domains[0].shards[0].index_file);
    std::fs::remove_file(&idx).unwrap();
    let e = Corpus::open(&dir).unwrap_err().to_string();
    assert!(e.contains("00000.idx"), "{e}");
    // Existing output is not overwritten unless asked.
    let e = ingest(&cfg).unwrap_err();
    assert!(matches!(e, DataError::OutputExists { .. }));
    cfg.overwrite = true;
    ingest(&cfg).unwrap();
    Corpus::open(&dir).unwrap();
}

#[test]
fn validation_split_never_leaks_and_budgets_nest() {
    let c = Corpus::open(corpus_dir()).unwrap();
    for d in c.domains() {
        let train: HashSet<u64> = d.train_docs().iter().map(|x| x.key).collect();
        let val: HashSet<u64> = d.val_docs().iter().map(|x| x.key).collect();
        assert!(
            train.is_disjoint(&val),
            "{}: a text is in both splits",
            d.name
        );
        assert_eq!(d.val_docs().len() as u64, d.manifest.val_docs);
        // Budgets: exact, nested prefixes, training documents only.
        let total = d.train_tokens();
        let (u1, u2) = (total / 3, total * 2 / 3);
        let (s1, s2) = (d.unique_subset(u1).unwrap(), d.unique_subset(u2).unwrap());
        assert_eq!((s1.unique_tokens, s2.unique_tokens), (u1, u2));
        let n = s1.spans.len();
        assert_eq!(
            &s1.spans[..n - 1],
            &s2.spans[..n - 1],
            "{}: budgets must nest",
            d.name
        );
        let last = s1.spans[n - 1];
        assert_eq!(
            (last.shard, last.start),
            (s2.spans[n - 1].shard, s2.spans[n - 1].start)
        );
        assert!(last.tokens <= s2.spans[n - 1].tokens);
        let val_starts: HashSet<(u32, u64)> =
            d.val_docs().iter().map(|x| (x.shard, x.start)).collect();
        assert!(s2
            .spans
            .iter()
            .all(|s| !val_starts.contains(&(s.shard, s.start))));
        assert_eq!(d.unique_subset(total).unwrap().unique_tokens, total);
        assert!(matches!(
            d.unique_subset(total + 1),
            Err(DataError::BudgetTooLarge { .. })
        ));
    }
    // The split depends on the text only: the same documents ingested in another corpus (another
    // domain name, other neighbours) are held out identically.
    let t = scratch::tempdir().unwrap();
    let m = ingest(&IngestConfig {
        out: t.path().join("o"),
        domains: vec![DomainInput {
            val_fraction: 0.1,
            ..DomainInput::new(
                "mixed",
                vec![
                    fixtures().join("quotes.jsonl"),
                    fixtures().join("math.jsonl"),
                ],
            )
        }],
        ..Default::default()
    })
    .unwrap();
    let q = c.domain("quotes").unwrap().manifest.clone();
    let mm = c.domain("math").unwrap().manifest.clone();
    assert_eq!(m.domains[0].val_docs, q.val_docs + mm.val_docs);
    assert_eq!(m.domains[0].val_tokens, q.val_tokens + mm.val_tokens);
}

fn mix(c: &Corpus, names: &[&str], budgets: &[u64], ex: &[Exhaustion]) -> Vec<MixDomain> {
    names
        .iter()
        .zip(budgets)
        .zip(ex)
        .map(|((n, &u), &e)| MixDomain {
            subset: c.domain(n).unwrap().unique_subset(u).unwrap(),
            exhaustion: e,
        })
        .collect()
}

#[test]
fn mixture_accounting_adds_up_and_epochs_are_exact() {
    let c = Corpus::open(corpus_dir()).unwrap();
    let names = ["code", "quotes", "literature"];
    let budgets = [5_000, 2_000, 20_000];
    let cfg = SamplerConfig {
        seq_len: 64,
        batch_size: 8,
        seed: 7,
        proportions: Proportions::Constant(vec![0.5, 0.25, 0.25]),
        packing: Packing::default(),
    };
    let mut s = Sampler::new(
        mix(&c, &names, &budgets, &[Exhaustion::Repeat; 3]),
        cfg.clone(),
    )
    .unwrap();
    let steps = 50u64;
    let mut per_domain_rows = [0u64; 3];
    for step in 0..steps {
        let b = s.next_batch().unwrap();
        assert_eq!(b.step, step);
        assert_eq!(b.tokens.len(), 8 * 65);
        for &d in &b.domain {
            per_domain_rows[d as usize] += 1;
        }
    }
    let a = s.accounting();
    assert_eq!(a.tokens_served, steps * 8 * 64);
    assert_eq!(
        a.domains.iter().map(|d| d.tokens_served).sum::<u64>(),
        steps * 8 * 64
    );
    assert_eq!(a.real_tokens_served, a.tokens_served);
    assert_eq!(a.synthetic_tokens_served, 0);
    // Proportions within one sequence of target.
    let rows = (steps * 8) as f64;
    for (i, w) in [0.5, 0.25, 0.25].iter().enumerate() {
        assert!(
            (per_domain_rows[i] as f64 - w * rows).abs() <= 1.0,
            "{per_domain_rows:?}"
        );
        let d = &a.domains[i];
        assert_eq!(d.unique_tokens, budgets[i]);
        assert_eq!(d.tokens_served, per_domain_rows[i] * 64);
        assert_eq!(
            d.realized_epochs,
            d.tokens_served as f64 / d.epoch_tokens as f64
        );
        assert_eq!(d.epoch_tokens, d.unique_tokens + d.unique_docs);
    }
    assert!(
        a.domains[1].realized_epochs > 3.0,
        "quotes (2k tokens) must repeat: {:?}",
        a.domains[1]
    );
    assert_eq!(a.domains[1].unique_tokens_seen, 2_000);
}

#[test]
fn repetition_serves_every_unique_token_once_per_epoch_in_a_new_order() {
    let c = Corpus::open(corpus_dir()).unwrap();
    let sub = c.domain("dialogue").unwrap().unique_subset(3_000).unwrap();
    let epoch = sub.epoch_tokens() as usize;
    let seq = 50;
    let cfg = SamplerConfig {
        seq_len: seq,
        batch_size: 1,
        seed: 3,
        proportions: Proportions::Constant(vec![1.0]),
        packing: Packing::default(),
    };
    let mut s = Sampler::new(
        vec![MixDomain {
            subset: sub.clone(),
            exhaustion: Exhaustion::Repeat,
        }],
        cfg,
    )
    .unwrap();
    // Reassemble the served stream (advance = seq_len tokens per row).
    let mut stream = Vec::new();
    while stream.len() < 3 * epoch {
        let b = s.next_batch().unwrap();
        stream.extend_from_slice(&b.row(0)[..seq]);
    }
    let eot = c.eot_id();
    let docs_of = |part: &[u32]| -> Vec<Vec<u32>> {
        let mut v: Vec<Vec<u32>> = part.split(|&t| t == eot).map(|x| x.to_vec()).collect();
        v.pop();
        v
    };
    let mut expected: Vec<Vec<u32>> = (0..sub.docs()).map(|i| sub.span_ids(i)).collect();
    expected.sort();
    let e0 = docs_of(&stream[..epoch]);
    let e1 = docs_of(&stream[epoch..2 * epoch]);
    let (mut s0, mut s1) = (e0.clone(), e1.clone());
    s0.sort();
    s1.sort();
    assert_eq!(s0, expected, "epoch 0 serves each document once");
    assert_eq!(s1, expected, "epoch 1 serves each document once");
    assert_ne!(e0, e1, "each epoch is reshuffled");
}

#[test]
fn stop_after_epochs_and_schedules() {
    let c = Corpus::open(corpus_dir()).unwrap();
    let cfg = SamplerConfig {
        seq_len: 32,
        batch_size: 4,
        seed: 1,
        proportions: Proportions::Constant(vec![1.0, 1.0]),
        packing: Packing::default(),
    };
    let ds = mix(
        &c,
        &["quotes", "math"],
        &[1_000, 2_000],
        &[
            Exhaustion::StopAfterEpochs(2),
            Exhaustion::StopAfterEpochs(1),
        ],
    );
    let mut s = Sampler::new(ds, cfg).unwrap();
    let mut steps = 0;
    let err = loop {
        match s.next_batch() {
            Ok(_) => steps += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, DataError::Exhausted { .. }));
    let a = s.accounting();
    assert_eq!(a.tokens_served, steps * 4 * 32);
    for d in &a.domains {
        let k = match d.exhaustion {
            Exhaustion::StopAfterEpochs(k) => k as f64,
            _ => unreachable!(),
        };
        // Never beyond k epochs; short of them by less than one batch (the run stops when a full
        // batch can no longer be served).
        assert!(d.realized_epochs <= k, "{d:?}");
        assert!(
            d.tokens_served as f64 >= k * d.epoch_tokens as f64 - (4 * 32 + 33) as f64,
            "{d:?}"
        );
    }
    // A piecewise schedule: all code first, then all quotes.
    let cfg = SamplerConfig {
        seq_len: 16,
        batch_size: 4,
        seed: 1,
        proportions: Proportions::Piecewise(vec![
            SchedulePoint {
                step: 0,
                weights: vec![1.0, 0.0],
            },
            SchedulePoint {
                step: 10,
                weights: vec![0.0, 1.0],
            },
        ]),
        packing: Packing::default(),
    };
    let mut s = Sampler::new(
        mix(
            &c,
            &["code", "quotes"],
            &[4_000, 4_000],
            &[Exhaustion::Repeat; 2],
        ),
        cfg,
    )
    .unwrap();
    for step in 0..20 {
        let b = s.next_batch().unwrap();
        let want = if step < 10 { 0 } else { 1 };
        assert!(
            b.domain.iter().all(|&d| d == want),
            "step {step}: {:?}",
            b.domain
        );
    }
    let lin = Proportions::Linear(vec![
        SchedulePoint {
            step: 0,
            weights: vec![1.0, 0.0],
        },
        SchedulePoint {
            step: 100,
            weights: vec![0.0, 1.0],
        },
    ]);
    assert_eq!(lin.at(50), vec![0.5, 0.5]);
    assert_eq!(lin.at(500), vec![0.0, 1.0]);
}

#[test]
fn resume_is_exact() {
    let c = Corpus::open(corpus_dir()).unwrap();
    let names = ["code", "quotes", "reference", "math"];
    let budgets = [8_000, 1_500, 6_000, 3_000];
    let ex = [
        Exhaustion::Repeat,
        Exhaustion::Repeat,
        Exhaustion::StopAfterEpochs(3),
        Exhaustion::Repeat,
    ];
    let cfg = SamplerConfig {
        seq_len: 48,
        batch_size: 6,
        seed: 42,
        proportions: Proportions::Linear(vec![
            SchedulePoint {
                step: 0,
                weights: vec![4.0, 1.0, 2.0, 1.0],
            },
            SchedulePoint {
                step: 60,
                weights: vec![1.0, 1.0, 1.0, 3.0],
            },
        ]),
        packing: Packing {
            cross_doc_attention: false,
        },
    };
    let mut straight = Sampler::new(mix(&c, &names, &budgets, &ex), cfg.clone()).unwrap();
    let all: Vec<Batch> = (0..80).map(|_| straight.next_batch().unwrap()).collect();
    let mut first = Sampler::new(mix(&c, &names, &budgets, &ex), cfg.clone()).unwrap();
    for b in &all[..37] {
        assert_eq!(&first.next_batch().unwrap(), b);
    }
    // Checkpoint through RON text, as the trainer will.
    let saved = ron::to_string(&first.state()).unwrap();
    drop(first);
    let c2 = Corpus::open(corpus_dir()).unwrap();
    let mut resumed = Sampler::new(mix(&c2, &names, &budgets, &ex), cfg.clone()).unwrap();
    resumed.restore(ron::from_str(&saved).unwrap()).unwrap();
    for b in &all[37..] {
        assert_eq!(&resumed.next_batch().unwrap(), b);
    }
    assert_eq!(resumed.accounting(), straight.accounting());
    // A different seed or budget refuses the state.
    let mut other = Sampler::new(
        mix(&c, &names, &[8_000, 1_500, 6_000, 3_001], &ex),
        cfg.clone(),
    )
    .unwrap();
    assert!(matches!(
        other.restore(ron::from_str(&saved).unwrap()),
        Err(DataError::StateMismatch(_))
    ));
    let mut other = Sampler::new(
        mix(&c, &names, &budgets, &ex),
        SamplerConfig { seed: 43, ..cfg },
    )
    .unwrap();
    assert!(other.restore(ron::from_str(&saved).unwrap()).is_err());
}

#[test]
fn document_boundaries_and_segments() {
    let c = Corpus::open(corpus_dir()).unwrap();
    let cfg = SamplerConfig {
        seq_len: 128,
        batch_size: 4,
        seed: 9,
        proportions: Proportions::Constant(vec![1.0]),
        packing: Packing {
            cross_doc_attention: false,
        },
    };
    let mut s = Sampler::new(mix(&c, &["quotes"], &[5_000], &[Exhaustion::Repeat]), cfg).unwrap();
    let eot = c.eot_id();
    for _ in 0..5 {
        let b = s.next_batch().unwrap();
        assert!(!b.cross_doc_attention);
        for i in 0..4 {
            let row = b.row(i);
            // A document starts right after every separator (except past the row end).
            let after_eot: Vec<u32> = (1..row.len())
                .filter(|&p| row[p - 1] == eot)
                .map(|p| p as u32)
                .collect();
            assert_eq!(after_eot, b.doc_starts[i]);
            let seg = b.segment_ids(i);
            assert_eq!(seg.len(), 129);
            assert_eq!(*seg.last().unwrap() as usize, b.doc_starts[i].len());
            for &p in &b.doc_starts[i] {
                assert_eq!(seg[p as usize], seg[p as usize - 1] + 1);
            }
        }
    }
}

#[test]
fn validation_batches_are_fixed() {
    let c = Corpus::open(corpus_dir()).unwrap();
    for d in c.domains() {
        let a: Vec<Batch> = ValBatches::new(d.val_subset(), 32, 4, 3, true).collect();
        let b: Vec<Batch> = ValBatches::new(d.val_subset(), 32, 4, 3, true).collect();
        assert_eq!(a, b);
        let v = ValBatches::new(d.val_subset(), 32, 4, 3, true);
        let target = v.total_target_tokens();
        assert_eq!(
            a.iter()
                .map(|b| (b.batch_size * b.seq_len) as u64)
                .sum::<u64>(),
            target
        );
        if d.manifest.val_tokens > 1_000 {
            assert_eq!(a.len(), 3, "{}", d.name);
        }
    }
}

#[test]
fn synthetic_domain_is_accounted_separately() {
    let t = scratch::tempdir().unwrap();
    let m = ingest(&IngestConfig {
        out: t.path().join("o"),
        domains: vec![
            DomainInput::new("real", vec![fixtures().join("dialogue.jsonl")]),
            DomainInput {
                kind: DomainKind::Synthetic {
                    generator: "test-rephraser".into(),
                    source_domains: vec!["real".into()],
                },
                ..DomainInput::new("synth", vec![fixtures().join("quotes.jsonl")])
            },
        ],
        ..Default::default()
    })
    .unwrap();
    assert!(m.domains[1].kind.is_synthetic());
    let c = Corpus::open(t.path().join("o")).unwrap();
    let cfg = SamplerConfig {
        seq_len: 16,
        batch_size: 4,
        seed: 0,
        proportions: Proportions::Constant(vec![0.25, 0.75]),
        packing: Packing::default(),
    };
    let mut s = Sampler::new(
        mix(
            &c,
            &["real", "synth"],
            &[2_000, 2_000],
            &[Exhaustion::Repeat; 2],
        ),
        cfg,
    )
    .unwrap();
    for _ in 0..10 {
        s.next_batch().unwrap();
    }
    let a = s.accounting();
    assert_eq!(a.real_tokens_served, 10 * 16);
    assert_eq!(a.synthetic_tokens_served, 30 * 16);
}

#[test]
fn trained_bpe_is_deterministic_and_usable() {
    let t = scratch::tempdir().unwrap();
    let files = vec![
        fixtures().join("literature.jsonl"),
        fixtures().join("code.jsonl"),
    ];
    let a = Tokenizer::train_bpe(&files, 600).unwrap();
    let b = Tokenizer::train_bpe(&files, 600).unwrap();
    assert_eq!(a.hash(), b.hash(), "BPE training must be deterministic");
    assert!(a.vocab_size() <= 600 && a.vocab_size() > 257);
    let text = "It is a truth universally acknowledged.";
    assert_eq!(a.decode(&a.encode(text)).unwrap(), text);
    let p = t.path().join("tok.json");
    a.save(&p).unwrap();
    let loaded = Tokenizer::from_file(&p).unwrap();
    assert_eq!(loaded.hash(), a.hash());
    assert_eq!(loaded.encode(text), a.encode(text));
    // Ingest with a trained tokenizer: the corpus carries it and checks its hash on open.
    let cfg = IngestConfig {
        out: t.path().join("o"),
        domains: vec![DomainInput::new(
            "lit",
            vec![fixtures().join("literature.jsonl")],
        )],
        tokenizer: TokenizerSpec::TrainBpe {
            vocab_size: 600,
            domains: None,
        },
        ..Default::default()
    };
    let m = ingest(&cfg).unwrap();
    assert_eq!(m.tokenizer.kind, "bpe");
    assert_eq!(m.token_bytes, 2);
    let c = Corpus::open(t.path().join("o")).unwrap();
    assert_eq!(c.tokenizer().unwrap().hash(), m.tokenizer.hash);
    // HF file spec (the saved tokenizer) gives the same ids.
    let m2 = ingest(&IngestConfig {
        out: t.path().join("o2"),
        tokenizer: TokenizerSpec::HfFile {
            path: p,
            eot_token: None,
        },
        domains: vec![DomainInput::new(
            "code",
            vec![fixtures().join("code.jsonl")],
        )],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m2.tokenizer.hash, a.hash());
}

/// The 7 bundled ~2 MB domain slices of the repository (`data/corpora/`), ingested twice with all
/// cores and different chunk sizes: byte-identical shards and manifests. Skipped (with a note)
/// when the slices are not in the checkout.
#[test]
fn bundled_slices_reingest_byte_identical() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/corpora");
    if !DOMAINS
        .iter()
        .all(|d| root.join(format!("{d}.jsonl")).exists())
    {
        eprintln!(
            "skipped: {} does not hold the 7 domain slices",
            root.display()
        );
        return;
    }
    let t = scratch::tempdir().unwrap();
    let cfg = |out: &str, chunk_bytes: usize, threads: usize| IngestConfig {
        out: t.path().join(out),
        domains: DOMAINS
            .iter()
            .map(|d| DomainInput::new(*d, vec![root.join(format!("{d}.jsonl"))]))
            .collect(),
        chunk_bytes,
        threads,
        ..Default::default()
    };
    let m1 = ingest(&cfg("a", 2 << 20, 0)).unwrap();
    let m2 = ingest(&cfg("b", 300 << 10, 1)).unwrap();
    assert_eq!(m1, m2);
    let (a, b) = (
        read_tree(&t.path().join("a")),
        read_tree(&t.path().join("b")),
    );
    assert_eq!(a, b, "re-ingest must reproduce every byte");
    assert!(m1.total_tokens() > 4_000_000, "{}", m1.total_tokens());
    Corpus::open(t.path().join("a")).unwrap();
}

#[test]
fn mix_spec_from_ron_builds_the_sampler() {
    let c = Corpus::open(corpus_dir()).unwrap();
    let spec: MixSpec = ron::from_str(
        r#"(
            domains: [
                (name: "code", unique_tokens: Some(4000), weight: 3.0),
                (name: "quotes", weight: 1.0, exhaustion: StopAfterEpochs(2)),
            ],
            seq_len: 32, batch_size: 4, seed: 5,
        )"#,
    )
    .unwrap();
    let mut s = c.sampler(&spec).unwrap();
    for _ in 0..10 {
        s.next_batch().unwrap();
    }
    let a = s.accounting();
    assert_eq!(a.tokens_served, 10 * 4 * 32);
    assert_eq!(a.domains[0].unique_tokens, 4000);
    assert_eq!(
        a.domains[1].unique_tokens,
        c.domain("quotes").unwrap().train_tokens()
    );
    assert_eq!(a.domains[0].sequences_served, 30);
    assert!(c
        .sampler(&MixSpec {
            domains: vec![MixDomainSpec {
                name: "nope".into(),
                unique_tokens: None,
                weight: 1.0,
                exhaustion: Exhaustion::Repeat
            }],
            ..spec.clone()
        })
        .is_err());
    let vb: Vec<Batch> = c.val_batches("code", 32, 4, 2).unwrap().collect();
    assert!(!vb.is_empty());
}
