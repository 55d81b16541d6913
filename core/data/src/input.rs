//! Input readers: JSONL (optionally gzipped), plain text, Parquet, and directories of those.
//!
//! It owns turning files into a stream of documents *with their location* (line for JSONL and
//! text, row for Parquet), reading in bounded chunks so memory stays constant in corpus size.
//! JSON parsing is deferred ([`RawItem::into_text`]) so the ingest can do it in parallel with
//! tokenisation. While reading, it hashes every source file's bytes (blake3) for the manifest and
//! counts bytes for the progress bar, so each file is read exactly once.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{io_err, DataError, Result};

/// How to read a source (`Auto` picks by extension: `.jsonl`, `.json`, `.ndjson` (+ `.gz`),
/// `.parquet`, anything else is plain text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum InputFormat {
    #[default]
    Auto,
    Jsonl,
    Text,
    Parquet,
}

/// How a plain-text file becomes documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TextSplit {
    /// The whole file is one document.
    #[default]
    File,
    /// Every non-empty line is a document.
    Lines,
    /// Documents are separated by this exact line (e.g. `%` for fortune files, `` for blank lines).
    SeparatorLine(String),
}

/// Per-domain reading options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InputSpec {
    pub format: InputFormat,
    /// JSON field (JSONL) or column (Parquet) holding the document text.
    pub text_field: String,
    pub text_split: TextSplit,
}

impl Default for InputSpec {
    fn default() -> Self {
        Self {
            format: InputFormat::Auto,
            text_field: "text".into(),
            text_split: TextSplit::File,
        }
    }
}

/// One document with its 1-based location (line, or row for Parquet).
#[derive(Debug, Clone)]
pub struct Doc {
    pub text: String,
    pub loc: u64,
}

/// An unparsed item: a JSONL line (parsed later, in parallel) or a ready document.
#[derive(Debug)]
pub enum RawItem {
    JsonLine { line: u64, raw: String },
    Text { loc: u64, text: String },
}

impl RawItem {
    pub fn loc(&self) -> u64 {
        match self {
            RawItem::JsonLine { line, .. } => *line,
            RawItem::Text { loc, .. } => *loc,
        }
    }

    /// The document text; `Ok(None)` for a blank JSONL line (skipped, as `jq` does).
    pub fn into_text(self, path: &Path, field: &str) -> Result<Option<String>> {
        match self {
            RawItem::Text { text, .. } => Ok(Some(text)),
            RawItem::JsonLine { line, raw } => {
                // A UTF-8 byte-order mark (Windows editors write one at the start of a file;
                // `cat` of such files puts one at the start of a later line) is not JSON.
                let raw = strip_bom(&raw);
                if raw.trim().is_empty() {
                    return Ok(None);
                }
                // Parse only the field we need: other fields are skipped, not built.
                let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw)
                    .map_err(|e| DataError::Json {
                        path: path.to_path_buf(),
                        line,
                        msg: e.to_string(),
                    })?;
                match v.remove(field) {
                    Some(serde_json::Value::String(s)) => Ok(Some(s)),
                    _ => Err(DataError::MissingField {
                        path: path.to_path_buf(),
                        line,
                        field: field.to_string(),
                    }),
                }
            }
        }
    }
}

/// `text` without a leading UTF-8 byte-order mark (U+FEFF), which JSON, JSONL and RON
/// readers would otherwise report as a syntax error at the first character.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The files a path stands for: itself, or every file under a directory, sorted by path so
/// the order (and so the shard bytes) never depends on the file system.
pub fn expand_paths(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let p = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue; // hidden files and our own temp files
            }
            let ft = entry.file_type().map_err(io_err(&p))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() || (ft.is_symlink() && p.is_file()) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn detect(path: &Path, format: InputFormat) -> InputFormat {
    if format != InputFormat::Auto {
        return format;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".ndjson") {
        InputFormat::Jsonl
    } else if name.ends_with(".parquet") {
        InputFormat::Parquet
    } else {
        InputFormat::Text
    }
}

/// A `Read` that hashes and counts the (compressed) bytes passing through it.
struct Tap<R> {
    inner: R,
    hasher: blake3::Hasher,
    bytes: u64,
    progress: Arc<AtomicU64>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Content identity of one source file, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The path as given (or found under a given directory).
    pub path: String,
    pub bytes: u64,
    /// blake3 (hex) of the file's bytes.
    pub blake3: String,
    /// Documents read from it (before dedup).
    pub docs: u64,
}

/// Reads one source file in chunks of at most ~`chunk_bytes` of text.
pub struct SourceReader {
    path: PathBuf,
    kind: Kind,
    docs: u64,
}

enum Kind {
    Lines {
        reader: Box<dyn BufRead + Send>,
        tap: TapHandle,
        line: u64,
        split: Option<TextSplit>,
        done: bool,
    },
    Whole {
        items: Option<Vec<RawItem>>,
        info: (u64, String),
    },
    #[cfg(feature = "parquet")]
    Parquet {
        rows: parquet::record::reader::RowIter<'static>,
        row: u64,
        info: (u64, String),
    },
}

