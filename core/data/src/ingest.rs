//! Ingest: documents in, token shards + manifest out (`DIR/`).
//!
//! It owns the streaming pipeline: a reader thread turns source files into bounded chunks of raw
//! items (so memory is constant in corpus size: at most a few chunks are in flight), a rayon pool
//! parses and tokenizes each chunk in parallel *preserving order*, and the calling thread drops
//! duplicates and writes shards. Output order depends only on the inputs (sorted directory
//! listings, ordered chunks), never on thread timing, so re-ingesting reproduces every byte.
//! Everything is written under a temporary sibling of `out` that is renamed into place only when
//! the manifest is complete: an error or a crash leaves no half-written corpus.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, DataError, Result};
use crate::fsutil::{publish_dir, tmp_sibling, write_atomic, TmpDirGuard};
use crate::input::{expand_paths, InputSpec, RawItem, SourceInfo, SourceReader};
use crate::manifest::{
    is_val, ppm, CorpusManifest, DomainKind, DomainManifest, FORMAT_VERSION, MANIFEST_FILE,
};
use crate::shard::ShardWriter;
use crate::tokenizer::{Tokenizer, TokenizerSpec};

/// One named domain and where its documents come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainInput {
    /// Domain name: `[A-Za-z0-9_.-]+`, unique within the corpus (it is also a directory name).
    pub name: String,
    /// Files or directories (read recursively, in sorted order).
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub input: InputSpec,
    #[serde(default)]
    pub kind: DomainKind,
    /// Held-out validation fraction of documents (hash-based, per document).
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
}

/// The held-out fraction of documents when none is given, the same for `dctk data ingest`,
/// a script's `ingest(#{...})`, an automatic ingest by `train` and this crate: 5% leaves each
/// domain of the bundled corpora enough held-out tokens for `train`'s default `val_tokens`.
pub const DEFAULT_VAL_FRACTION: f64 = 0.05;

fn default_val_fraction() -> f64 {
    DEFAULT_VAL_FRACTION
}

impl DomainInput {
    /// A real domain from `paths`, JSONL field `text`, [`DEFAULT_VAL_FRACTION`] held out.
    pub fn new(name: impl Into<String>, paths: Vec<PathBuf>) -> Self {
        Self {
            name: name.into(),
            paths,
            input: InputSpec::default(),
            kind: DomainKind::Real,
            val_fraction: default_val_fraction(),
        }
    }
}

/// Everything `dctk data ingest` needs (serde: it can come from a Rhai map or RON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    pub out: PathBuf,
    pub domains: Vec<DomainInput>,
    pub tokenizer: TokenizerSpec,
    /// Drop documents whose text exactly equals an earlier one (across all domains).
    pub dedup: bool,
    /// Documents with fewer characters than this are dropped (default 1: empty ones).
    pub min_chars: usize,
    /// A shard is closed once it would exceed this many tokens.
    pub shard_tokens: u64,
    /// Text per parallel work unit; memory in flight is a few of these.
    pub chunk_bytes: usize,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Show a progress bar (MB/s, tokens/s) on stderr.
    pub progress: bool,
    /// Replace an existing `out` (only once the new corpus is complete).
    pub overwrite: bool,
    /// Literal strings that become single ids after the tokenizer's vocabulary
    /// (`vocab_size + i`, in this order), e.g. BoLT's `<|START_OF_LATENT|>` (Ruan et al. 2025,
    /// arXiv 2503.18866); recorded in the manifest's `special_tokens`.
    pub special_tokens: Vec<String>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("corpus"),
            domains: Vec::new(),
            tokenizer: TokenizerSpec::Gpt2,
            dedup: false,
            min_chars: 1,
            shard_tokens: 128 << 20,
            chunk_bytes: 1 << 20,
            threads: 0,
            progress: false,
            overwrite: false,
            special_tokens: Vec::new(),
        }
    }
}

