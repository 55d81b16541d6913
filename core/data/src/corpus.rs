//! An ingested corpus, opened for training: verified, memory-mapped, split and budgeted.
//!
//! It owns three guarantees. (1) *Integrity*: [`Corpus::open`] checks every shard's size and
//! blake3 against the manifest before anything is served, naming the offending file. (2) *No
//! leak*: the validation split is a pure function of each document's content key
//! ([`crate::manifest::is_val`]), so a held-out text is held out everywhere. (3) *Nested
//! budgets*: training documents enter unique-token budgets in one fixed content-keyed order, so
//! the subset for U tokens is a prefix of the subset for any larger U (as in datablations).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::manifest::{
    budget_order_key, corpus_file, is_val, CorpusManifest, DomainKind, DomainManifest,
    MANIFEST_FILE,
};
use crate::shard::{map_verified, TokenStore, INDEX_RECORD_BYTES};
use crate::tokenizer::Tokenizer;

/// One document of a domain: where its tokens are and its content key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRef {
    pub shard: u32,
    /// First token, within the shard.
    pub start: u64,
    pub tokens: u64,
    /// First 8 bytes of blake3(text).
    pub key: u64,
}

/// A contiguous run of tokens served as one document (a whole document, or the truncated last
/// document of a budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub shard: u32,
    pub start: u64,
    pub tokens: u32,
}

/// A fixed, ordered set of documents of one domain: a unique-token budget, a whole training
/// split, or a validation split. The sampler repeats it epoch after epoch.
#[derive(Debug, Clone)]
pub struct Subset {
    pub domain: String,
    pub kind: DomainKind,
    pub(crate) store: Arc<TokenStore>,
    pub spans: Arc<Vec<Span>>,
    /// Sum of span tokens (separators not included).
    pub unique_tokens: u64,
    pub eot_id: u32,
    /// blake3 over (domain, tokenizer hash, spans): identifies the subset in sampler state.
    pub fingerprint: String,
}

impl Subset {
    fn new(domain: &Domain, spans: Vec<Span>) -> Self {
        let unique_tokens = spans.iter().map(|s| s.tokens as u64).sum();
        let mut h = blake3::Hasher::new();
        h.update(domain.name.as_bytes());
        h.update(&[0]);
        h.update(domain.tokenizer_hash.as_bytes());
        for s in &spans {
            h.update(&s.shard.to_le_bytes());
            h.update(&s.start.to_le_bytes());
            h.update(&s.tokens.to_le_bytes());
        }
        Self {
            domain: domain.name.clone(),
            kind: domain.kind.clone(),
            store: domain.store.clone(),
            spans: Arc::new(spans),
            unique_tokens,
            eot_id: domain.eot_id,
            fingerprint: h.finalize().to_hex().to_string(),
        }
    }

    pub fn docs(&self) -> usize {
        self.spans.len()
    }

    /// Tokens of one epoch as served: every document plus its separator.
    pub fn epoch_tokens(&self) -> u64 {
        self.unique_tokens + self.spans.len() as u64
    }

    /// The ids of span `i` (for inspection and tests).
    pub fn span_ids(&self, i: usize) -> Vec<u32> {
        let s = self.spans[i];
        let mut v = Vec::with_capacity(s.tokens as usize);
        self.store
            .extend(s.shard, s.start, s.tokens as usize, &mut v);
        v
    }
}

/// One named domain of an open corpus.
#[derive(Debug, Clone)]
pub struct Domain {
    pub name: String,
    pub kind: DomainKind,
    pub manifest: DomainManifest,
    store: Arc<TokenStore>,
    docs: Arc<Vec<DocRef>>,
    eot_id: u32,
    tokenizer_hash: String,
}

impl Domain {
    /// The memory-mapped shards the documents' tokens are in.
    pub(crate) fn store(&self) -> &TokenStore {
        &self.store
    }

    /// All documents, in ingest order.
    pub fn docs(&self) -> &[DocRef] {
        &self.docs
    }

    /// Training documents, in budget order (the order unique-token budgets take them in).
    pub fn train_docs(&self) -> Vec<DocRef> {
        self.split(false)
    }

    /// Held-out documents, in a fixed order.
    pub fn val_docs(&self) -> Vec<DocRef> {
        self.split(true)
    }

    fn split(&self, val: bool) -> Vec<DocRef> {
        let ppm = self.manifest.val_ppm;
        let mut v: Vec<DocRef> = self
            .docs
            .iter()
            .copied()
            .filter(|d| is_val(d.key, ppm) == val)
            .collect();
        // Ties (duplicate texts) fall back to ingest order, which is itself deterministic.
        v.sort_by_key(|d| (budget_order_key(d.key), d.shard, d.start));
        v
    }

    pub fn train_tokens(&self) -> u64 {
        self.manifest.train_tokens
    }

    pub fn val_tokens(&self) -> u64 {
        self.manifest.val_tokens
    }

