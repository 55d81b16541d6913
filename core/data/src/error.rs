//! The one error type of the data pipeline. It owns *where* things went wrong: every variant
//! that comes from a file names the file and, where it has one, the line (JSONL), row (Parquet)
//! or byte offset (shards), so a user can open the file and look.

use std::path::PathBuf;

/// Everything that can go wrong while ingesting, opening or sampling a corpus.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}:{line}: malformed JSON: {msg}")]
    Json {
        path: PathBuf,
        line: u64,
        msg: String,
    },

    #[error("{path}:{line}: field `{field}` is missing or is not a string")]
    MissingField {
        path: PathBuf,
        line: u64,
        field: String,
    },

    #[error("{path}:{line}: not valid UTF-8")]
    Utf8 { path: PathBuf, line: u64 },

    #[error("{path}: unreadable Parquet file: {msg}")]
    Parquet { path: PathBuf, msg: String },

    #[error("{path}: row {row}: {msg}")]
    ParquetRow {
        path: PathBuf,
        row: u64,
        msg: String,
    },

    #[error(
        "{path}: Parquet support was not compiled in (enable the `parquet` feature of dctk-data)"
    )]
    ParquetDisabled { path: PathBuf },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("{path}: shard is truncated: expected {expected_bytes} bytes, found {found_bytes} (data ends at byte offset {found_bytes})")]
    ShardTruncated {
        path: PathBuf,
        expected_bytes: u64,
        found_bytes: u64,
    },

    #[error("{path}: shard is larger than its manifest says: expected {expected_bytes} bytes, found {found_bytes} (extra data from byte offset {expected_bytes})")]
    ShardOversized {
        path: PathBuf,
        expected_bytes: u64,
        found_bytes: u64,
    },

    #[error("{path}: content hash does not match the manifest (expected blake3 {expected}, found {found}); the shard was modified or corrupted — re-run ingest")]
    ShardHash {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error("{path}: bad index at byte offset {offset}: {msg}")]
    BadIndex {
        path: PathBuf,
        offset: u64,
        msg: String,
    },

    #[error("{path}: bad manifest: {msg}")]
    Manifest { path: PathBuf, msg: String },

    #[error("{path}: output already exists (set `overwrite` to replace it)")]
    OutputExists { path: PathBuf },

    #[error("unknown domain `{name}` (the corpus has: {known})")]
    UnknownDomain { name: String, known: String },

    #[error("domain `{domain}`: asked for {asked_tokens} unique tokens but its training split has only {available_tokens}")]
    BudgetTooLarge {
        domain: String,
        asked_tokens: u64,
        available_tokens: u64,
    },

    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("sampler exhausted at step {step}: every domain reached its epoch limit")]
    Exhausted { step: u64 },

    #[error("sampler state does not match this sampler: {0}")]
    StateMismatch(String),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Attach a path to an `io::Error` (the std error does not say which file).
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io { path, source }
}
