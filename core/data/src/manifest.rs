//! The corpus manifest (`DIR/manifest.ron`): the single description of what a corpus directory
//! holds — sources with content hashes, tokenizer identity, token width, per-domain counts and
//! every shard's size and blake3. It is written last and atomically, so a directory with a
//! manifest is complete; nothing in it depends on time or machine, so re-ingesting the same
//! inputs reproduces it byte for byte.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, DataError, Result};
use crate::input::{InputSpec, SourceInfo};
use crate::tokenizer::TokenizerInfo;

/// Bumped when the on-disk layout changes.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.ron";

/// Where a domain's documents came from. Synthetic data enters as its own domain so real and
/// synthetic tokens are always accounted separately (see [`crate::sampler::MixAccounting`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DomainKind {
    #[default]
    Real,
    /// Generated text; `generator` names the model/recipe, `source_domains` the real domains it
    /// was generated from (for "real tokens behind synthetic tokens" accounting).
    Synthetic {
        generator: String,
        source_domains: Vec<String>,
    },
}

impl DomainKind {
    pub fn is_synthetic(&self) -> bool {
        matches!(self, DomainKind::Synthetic { .. })
    }
}

/// One shard: a token file and its document index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Token file, relative to the corpus directory (little-endian u16 or u32 ids).
    pub tokens_file: String,
    /// Index file: `docs + 1` records of (token offset u64 LE, document key u64 LE).
    pub index_file: String,
    pub docs: u64,
    pub tokens: u64,
    pub tokens_bytes: u64,
    pub tokens_blake3: String,
    pub index_bytes: u64,
    pub index_blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainManifest {
    pub name: String,
    pub kind: DomainKind,
    pub input: InputSpec,
    pub sources: Vec<SourceInfo>,
    /// Documents and tokens kept (separators are not stored; they are added when packing).
    pub docs: u64,
    pub tokens: u64,
    pub dropped_duplicates: u64,
    pub dropped_empty: u64,
    /// Held-out fraction in parts per million; a document is held out iff its content key says so.
    pub val_ppm: u32,
    pub train_docs: u64,
    pub train_tokens: u64,
    pub val_docs: u64,
    pub val_tokens: u64,
    pub shards: Vec<ShardInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusManifest {
    pub format: u32,
    pub dctk_data_version: String,
    pub tokenizer: TokenizerInfo,
    /// 2 (u16 ids) or 4 (u32 ids).
    pub token_bytes: u8,
    /// Exact duplicates (same text) dropped across the whole ingest, first occurrence kept.
    pub dedup: bool,
    pub domains: Vec<DomainManifest>,
    /// The corpus's special tokens (e.g. BoLT's latent delimiters; Ruan et al. 2025, arXiv
    /// 2503.18866): `special_tokens[i]` has id `tokenizer.vocab_size + i` in the shards. Empty
    /// (and not written) for a plain corpus, so older manifests read unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special_tokens: Vec<String>,
}

impl CorpusManifest {
    /// Ids the shards may hold: the tokenizer's vocabulary and the special tokens.
    pub fn total_ids(&self) -> u32 {
        self.tokenizer.vocab_size.saturating_add(self.special_tokens.len() as u32)
    }

    pub fn total_tokens(&self) -> u64 {
        self.domains.iter().map(|d| d.tokens).sum()
    }

    pub fn to_ron(&self) -> Result<String> {
        let cfg = ron::ser::PrettyConfig::new()
            .depth_limit(6)
            .indentor("  ".to_string());
        ron::ser::to_string_pretty(self, cfg).map_err(|e| DataError::Manifest {
            path: MANIFEST_FILE.into(),
            msg: e.to_string(),
        })
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let m: Self = ron::from_str(crate::input::strip_bom(&text)).map_err(|e| DataError::Manifest {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        if m.format != FORMAT_VERSION {
            return Err(DataError::Manifest {
                path,
                msg: format!(
                    "format {} is not supported (this build reads format {FORMAT_VERSION})",
                    m.format
                ),
            });
        }
        Ok(m)
    }
}

/// The file a manifest names by `rel` (its `field`, e.g. `domains[web].shards[0].tokens_file`),
/// checked to lie inside the corpus directory `dir`: a relative path of plain components (no
/// `..`, no root), which after resolving symlinks is still under `dir`. A hand-edited
/// manifest cannot make a corpus read (or `data verify` reveal the size of) a file outside it.
/// A file that does not exist is returned unresolved (opening it then names it).
pub fn corpus_file(dir: &Path, field: &str, rel: &str) -> Result<PathBuf> {
    let manifest = dir.join(MANIFEST_FILE);
    let refuse = |why: String| DataError::Manifest {
        path: manifest.clone(),
        msg: format!("{field} \"{rel}\" {why}; a corpus names only files inside its directory"),
    };
    let plain = !rel.is_empty()
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(refuse(if Path::new(rel).is_absolute() {
            "is an absolute path".into()
        } else {
            "is not a plain relative path (no `..`)".into()
        }));
    }
    let path = dir.join(rel);
    let Ok(real) = path.canonicalize() else {
        return Ok(path);
    };
    let real_dir = dir.canonicalize().map_err(io_err(dir))?;
    if !real.starts_with(&real_dir) {
        return Err(refuse(format!(
            "resolves (through a symlink) to {}, outside {}",
            real.display(),
            real_dir.display()
        )));
    }
    Ok(path)
}

/// SplitMix64 finaliser: a fast, well-mixed, portable 64-bit hash of a 64-bit key.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const SPLIT_SALT: u64 = 0x7661_6c5f_7370_6c74; // "val_splt"
const ORDER_SALT: u64 = 0x6f72_6465_725f_6b79; // "order_ky"

/// Is the document with this content key held out? Depends only on the text (via its key) and
/// the fraction, so the same text is held out in every corpus and every run: no leak, even when
/// duplicates are not dropped.
pub fn is_val(doc_key: u64, val_ppm: u32) -> bool {
    mix64(doc_key ^ SPLIT_SALT) % 1_000_000 < val_ppm as u64
}

/// The fixed order in which training documents enter unique-token budgets (nested prefixes).
pub fn budget_order_key(doc_key: u64) -> u64 {
    mix64(doc_key ^ ORDER_SALT)
}

/// Content key of a document: the first 8 bytes of blake3(text).
pub fn doc_key(text: &str) -> u64 {
    let h = blake3::hash(text.as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

pub(crate) fn ppm(fraction: f64) -> Result<u32> {
    if !(0.0..=1.0).contains(&fraction) || fraction.is_nan() {
        return Err(DataError::Config(format!(
            "val_fraction must be in [0, 1], got {fraction}"
        )));
    }
    Ok((fraction * 1_000_000.0).round() as u32)
}