/// Shared access to the tap inside a boxed reader chain (gzip wraps it).
#[derive(Clone)]
struct TapHandle(Arc<std::sync::Mutex<(blake3::Hasher, u64)>>);

struct SharedTap<R> {
    inner: Tap<R>,
    out: TapHandle,
}

impl<R: Read> Read for SharedTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            // Publish the final hash and size at EOF.
            if let Ok(mut g) = self.out.0.lock() {
                *g = (self.inner.hasher.clone(), self.inner.bytes);
            }
        }
        Ok(n)
    }
}

impl SourceReader {
    /// Open `path`; `progress` is incremented by the bytes read from disk.
    pub fn open(path: &Path, spec: &InputSpec, progress: Arc<AtomicU64>) -> Result<Self> {
        let fmt = detect(path, spec.format);
        let kind = match fmt {
            InputFormat::Parquet => open_parquet(path, spec, progress)?,
            InputFormat::Jsonl | InputFormat::Text => {
                let file = std::fs::File::open(path).map_err(io_err(path))?;
                let handle = TapHandle(Arc::new(std::sync::Mutex::new((blake3::Hasher::new(), 0))));
                let tap = SharedTap {
                    inner: Tap {
                        inner: file,
                        hasher: blake3::Hasher::new(),
                        bytes: 0,
                        progress,
                    },
                    out: handle.clone(),
                };
                let gz = path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
                let reader: Box<dyn BufRead + Send> = if gz {
                    Box::new(BufReader::with_capacity(
                        1 << 20,
                        flate2::read::MultiGzDecoder::new(BufReader::new(tap)),
                    ))
                } else {
                    Box::new(BufReader::with_capacity(1 << 20, tap))
                };
                if fmt == InputFormat::Text && spec.text_split == TextSplit::File {
                    // One document per file: read it whole.
                    let mut reader = reader;
                    let mut bytes = Vec::new();
                    reader.read_to_end(&mut bytes).map_err(io_err(path))?;
                    let mut sink = [0u8; 1];
                    let _ = reader.read(&mut sink); // make sure the tap saw EOF
                    let text = String::from_utf8(bytes).map_err(|e| {
                        let off = e.utf8_error().valid_up_to();
                        DataError::Io {
                            path: path.to_path_buf(),
                            source: std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("not valid UTF-8 at byte offset {off}"),
                            ),
                        }
                    })?;
                    let info = handle
                        .0
                        .lock()
                        .map(|g| (g.1, g.0.finalize().to_hex().to_string()))
                        .unwrap_or_default();
                    let items = if text.is_empty() {
                        vec![]
                    } else {
                        vec![RawItem::Text { loc: 1, text }]
                    };
                    Kind::Whole {
                        items: Some(items),
                        info,
                    }
                } else {
                    let split = (fmt == InputFormat::Text).then(|| spec.text_split.clone());
                    Kind::Lines {
                        reader,
                        tap: handle,
                        line: 0,
                        split,
                        done: false,
                    }
                }
            }
            InputFormat::Auto => unreachable!("detect() resolves Auto"),
        };
        Ok(Self {
            path: path.to_path_buf(),
            kind,
            docs: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Next chunk of items (about `chunk_bytes` of text), or `None` at the end of the file.
    pub fn next_chunk(&mut self, chunk_bytes: usize) -> Result<Option<Vec<RawItem>>> {
        let path = self.path.clone();
        let out = match &mut self.kind {
            Kind::Whole { items, .. } => items.take(),
            Kind::Lines {
                reader,
                line,
                split,
                done,
                ..
            } => {
                if *done {
                    return Ok(None);
                }
                let mut items = Vec::new();
                let mut bytes = 0usize;
                let mut buf = Vec::new();
                // For separator-split text: the document being accumulated and its first line.
                let mut pending: Option<(u64, String)> = None;
                loop {
                    buf.clear();
                    let n = reader
                        .read_until(b'\n', &mut buf)
                        .map_err(|e| DataError::Io {
                            path: path.clone(),
                            source: std::io::Error::new(
                                e.kind(),
                                format!("line {}: {e}", *line + 1),
                            ),
                        })?;
                    if n == 0 {
                        *done = true;
                        break;
                    }
                    *line += 1;
                    let s = String::from_utf8(std::mem::take(&mut buf)).map_err(|_| {
                        DataError::Utf8 {
                            path: path.clone(),
                            line: *line,
                        }
                    })?;
                    bytes += s.len();
                    match split {
                        None => items.push(RawItem::JsonLine {
                            line: *line,
                            raw: s,
                        }),
                        Some(TextSplit::Lines) => {
                            let t = s.trim_end_matches(['\n', '\r']);
                            if !t.trim().is_empty() {
                                items.push(RawItem::Text {
                                    loc: *line,
                                    text: t.to_string(),
                                });
                            }
                        }
                        Some(TextSplit::SeparatorLine(sep)) => {
                            if s.trim_end_matches(['\n', '\r']) == sep.as_str() {
                                if let Some((loc, text)) = pending.take() {
                                    items.push(RawItem::Text { loc, text });
                                }
                            } else {
                                let p = pending.get_or_insert_with(|| (*line, String::new()));
                                p.1.push_str(&s);
                            }
                        }
                        Some(TextSplit::File) => unreachable!("whole-file text is read in open()"),
                    }
                    // Never cut a separator-split document in two: only stop between documents.
                    if bytes >= chunk_bytes && pending.is_none() {
                        break;
                    }
                }
                if let Some((loc, text)) = pending.take() {
                    if !text.trim().is_empty() {
                        items.push(RawItem::Text { loc, text });
                    }
                }
                if items.is_empty() && *done {
                    None
                } else {
                    Some(items)
                }
            }
            #[cfg(feature = "parquet")]
            Kind::Parquet { rows, row, .. } => {
                let mut items = Vec::new();
                let mut bytes = 0usize;
                for r in rows.by_ref() {
                    *row += 1;
                    let r = r.map_err(|e| DataError::ParquetRow {
                        path: path.clone(),
                        row: *row,
                        msg: e.to_string(),
                    })?;
                    use parquet::record::RowAccessor;
                    let text = r.get_string(0).map_err(|e| DataError::ParquetRow {
                        path: path.clone(),
                        row: *row,
                        msg: format!("text column is null or not a string: {e}"),
                    })?;
                    bytes += text.len();
                    items.push(RawItem::Text {
                        loc: *row,
                        text: text.clone(),
                    });
                    if bytes >= chunk_bytes {
                        break;
                    }
                }
                if items.is_empty() {
                    None
                } else {
                    Some(items)
                }
            }
        };
        if let Some(items) = &out {
            self.docs += items.len() as u64;
        }
        Ok(out)
    }

    /// Size and hash of the source (valid once `next_chunk` returned `None`).
    pub fn finish(self) -> SourceInfo {
        let (bytes, blake3) = match self.kind {
            Kind::Lines { tap, .. } => tap
                .0
                .lock()
                .map(|g| (g.1, g.0.finalize().to_hex().to_string()))
                .unwrap_or_default(),
            Kind::Whole { info, .. } => info,
            #[cfg(feature = "parquet")]
            Kind::Parquet { info, .. } => info,
        };
        SourceInfo {
            path: self.path.display().to_string(),
            bytes,
            blake3,
            docs: self.docs,
        }
    }
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = blake3::Hasher::new();
    let n = std::io::copy(&mut f, &mut h).map_err(io_err(path))?;
    Ok((n, h.finalize().to_hex().to_string()))
}

#[cfg(feature = "parquet")]
fn open_parquet(path: &Path, spec: &InputSpec, progress: Arc<AtomicU64>) -> Result<Kind> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::reader::RowIter;
    let info = hash_file(path)?;
    progress.fetch_add(info.0, Ordering::Relaxed);
    let perr = |e: parquet::errors::ParquetError| DataError::Parquet {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let reader = SerializedFileReader::new(file).map_err(perr)?;
    let schema = reader.metadata().file_metadata().schema();
    let field = schema
        .get_fields()
        .iter()
        .find(|f| f.name() == spec.text_field)
        .cloned()
        .ok_or_else(|| DataError::Parquet {
            path: path.to_path_buf(),
            msg: format!(
                "no column `{}` (columns: {})",
                spec.text_field,
                schema
                    .get_fields()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
    let proj = parquet::schema::types::Type::group_type_builder(schema.name())
        .with_fields(vec![field])
        .build()
        .map_err(perr)?;
    let rows = RowIter::from_file_into(Box::new(reader))
        .project(Some(proj))
        .map_err(perr)?;
    Ok(Kind::Parquet { rows, row: 0, info })
}

#[cfg(not(feature = "parquet"))]
fn open_parquet(path: &Path, _spec: &InputSpec, _progress: Arc<AtomicU64>) -> Result<Kind> {
    let _ = hash_file;
    Err(DataError::ParquetDisabled {
        path: path.to_path_buf(),
    })
}

/// Call `f` on every document of one file, in order (sequential; for small jobs and BPE training).
pub fn for_each_doc(
    path: &Path,
    spec: &InputSpec,
    f: &mut dyn FnMut(Doc) -> Result<()>,
) -> Result<SourceInfo> {
    let mut r = SourceReader::open(path, spec, Arc::new(AtomicU64::new(0)))?;
    while let Some(items) = r.next_chunk(4 << 20)? {
        for item in items {
            let loc = item.loc();
            if let Some(text) = item.into_text(path, &spec.text_field)? {
                f(Doc { text, loc })?;
            }
        }
    }
    Ok(r.finish())
}
