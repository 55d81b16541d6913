//! The training slice's data path: JSONL documents → GPT-2 BPE → one packed token
//! stream per split, and an epoch-shuffling batcher over fixed-length sequences.
//!
//! What the trainer sees is only [`TokenStreams`] (train and validation token ids and a
//! fingerprint) and [`EpochBatcher`]; the full pipeline (`dctk-data`: shards, domains,
//! mixtures) replaces [`load_corpus`] behind the same two types.
//!
//! Accounting is exact by construction: the training stream is exactly
//! `unique_tokens` tokens long (documents in order, each followed by `<|endoftext|>`, the
//! last one cut to fit), and each validation document is held out by a hash of its id,
//! so no held-out text can reach training.
use std::fs;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// GPT-2's `<|endoftext|>`, used as the document separator.
pub const GPT2_EOT: u32 = 50_256;

/// Where the token streams came from and how big they are (written to the manifest).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DataManifest {
    /// Each input file with its blake3 content hash.
    pub sources: Vec<(String, String)>,
    pub tokenizer: String,
    pub train_docs: u64,
    pub val_docs: u64,
    pub train_tokens: u64,
    pub val_tokens: u64,
    /// blake3 of the two token streams: the run's data identity.
    pub fingerprint: String,
}

/// Tokenized training and validation streams.
pub struct TokenStreams {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    pub manifest: DataManifest,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("corpus {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("corpus {path} has no .jsonl files")]
    Empty { path: PathBuf },
    #[error("{path}:{line}: not a JSON object: {message}")]
    BadJson { path: PathBuf, line: usize, message: String },
    #[error("{path}:{line}: missing string field \"{field}\"")]
    MissingField { path: PathBuf, line: usize, field: String },
    #[error("corpus {path}: only {got} training tokens available, but unique_tokens = {want}")]
    TooFewTrain { path: PathBuf, got: u64, want: u64 },
    #[error("corpus {path}: only {got} validation tokens available, but val_tokens = {want} (raise val_fraction or lower val_tokens)")]
    TooFewVal { path: PathBuf, got: u64, want: u64 },
}

/// One JSONL file, read whole, with a cursor over its lines.
struct Source {
    path: PathBuf,
    text: String,
    offset: usize,
    line: usize,
}

impl Source {
    /// The next non-empty line and its 1-based number.
    fn next_line(&mut self) -> Option<(usize, &str)> {
        while self.offset < self.text.len() {
            let rest = &self.text[self.offset..];
            let end = rest.find('\n').map_or(rest.len(), |i| i);
            self.offset += (end + 1).min(rest.len());
            self.line += 1;
            let line = rest[..end].trim();
            if !line.is_empty() {
                return Some((self.line, line));
            }
        }
        None
    }
}

fn corpus_files(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    let meta = fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf() });
    }
    Ok(files)
}

/// Is this document held out? A hash of its id (or text when it has none), so the
/// split is the same whatever the budget, order or machine.
fn is_validation(key: &str, val_fraction: f64) -> bool {
    let h = blake3::hash(key.as_bytes());
    let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap());
    (x as f64 / u64::MAX as f64) < val_fraction
}

