//! Token shards: writing them during ingest and memory-mapping them afterwards.
//!
//! A shard is two files: `NNNNN.tok`, the documents' token ids back to back (little-endian u16
//! when the vocabulary fits, else u32; no separators — packing adds them, so the same shards
//! serve any packing), and `NNNNN.idx`, `docs + 1` records of (token offset, document key), both
//! u64 LE, the last record being (total tokens, 0). Both are hashed while written, so the
//! manifest's blake3 costs no second pass.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{io_err, DataError, Result};
use crate::manifest::ShardInfo;

pub(crate) const INDEX_RECORD_BYTES: u64 = 16;

struct OpenShard {
    tokens: BufWriter<std::fs::File>,
    index: BufWriter<std::fs::File>,
    tokens_path: PathBuf,
    index_path: PathBuf,
    tokens_rel: String,
    index_rel: String,
    tokens_hash: blake3::Hasher,
    index_hash: blake3::Hasher,
    n_tokens: u64,
    n_docs: u64,
}

/// Writes one domain's documents into a sequence of shards of at most `max_tokens` tokens
/// (a document is never split; a larger one gets a shard of its own).
pub(crate) struct ShardWriter {
    root: PathBuf,
    domain: String,
    token_bytes: u8,
    max_tokens: u64,
    open: Option<OpenShard>,
    done: Vec<ShardInfo>,
    buf: Vec<u8>,
}

impl ShardWriter {
    pub fn new(root: &Path, domain: &str, token_bytes: u8, max_tokens: u64) -> Result<Self> {
        let dir = root.join(domain);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Self {
            root: root.to_path_buf(),
            domain: domain.to_string(),
            token_bytes,
            max_tokens: max_tokens.max(1),
            open: None,
            done: Vec::new(),
            buf: Vec::new(),
        })
    }

    fn start(&mut self) -> Result<OpenShard> {
        let n = self.done.len();
        let tokens_rel = format!("{}/{n:05}.tok", self.domain);
        let index_rel = format!("{}/{n:05}.idx", self.domain);
        let tokens_path = self.root.join(&tokens_rel);
        let index_path = self.root.join(&index_rel);
        let tokens = std::fs::File::create(&tokens_path).map_err(io_err(&tokens_path))?;
        let index = std::fs::File::create(&index_path).map_err(io_err(&index_path))?;
        Ok(OpenShard {
            tokens: BufWriter::with_capacity(1 << 20, tokens),
            index: BufWriter::with_capacity(1 << 16, index),
            tokens_path,
            index_path,
            tokens_rel,
            index_rel,
            tokens_hash: blake3::Hasher::new(),
            index_hash: blake3::Hasher::new(),
            n_tokens: 0,
            n_docs: 0,
        })
    }

    pub fn push_doc(&mut self, key: u64, ids: &[u32]) -> Result<()> {
        let full = self
            .open
            .as_ref()
            .is_some_and(|s| s.n_tokens > 0 && s.n_tokens + ids.len() as u64 > self.max_tokens);
        if full {
            self.close()?;
        }
        if self.open.is_none() {
            self.open = Some(self.start()?);
        }
        let s = self.open.as_mut().expect("opened above");
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&s.n_tokens.to_le_bytes());
        rec[8..].copy_from_slice(&key.to_le_bytes());
        s.index.write_all(&rec).map_err(io_err(&s.index_path))?;
        s.index_hash.update(&rec);
        self.buf.clear();
        if self.token_bytes == 2 {
            for &id in ids {
                let v = u16::try_from(id).map_err(|_| {
                    DataError::Tokenizer(format!(
                        "id {id} does not fit the u16 shards of domain `{}`",
                        self.domain
                    ))
                })?;
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
        } else {
            for &id in ids {
                self.buf.extend_from_slice(&id.to_le_bytes());
            }
        }
        s.tokens
            .write_all(&self.buf)
            .map_err(io_err(&s.tokens_path))?;
        s.tokens_hash.update(&self.buf);
        s.n_tokens += ids.len() as u64;
        s.n_docs += 1;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        let Some(mut s) = self.open.take() else {
            return Ok(());
        };
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&s.n_tokens.to_le_bytes());
        s.index.write_all(&rec).map_err(io_err(&s.index_path))?;
        s.index_hash.update(&rec);
        let tok_file = s.tokens.into_inner().map_err(|e| DataError::Io {
            path: s.tokens_path.clone(),
            source: e.into_error(),
        })?;
        tok_file.sync_all().map_err(io_err(&s.tokens_path))?;
        let idx_file = s.index.into_inner().map_err(|e| DataError::Io {
            path: s.index_path.clone(),
            source: e.into_error(),
        })?;
        idx_file.sync_all().map_err(io_err(&s.index_path))?;
        self.done.push(ShardInfo {
            tokens_file: s.tokens_rel,
            index_file: s.index_rel,
            docs: s.n_docs,
            tokens: s.n_tokens,
            tokens_bytes: s.n_tokens * self.token_bytes as u64,
            tokens_blake3: s.tokens_hash.finalize().to_hex().to_string(),
            index_bytes: (s.n_docs + 1) * INDEX_RECORD_BYTES,
            index_blake3: s.index_hash.finalize().to_hex().to_string(),
        });
        Ok(())
    }

    pub fn finish(mut self) -> Result<Vec<ShardInfo>> {
        self.close()?;
        Ok(self.done)
    }
}