    /// Exactly `unique_tokens` training tokens: whole documents in budget order, the last one cut
    /// to fit. The subset for a smaller budget is a prefix of the subset for a larger one.
    pub fn unique_subset(&self, unique_tokens: u64) -> Result<Subset> {
        let available = self.manifest.train_tokens;
        if unique_tokens > available {
            return Err(DataError::BudgetTooLarge {
                domain: self.name.clone(),
                asked_tokens: unique_tokens,
                available_tokens: available,
            });
        }
        let mut spans = Vec::new();
        let mut left = unique_tokens;
        for d in self.train_docs() {
            if left == 0 {
                break;
            }
            if d.tokens == 0 {
                continue;
            }
            let take = d.tokens.min(left);
            push_span(&mut spans, d.shard, d.start, take);
            left -= take;
        }
        Ok(Subset::new(self, spans))
    }

    /// The whole training split (every training token once per epoch).
    pub fn train_subset(&self) -> Subset {
        let mut spans = Vec::new();
        for d in self.train_docs().into_iter().filter(|d| d.tokens > 0) {
            push_span(&mut spans, d.shard, d.start, d.tokens);
        }
        Subset::new(self, spans)
    }

    /// The validation split as a subset (for [`crate::val::ValBatches`]).
    pub fn val_subset(&self) -> Subset {
        let mut spans = Vec::new();
        for d in self.val_docs().into_iter().filter(|d| d.tokens > 0) {
            push_span(&mut spans, d.shard, d.start, d.tokens);
        }
        Subset::new(self, spans)
    }
}

/// Spans are u32 long; a (rare) longer document becomes several consecutive spans.
fn push_span(spans: &mut Vec<Span>, shard: u32, start: u64, tokens: u64) {
    let mut off = 0;
    while off < tokens {
        let n = (tokens - off).min(u32::MAX as u64);
        spans.push(Span {
            shard,
            start: start + off,
            tokens: n as u32,
        });
        off += n;
    }
}

/// Options for [`Corpus::open_with`].
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Hash every shard (blake3, ~1 GB/s). Sizes and index structure are always checked.
    pub verify_hashes: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            verify_hashes: true,
        }
    }
}

/// An open corpus directory.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub dir: PathBuf,
    pub manifest: CorpusManifest,
    domains: Vec<Domain>,
}

impl Corpus {
    /// Open and fully verify (sizes, hashes, indexes) a corpus written by [`crate::ingest`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, OpenOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, opts: OpenOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = CorpusManifest::read(&dir)?;
        if manifest.token_bytes != 2 && manifest.token_bytes != 4 {
            return Err(DataError::Manifest {
                path: dir.join(crate::manifest::MANIFEST_FILE),
                msg: format!("token_bytes must be 2 or 4, not {}", manifest.token_bytes),
            });
        }
        let mut domains = Vec::new();
        for dm in &manifest.domains {
            let mut maps = Vec::new();
            let mut docs = Vec::new();
            for (si, sh) in dm.shards.iter().enumerate() {
                let field = |f: &str| format!("domains[{}].shards[{si}].{f}", dm.name);
                let tok_path = corpus_file(&dir, &field("tokens_file"), &sh.tokens_file)?;
                if sh.tokens_bytes != sh.tokens * manifest.token_bytes as u64 {
                    return Err(DataError::Manifest {
                        path: tok_path,
                        msg: "tokens_bytes disagrees with tokens × token_bytes".into(),
                    });
                }
                let map = map_verified(
                    &tok_path,
                    sh.tokens_bytes,
                    &sh.tokens_blake3,
                    opts.verify_hashes,
                )?;
                let idx_path = corpus_file(&dir, &field("index_file"), &sh.index_file)?;
                if Some(sh.index_bytes) != sh.docs.checked_add(1).and_then(|n| n.checked_mul(INDEX_RECORD_BYTES)) {
                    return Err(DataError::Manifest {
                        path: idx_path,
                        msg: format!(
                            "index_bytes ({}) disagrees with (docs + 1) × {INDEX_RECORD_BYTES} (docs = {})",
                            sh.index_bytes, sh.docs
                        ),
                    });
                }
                let idx = map_verified(
                    &idx_path,
                    sh.index_bytes,
                    &sh.index_blake3,
                    opts.verify_hashes,
                )?;
                read_index(&idx_path, &idx, sh.docs, sh.tokens, si as u32, &mut docs)?;
                if opts.verify_hashes {
                    check_ids(&tok_path, &map, manifest.token_bytes, manifest.total_ids(), manifest.special_tokens.len())?;
                }
                maps.push(map);
            }
            check_counts(&dir, dm, &docs)?;
            let store = Arc::new(TokenStore {
                maps,
                token_bytes: manifest.token_bytes,
            });
            domains.push(Domain {
                name: dm.name.clone(),
                kind: dm.kind.clone(),
                manifest: dm.clone(),
                store,
                docs: Arc::new(docs),
                eot_id: manifest.tokenizer.eot_id,
                tokenizer_hash: manifest.tokenizer.hash.clone(),
            });
        }
        Ok(Self {
            dir,
            manifest,
            domains,
        })
    }

    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    pub fn domain_names(&self) -> Vec<&str> {
        self.domains.iter().map(|d| d.name.as_str()).collect()
    }

    pub fn domain(&self, name: &str) -> Result<&Domain> {
        self.domains
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| DataError::UnknownDomain {
                name: name.to_string(),
                known: self.domain_names().join(", "),
            })
    }

    /// The tokenizer the corpus was made with (its hash is checked against the manifest),
    /// with the corpus's special tokens.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::from_info(&self.manifest.tokenizer, &self.dir)?
            .with_special_tokens(&self.manifest.special_tokens)
    }

    /// The corpus's special tokens (ids `vocab_size() + i`).
    pub fn special_tokens(&self) -> &[String] {
        &self.manifest.special_tokens
    }

    pub fn eot_id(&self) -> u32 {
        self.manifest.tokenizer.eot_id
    }

    pub fn vocab_size(&self) -> u32 {
        self.manifest.tokenizer.vocab_size
    }
}