/// Reads `corpus` (a `.jsonl` file or a directory of them, taken round-robin by
/// document across files in name order) and fills exactly `unique_tokens` training
/// tokens and `val_tokens` validation tokens.
pub fn load_corpus(
    corpus: &Path,
    text_field: &str,
    unique_tokens: u64,
    val_tokens: u64,
    val_fraction: f64,
) -> Result<TokenStreams, DataError> {
    let bpe = tiktoken_rs::r50k_base().expect("tiktoken-rs ships r50k_base");
    let files = corpus_files(corpus)?;
    let mut sources = Vec::new();
    let mut hashes = Vec::new();
    for path in files {
        let text = fs::read_to_string(&path).map_err(|source| DataError::Io { path: path.clone(), source })?;
        hashes.push((path.display().to_string(), blake3::hash(text.as_bytes()).to_hex().to_string()));
        sources.push(Source { path, text, offset: 0, line: 0 });
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let (mut train_docs, mut val_docs) = (0u64, 0u64);
    let want_train = unique_tokens as usize;
    let want_val = val_tokens as usize;
    let mut live = sources.len();
    while live > 0 && (train.len() < want_train || val.len() < want_val) {
        live = 0;
        for src in sources.iter_mut() {
            let Some((line_no, line)) = src.next_line() else { continue };
            live += 1;
            let doc: serde_json::Value = serde_json::from_str(line).map_err(|e| DataError::BadJson {
                path: src.path.clone(),
                line: line_no,
                message: e.to_string(),
            })?;
            let text = doc.get(text_field).and_then(|t| t.as_str()).ok_or_else(|| DataError::MissingField {
                path: src.path.clone(),
                line: line_no,
                field: text_field.to_string(),
            })?;
            let key = match doc.get("id").and_then(|i| i.as_str()) {
                Some(id) => format!("{}\u{0}{id}", src.path.file_name().unwrap().to_string_lossy()),
                None => text.to_string(),
            };
            let (stream, want, count) = if is_validation(&key, val_fraction) {
                (&mut val, want_val, &mut val_docs)
            } else {
                (&mut train, want_train, &mut train_docs)
            };
            if stream.len() >= want {
                continue;
            }
            stream.extend(bpe.encode_ordinary(text).into_iter().map(|t| t as u32));
            stream.push(GPT2_EOT);
            stream.truncate(want);
            *count += 1;
        }
    }
    if train.len() < want_train {
        return Err(DataError::TooFewTrain { path: corpus.into(), got: train.len() as u64, want: unique_tokens });
    }
    if val.len() < want_val {
        return Err(DataError::TooFewVal { path: corpus.into(), got: val.len() as u64, want: val_tokens });
    }
    let mut hasher = blake3::Hasher::new();
    for t in train.iter().chain(std::iter::once(&u32::MAX)).chain(val.iter()) {
        hasher.update(&t.to_le_bytes());
    }
    let manifest = DataManifest {
        sources: hashes,
        tokenizer: "gpt2 (tiktoken r50k_base)".into(),
        train_docs,
        val_docs,
        train_tokens: train.len() as u64,
        val_tokens: val.len() as u64,
        fingerprint: hasher.finalize().to_hex().to_string(),
    };
    Ok(TokenStreams { train, val, manifest })
}

/// Serves fixed-length sequences from a token stream, epoch after epoch.
///
/// The stream is cut into `n_seqs = (len − 1) / seq_len` windows of `seq_len + 1`
/// tokens (inputs and shifted targets). The sequences of the whole run are one long
/// list: global sequence `g` is window `perm_e[g mod n_seqs]` of epoch
/// `e = g / n_seqs`, where `perm_e` is a shuffle seeded by (seed, e). So the data
/// order is a pure function of (seed, g): resuming needs only the step number.
pub struct EpochBatcher<'a> {
    tokens: &'a [u32],
    seq_len: usize,
    n_seqs: u64,
    seed: u64,
    cached: Option<(u64, Vec<u32>)>,
}

impl<'a> EpochBatcher<'a> {
    pub fn new(tokens: &'a [u32], seq_len: usize, seed: u64) -> Self {
        let n_seqs = (tokens.len().saturating_sub(1) / seq_len) as u64;
        EpochBatcher { tokens, seq_len, n_seqs, seed, cached: None }
    }

    pub fn sequences_per_epoch(&self) -> u64 {
        self.n_seqs
    }

    fn permutation(&mut self, epoch: u64) -> &[u32] {
        if self.cached.as_ref().map(|c| c.0) != Some(epoch) {
            let mut perm: Vec<u32> = (0..self.n_seqs as u32).collect();
            perm.shuffle(&mut epoch_rng(self.seed, epoch));
            self.cached = Some((epoch, perm));
        }
        &self.cached.as_ref().unwrap().1
    }