/// Throughput of one ingest (not part of the manifest: it depends on the machine).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestStats {
    pub seconds: f64,
    pub input_bytes: u64,
    pub text_bytes: u64,
    pub tokens: u64,
    pub docs: u64,
    pub mb_per_s: f64,
    pub tokens_per_s: f64,
}

/// Ingest with the tokenizer the config names. See the module docs.
pub fn ingest(cfg: &IngestConfig) -> Result<CorpusManifest> {
    ingest_with_stats(cfg).map(|(m, _)| m)
}

/// [`ingest`], also returning throughput numbers.
pub fn ingest_with_stats(cfg: &IngestConfig) -> Result<(CorpusManifest, IngestStats)> {
    let tok = match &cfg.tokenizer {
        TokenizerSpec::Gpt2 => Tokenizer::gpt2()?,
        TokenizerSpec::HfFile { path, eot_token } => {
            Tokenizer::from_file_with_eot(path, eot_token.as_deref())?
        }
        TokenizerSpec::TrainBpe {
            vocab_size,
            domains,
        } => {
            let mut files = Vec::new();
            for d in &cfg.domains {
                if domains.as_ref().is_none_or(|names| names.contains(&d.name)) {
                    for p in &d.paths {
                        files.extend(expand_paths(p)?);
                    }
                }
            }
            Tokenizer::train_bpe(&files, *vocab_size)?
        }
    };
    ingest_with_tokenizer(cfg, &tok)
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DataError::Config(format!(
            "domain name `{name}` must match [A-Za-z0-9_.-]+ and not start with `.`"
        )))
    }
}

enum Msg {
    Chunk {
        domain: usize,
        items: Vec<(u32, RawItem)>,
        text_bytes: u64,
    },
    DomainDone {
        domain: usize,
        sources: Vec<SourceInfo>,
    },
    Failed(DataError),
}

/// Reader thread: walks domains and sources in order, batching items across small files.
fn spawn_reader(
    domains: Vec<(Vec<PathBuf>, InputSpec)>,
    chunk_bytes: usize,
    progress: Arc<AtomicU64>,
) -> (Receiver<Msg>, std::thread::JoinHandle<()>) {
    // Two chunks queued + one being tokenized + one being read: bounded memory.
    let (tx, rx) = sync_channel::<Msg>(2);
    let h = std::thread::spawn(move || {
        for (d, (files, spec)) in domains.into_iter().enumerate() {
            let mut buf: Vec<(u32, RawItem)> = Vec::new();
            let mut buf_bytes = 0u64;
            let mut infos = Vec::new();
            for (s, path) in files.iter().enumerate() {
                let mut r = match SourceReader::open(path, &spec, progress.clone()) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Msg::Failed(e));
                        return;
                    }
                };
                loop {
                    match r.next_chunk(chunk_bytes) {
                        Ok(Some(items)) => {
                            for it in items {
                                buf_bytes += match &it {
                                    RawItem::JsonLine { raw, .. } => raw.len(),
                                    RawItem::Text { text, .. } => text.len(),
                                } as u64;
                                buf.push((s as u32, it));
                            }
                            if buf_bytes >= chunk_bytes as u64 {
                                let items = std::mem::take(&mut buf);
                                if tx
                                    .send(Msg::Chunk {
                                        domain: d,
                                        items,
                                        text_bytes: buf_bytes,
                                    })
                                    .is_err()
                                {
                                    return;
                                }
                                buf_bytes = 0;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Msg::Failed(e));
                            return;
                        }
                    }
                }
                infos.push(r.finish());
            }
            if !buf.is_empty()
                && tx
                    .send(Msg::Chunk {
                        domain: d,
                        items: buf,
                        text_bytes: buf_bytes,
                    })
                    .is_err()
            {
                return;
            }
            if tx
                .send(Msg::DomainDone {
                    domain: d,
                    sources: infos,
                })
                .is_err()
            {
                return;
            }
        }
    });
    (rx, h)
}

/// What the parallel stage makes of one raw item.
enum Parsed {
    /// A blank JSONL line.
    Blank,
    /// Shorter than `min_chars`.
    TooShort,
    Doc {
        key: u64,
        hash16: [u8; 16],
        ids: Vec<u32>,
    },
}