/// The manifest's per-domain counts, recomputed from the (size- and hash-checked) shard
/// indexes: a hand-edited count is refused rather than trusted (a larger `train_tokens`
/// would otherwise let a budget silently serve fewer tokens than it asked for).
fn check_counts(dir: &Path, dm: &DomainManifest, docs: &[DocRef]) -> Result<()> {
    let (mut train_docs, mut train_tokens, mut val_docs, mut val_tokens) = (0u64, 0u64, 0u64, 0u64);
    for d in docs {
        if is_val(d.key, dm.val_ppm) {
            val_docs += 1;
            val_tokens += d.tokens;
        } else {
            train_docs += 1;
            train_tokens += d.tokens;
        }
    }
    let found = [
        ("docs", dm.docs, train_docs + val_docs),
        ("tokens", dm.tokens, train_tokens + val_tokens),
        ("train_docs", dm.train_docs, train_docs),
        ("train_tokens", dm.train_tokens, train_tokens),
        ("val_docs", dm.val_docs, val_docs),
        ("val_tokens", dm.val_tokens, val_tokens),
    ];
    for (field, said, counted) in found {
        if said != counted {
            return Err(DataError::Manifest {
                path: dir.join(MANIFEST_FILE),
                msg: format!(
                    "domains[{}].{field} is {said} but its shard indexes hold {counted}; the manifest was edited or corrupted — re-run ingest",
                    dm.name
                ),
            });
        }
    }
    Ok(())
}

/// Every id of a token file is below the manifest's `vocab_size` (a hand-edited vocabulary
/// would otherwise index past the model's embedding).
/// Every id below `vocab_size` (the tokenizer's ids and the corpus's `specials` special tokens).
fn check_ids(path: &Path, bytes: &[u8], token_bytes: u8, vocab_size: u32, specials: usize) -> Result<()> {
    let max = if token_bytes == 2 {
        bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32).max()
    } else {
        bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).max()
    };
    match max {
        Some(m) if m >= vocab_size => Err(DataError::Manifest {
            path: path.to_path_buf(),
            msg: if specials == 0 {
                format!("holds token id {m}, but the manifest's tokenizer.vocab_size is {vocab_size}")
            } else {
                format!("holds token id {m}, but the manifest's tokenizer.vocab_size and its {specials} special_tokens allow {vocab_size} ids")
            },
        }),
        _ => Ok(()),
    }
}

fn read_index(
    path: &Path,
    idx: &[u8],
    docs: u64,
    tokens: u64,
    shard: u32,
    out: &mut Vec<DocRef>,
) -> Result<()> {
    let rec = |i: u64| -> (u64, u64) {
        let o = (i * INDEX_RECORD_BYTES) as usize;
        (
            u64::from_le_bytes(idx[o..o + 8].try_into().expect("8 bytes")),
            u64::from_le_bytes(idx[o + 8..o + 16].try_into().expect("8 bytes")),
        )
    };
    let (last, _) = rec(docs);
    if last != tokens {
        return Err(DataError::BadIndex {
            path: path.to_path_buf(),
            offset: docs * INDEX_RECORD_BYTES,
            msg: format!("final offset {last} ≠ shard tokens {tokens}"),
        });
    }
    let mut prev = 0;
    for i in 0..docs {
        let (start, key) = rec(i);
        let (end, _) = rec(i + 1);
        if start < prev || end < start || end > tokens {
            return Err(DataError::BadIndex {
                path: path.to_path_buf(),
                offset: i * INDEX_RECORD_BYTES,
                msg: format!("document {i} spans tokens {start}..{end} (shard has {tokens})"),
            });
        }
        prev = start;
        out.push(DocRef {
            shard,
            start,
            tokens: end - start,
            key,
        });
    }
    Ok(())
}