    /// Inputs and targets (row-major `[count, seq_len]`, as i64 for libtorch) of the
    /// global sequences `first .. first + count`.
    pub fn batch(&mut self, first: u64, count: usize) -> (Vec<i64>, Vec<i64>) {
        let t = self.seq_len;
        let mut inputs = Vec::with_capacity(count * t);
        let mut targets = Vec::with_capacity(count * t);
        for g in first..first + count as u64 {
            let (epoch, pos) = (g / self.n_seqs, g % self.n_seqs);
            let window = self.permutation(epoch)[pos as usize] as usize;
            let seq = &self.tokens[window * t..window * t + t + 1];
            inputs.extend(seq[..t].iter().map(|&x| x as i64));
            targets.extend(seq[1..].iter().map(|&x| x as i64));
        }
        (inputs, targets)
    }
}

/// The shuffle RNG of one epoch: ChaCha8 (portable and value-stable across platforms)
/// seeded by blake3(seed, epoch).
pub fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut h = blake3::Hasher::new();
    h.update(b"dctk/epoch-order");
    h.update(&seed.to_le_bytes());
    h.update(&epoch.to_le_bytes());
    ChaCha8Rng::from_seed(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batcher_covers_every_window_once_per_epoch_and_reshuffles() {
        let tokens: Vec<u32> = (0..1001).collect();
        let mut b = EpochBatcher::new(&tokens, 10, 7);
        assert_eq!(b.sequences_per_epoch(), 100);
        let (e0, _) = b.batch(0, 100);
        let (e1, _) = b.batch(100, 100);
        let firsts = |v: &[i64]| {
            let mut f: Vec<i64> = v.chunks(10).map(|c| c[0]).collect();
            f.sort();
            f
        };
        assert_eq!(firsts(&e0), (0..100).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(firsts(&e1), firsts(&e0));
        assert_ne!(e0, e1, "epochs must be shuffled differently");
        // Same (seed, g) → same batch, whatever was asked before.
        let mut fresh = EpochBatcher::new(&tokens, 10, 7);
        assert_eq!(fresh.batch(150, 4), b.batch(150, 4));
    }

    #[test]
    fn targets_are_inputs_shifted_by_one() {
        let tokens: Vec<u32> = (0..101).collect();
        let mut b = EpochBatcher::new(&tokens, 10, 0);
        let (x, y) = b.batch(3, 2);
        for (a, b) in x.iter().zip(&y) {
            assert_eq!(a + 1, *b);
        }
    }

    #[test]
    fn corpus_budget_split_and_errors() {
        let dir = std::env::temp_dir().join(format!("dctk-data-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.jsonl");
        let docs: String = (0..400)
            .map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"Document number {i} says hello to the world.\"}}\n"))
            .collect();
        fs::write(&f, docs).unwrap();
        let s = load_corpus(&f, "text", 500, 100, 0.2).unwrap();
        assert_eq!(s.train.len(), 500);
        assert_eq!(s.val.len(), 100);
        // Budgets nest: a smaller budget is a prefix of a larger one.
        let small = load_corpus(&f, "text", 200, 100, 0.2).unwrap();
        assert_eq!(&s.train[..200], &small.train[..]);
        assert_eq!(s.val, small.val);
        let e = load_corpus(&f, "body", 100, 100, 0.2).unwrap_err().to_string();
        assert!(e.ends_with("a.jsonl:1: missing string field \"body\""), "{e}");
        fs::write(dir.join("b.jsonl"), "{\"text\": \"ok\"}\n{not json\n").unwrap();
        let e = load_corpus(&dir.join("b.jsonl"), "text", 100, 100, 0.2).unwrap_err().to_string();
        assert!(e.contains("b.jsonl:2: not a JSON object"), "{e}");
        let e = load_corpus(&f, "text", 10_000_000, 100, 0.2).unwrap_err().to_string();
        assert!(e.contains("only") && e.contains("unique_tokens = 10000000"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