/// The memory-mapped token files of one corpus, addressed by (shard number, token offset).
pub struct TokenStore {
    pub(crate) maps: Vec<Mmap>,
    pub(crate) token_bytes: u8,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenStore({} shards, {} bytes/token)",
            self.maps.len(),
            self.token_bytes
        )
    }
}

impl TokenStore {
    /// Append `len` ids starting at token `start` of shard `shard` to `out`.
    #[inline]
    pub fn extend(&self, shard: u32, start: u64, len: usize, out: &mut Vec<u32>) {
        let m = &self.maps[shard as usize];
        if self.token_bytes == 2 {
            let b = &m[start as usize * 2..(start as usize + len) * 2];
            out.extend(
                b.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32),
            );
        } else {
            let b = &m[start as usize * 4..(start as usize + len) * 4];
            out.extend(
                b.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
    }

    /// One id.
    #[inline]
    pub fn get(&self, shard: u32, pos: u64) -> u32 {
        let m = &self.maps[shard as usize];
        let p = pos as usize;
        if self.token_bytes == 2 {
            u16::from_le_bytes([m[p * 2], m[p * 2 + 1]]) as u32
        } else {
            u32::from_le_bytes([m[p * 4], m[p * 4 + 1], m[p * 4 + 2], m[p * 4 + 3]])
        }
    }
}

/// Check a file's size and blake3 against the manifest, then map it. Size is checked first so a
/// truncated file gets the precise message (which byte offset the data stops at).
pub(crate) fn map_verified(
    path: &Path,
    expected_bytes: u64,
    expected_hash: &str,
    verify_hash: bool,
) -> Result<Mmap> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let found = file.metadata().map_err(io_err(path))?.len();
    if found < expected_bytes {
        return Err(DataError::ShardTruncated {
            path: path.to_path_buf(),
            expected_bytes,
            found_bytes: found,
        });
    }
    if found > expected_bytes {
        return Err(DataError::ShardOversized {
            path: path.to_path_buf(),
            expected_bytes,
            found_bytes: found,
        });
    }
    // SAFETY: corpus files are written once (atomically) and never modified in place; a file
    // changed underneath us is exactly what the hash check below is there to catch.
    let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
    if verify_hash {
        let mut h = blake3::Hasher::new();
        if map.len() > (8 << 20) {
            h.update_rayon(&map);
        } else {
            h.update(&map);
        }
        let got = h.finalize().to_hex().to_string();
        if got != expected_hash {
            return Err(DataError::ShardHash {
                path: path.to_path_buf(),
                expected: expected_hash.to_string(),
                found: got,
            });
        }
    }
    Ok(map)
}