/// Ingest with an already-built tokenizer (its own special tokens are replaced by
/// `cfg.special_tokens`).
pub fn ingest_with_tokenizer(
    cfg: &IngestConfig,
    tok: &Tokenizer,
) -> Result<(CorpusManifest, IngestStats)> {
    let t0 = Instant::now();
    let tok = &tok.with_special_tokens(&cfg.special_tokens)?;
    if cfg.domains.is_empty() {
        return Err(DataError::Config("no domains to ingest".into()));
    }
    let mut seen_names = HashSet::new();
    let mut plans = Vec::new();
    let mut total_input_bytes = 0u64;
    for d in &cfg.domains {
        check_name(&d.name)?;
        if !seen_names.insert(d.name.clone()) {
            return Err(DataError::Config(format!(
                "domain `{}` is listed twice",
                d.name
            )));
        }
        ppm(d.val_fraction)?;
        let mut files = Vec::new();
        for p in &d.paths {
            files.extend(expand_paths(p)?);
        }
        for f in &files {
            total_input_bytes += std::fs::metadata(f).map_err(io_err(f))?.len();
        }
        plans.push((files, d.input.clone()));
    }
    if cfg.out.exists() && !cfg.overwrite {
        return Err(DataError::OutputExists {
            path: cfg.out.clone(),
        });
    }
    let parent = match cfg.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tmp = tmp_sibling(&cfg.out, "ingest");
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let mut guard = TmpDirGuard {
        path: tmp.clone(),
        armed: true,
    };

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| DataError::Config(format!("thread pool: {e}")))?;
    let token_bytes: u8 = if tok.fits_u16() { 2 } else { 4 };
    let bar = make_bar(cfg.progress, total_input_bytes);
    let progress = Arc::new(AtomicU64::new(0));
    let (rx, reader) = spawn_reader(plans.clone(), cfg.chunk_bytes.max(1), progress.clone());

    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut domains_out: Vec<Option<DomainManifest>> = vec![None; cfg.domains.len()];
    let mut writers: Vec<Option<ShardWriter>> = (0..cfg.domains.len()).map(|_| None).collect();
    let mut counts = vec![[0u64; 8]; cfg.domains.len()];
    let (mut total_tokens, mut total_docs, mut text_bytes) = (0u64, 0u64, 0u64);

    let result: Result<()> = (|| {
        for msg in rx.iter() {
            match msg {
                Msg::Failed(e) => return Err(e),
                Msg::Chunk {
                    domain,
                    items,
                    text_bytes: tb,
                } => {
                    text_bytes += tb;
                    let d = &cfg.domains[domain];
                    let files = &plans[domain].0;
                    let field = d.input.text_field.as_str();
                    let min_chars = cfg.min_chars;
                    // Parse + hash + tokenize in parallel; `collect` keeps input order.
                    let out: Vec<Result<Parsed>> = pool.install(|| {
                        items
                            .into_par_iter()
                            .map(|(s, item)| {
                                let loc = item.loc();
                                let path = &files[s as usize];
                                let Some(text) = item.into_text(path, field)? else {
                                    return Ok(Parsed::Blank);
                                };
                                if text.chars().take(min_chars).count() < min_chars {
                                    return Ok(Parsed::TooShort);
                                }
                                let h = blake3::hash(text.as_bytes());
                                let mut hash16 = [0u8; 16];
                                hash16.copy_from_slice(&h.as_bytes()[..16]);
                                // Same value as `doc_key(&text)`, without hashing twice.
                                let key =
                                    u64::from_le_bytes(hash16[..8].try_into().expect("8 bytes"));
                                let ids = tok.try_encode(&text).map_err(|e| {
                                    DataError::Tokenizer(format!(
                                        "{}:{loc}: cannot tokenize: {e}",
                                        path.display()
                                    ))
                                })?;
                                Ok(Parsed::Doc { key, hash16, ids })
                            })
                            .collect()
                    });
                    if writers[domain].is_none() {
                        writers[domain] = Some(ShardWriter::new(
                            &tmp,
                            &d.name,
                            token_bytes,
                            cfg.shard_tokens,
                        )?);
                    }
                    let w = writers[domain].as_mut().expect("created above");
                    let vppm = ppm(d.val_fraction)?;
                    let c = &mut counts[domain];
                    // Counters: docs, tokens, duplicates, too short, train docs/tokens, val docs/tokens.
                    for r in out {
                        let (key, hash16, ids) = match r? {
                            Parsed::Blank => continue,
                            Parsed::TooShort => {
                                c[3] += 1;
                                continue;
                            }
                            Parsed::Doc { key, hash16, ids } => (key, hash16, ids),
                        };
                        if cfg.dedup && !seen.insert(hash16) {
                            c[2] += 1;
                            continue;
                        }
                        let n = ids.len() as u64;
                        w.push_doc(key, &ids)?;
                        c[0] += 1;
                        c[1] += n;
                        if is_val(key, vppm) {
                            c[6] += 1;
                            c[7] += n;
                        } else {
                            c[4] += 1;
                            c[5] += n;
                        }
                        total_tokens += n;
                        total_docs += 1;
                    }
                    let secs = t0.elapsed().as_secs_f64().max(1e-9);
                    bar.set_position(progress.load(Ordering::Relaxed));
                    bar.set_message(format!(
                        "{:.2} M tokens, {:.0} k tokens/s",
                        total_tokens as f64 / 1e6,
                        total_tokens as f64 / secs / 1e3
                    ));
                }
                Msg::DomainDone { domain, sources } => {
                    let d = &cfg.domains[domain];
                    let shards = match writers[domain].take() {
                        Some(w) => w.finish()?,
                        None => Vec::new(),
                    };
                    let c = counts[domain];
                    domains_out[domain] = Some(DomainManifest {
                        name: d.name.clone(),
                        kind: d.kind.clone(),
                        input: d.input.clone(),
                        sources,
                        docs: c[0],
                        tokens: c[1],
                        dropped_duplicates: c[2],
                        dropped_empty: c[3],
                        val_ppm: ppm(d.val_fraction)?,
                        train_docs: c[4],
                        train_tokens: c[5],
                        val_docs: c[6],
                        val_tokens: c[7],
                        shards,
                    });
                }
            }
        }
        Ok(())
    })();
    drop(rx); // unblocks the reader if we stopped early
    let _ = reader.join();
    bar.finish_and_clear();
    result?;

    let mut domains = Vec::new();
    for (i, d) in domains_out.into_iter().enumerate() {
        domains.push(d.ok_or_else(|| {
            DataError::Config(format!(
                "reader stopped before domain `{}`",
                cfg.domains[i].name
            ))
        })?);
    }
    let tok_file = tok.to_json().map(|_| "tokenizer.json".to_string());
    if let Some(f) = &tok_file {
        tok.save(&tmp.join(f))?;
    }
    let manifest = CorpusManifest {
        format: FORMAT_VERSION,
        dctk_data_version: env!("CARGO_PKG_VERSION").to_string(),
        tokenizer: tok.info(tok_file),
        token_bytes,
        dedup: cfg.dedup,
        domains,
        special_tokens: cfg.special_tokens.clone(),
    };
    write_atomic(&tmp.join(MANIFEST_FILE), manifest.to_ron()?.as_bytes())?;
    publish_dir(&tmp, &cfg.out, cfg.overwrite)?;
    guard.armed = false;
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    let stats = IngestStats {
        seconds: secs,
        input_bytes: total_input_bytes,
        text_bytes,
        tokens: total_tokens,
        docs: total_docs,
        mb_per_s: total_input_bytes as f64 / 1e6 / secs,
        tokens_per_s: total_tokens as f64 / secs,
    };
    Ok((manifest, stats))
}

fn make_bar(show: bool, total_bytes: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
