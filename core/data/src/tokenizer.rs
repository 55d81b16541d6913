//! Tokenizers: GPT-2 BPE compiled in (via `tiktoken-rs`, no files, no network), any Hugging Face
//! `tokenizer.json`, and training a new byte-level BPE with the HF `tokenizers` crate.
//!
//! It owns the identity of a tokenizer: [`Tokenizer::hash`] is a blake3 over the tokenizer's
//! *content* (the GPT-2 id→bytes table, or the canonical JSON of an HF tokenizer), so it is
//! written into every corpus manifest and a corpus tokenized differently can never be mixed in.
//! Documents are always encoded as *ordinary* text: a literal `<|endoftext|>` inside a document
//! stays text and never becomes the separator id.
//!
//! A corpus may add its own *special tokens* ([`Tokenizer::with_special_tokens`], e.g. BoLT's
//! `<|START_OF_LATENT|>`; Ruan et al. 2025, arXiv 2503.18866): literal strings that encode to
//! single ids appended after the base vocabulary (`vocab_size() + i`) and decode back to the
//! strings. They are recorded in the corpus manifest, not in [`TokenizerInfo`], so the base
//! tokenizer's hash is unchanged by them.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{io_err, DataError, Result};

/// GPT-2's end-of-text id (the document separator of r50k_base).
pub const GPT2_EOT_ID: u32 = 50256;
/// Candidate separator tokens, tried in order when loading an HF tokenizer.
const EOT_CANDIDATES: &[&str] = &["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "[SEP]"];

/// What a corpus manifest records about the tokenizer that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    /// `gpt2` (built in), `hf` (a given tokenizer.json) or `bpe` (trained by dctk).
    pub kind: String,
    pub vocab_size: u32,
    pub eot_id: u32,
    /// blake3 (hex) of the tokenizer's content; see [`Tokenizer::hash`].
    pub hash: String,
    /// For `hf`/`bpe`: the tokenizer file inside the corpus directory.
    pub file: Option<String>,
}

#[derive(Clone)]
enum Inner {
    Gpt2(Arc<tiktoken_rs::CoreBPE>),
    Hf(Arc<tokenizers::Tokenizer>),
}

/// A tokenizer with a fixed separator id and a content hash. Cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Inner,
    kind: &'static str,
    vocab_size: u32,
    eot_id: u32,
    hash: String,
    /// Canonical JSON for HF tokenizers (what gets copied into a corpus directory).
    json: Option<Arc<String>>,
    /// The corpus's special tokens: `specials[i]` has id `vocab_size + i`.
    specials: Arc<Vec<String>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab_size", &self.vocab_size)
            .field("eot_id", &self.eot_id)
            .field("hash", &self.hash)
            .field("special_tokens", &self.specials)
            .finish()
    }
}

impl Tokenizer {
    /// GPT-2 BPE (tiktoken r50k_base), compiled in. `<|endoftext|>` = 50256 is the separator.
    pub fn gpt2() -> Result<Self> {
        let bpe = tiktoken_rs::r50k_base().map_err(|e| DataError::Tokenizer(e.to_string()))?;
        // Hash the id -> bytes table itself, so the hash changes iff the ids would.
        let mut h = blake3::Hasher::new();
        h.update(b"dctk-tokenizer:tiktoken:r50k_base\n");
        for id in 0..=GPT2_EOT_ID {
            let bytes = bpe
                .decode_bytes(&[id])
                .map_err(|e| DataError::Tokenizer(format!("gpt2 table has no id {id}: {e:?}")))?;
            h.update(&id.to_le_bytes());
            h.update(&(bytes.len() as u32).to_le_bytes());
            h.update(&bytes);
        }
        Ok(Self {
            inner: Inner::Gpt2(Arc::new(bpe)),
            kind: "gpt2",
            vocab_size: GPT2_EOT_ID + 1,
            eot_id: GPT2_EOT_ID,
            hash: h.finalize().to_hex().to_string(),
            json: None,
            specials: Arc::new(Vec::new()),
        })
    }

    /// Load a Hugging Face `tokenizer.json`. The separator is the first of `<|endoftext|>`,
    /// `</s>`, `<|end_of_text|>`, `<eos>`, `[SEP]` that the vocabulary has.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_file_with_eot(path, None)
    }

    /// Like [`Tokenizer::from_file`] with an explicit separator token.
    pub fn from_file_with_eot(path: impl AsRef<Path>, eot_token: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let tok = tokenizers::Tokenizer::from_str(crate::input::strip_bom(&text)).map_err(|e| {
            DataError::Tokenizer(format!(
                "{}: not a Hugging Face tokenizer.json: {e}",
                path.display()
            ))
        })?;
        Self::from_hf(tok, "hf", eot_token)
            .map_err(|e| DataError::Tokenizer(format!("{}: {e}", path.display())))
    }

    fn from_hf(
        mut tok: tokenizers::Tokenizer,
        kind: &'static str,
        eot_token: Option<&str>,
    ) -> Result<Self> {
        // Documents are data: special-token strings inside them must stay text.
        tok.set_encode_special_tokens(true);
        let eot_id = match eot_token {
            Some(t) => tok.token_to_id(t).ok_or_else(|| {
                DataError::Tokenizer(format!("separator token `{t}` is not in the vocabulary"))
            })?,
            None => EOT_CANDIDATES
                .iter()
                .find_map(|t| tok.token_to_id(t))
                .ok_or_else(|| {
                    DataError::Tokenizer(format!(
                        "no document separator found (looked for {}); pass one explicitly",
                        EOT_CANDIDATES.join(", ")
                    ))
                })?,
        };
        let json = tok
            .to_string(false)
            .map_err(|e| DataError::Tokenizer(e.to_string()))?;
        let mut h = blake3::Hasher::new();
        h.update(b"dctk-tokenizer:hf\n");
        h.update(&eot_id.to_le_bytes());
        h.update(json.as_bytes());
        let vocab_size = tok.get_vocab_size(true) as u32;
        Ok(Self {
            inner: Inner::Hf(Arc::new(tok)),
            kind,
            vocab_size: vocab_size.max(eot_id + 1),
            eot_id,
            hash: h.finalize().to_hex().to_string(),
            json: Some(Arc::new(json)),
            specials: Arc::new(Vec::new()),
        })
    }

    /// Train a byte-level BPE (GPT-2 style pre-tokenisation) of `vocab_size` entries on the
    /// documents of `files` (any input format [`crate::input`] reads; JSONL uses field `text`).
    /// `<|endoftext|>` is added as a special token and used as the separator.
    pub fn train_bpe(files: &[PathBuf], vocab_size: u32) -> Result<Self> {
        let spec = crate::input::InputSpec {
            text_field: "text".into(),
            ..Default::default()
        };
        let mut docs: Vec<String> = Vec::new();
        for f in files {
            for src in crate::input::expand_paths(f)? {
                crate::input::for_each_doc(&src, &spec, &mut |d| {
                    docs.push(d.text);
                    Ok(())
                })?;
            }
        }
        Self::train_bpe_from_texts(docs.iter().map(|s| s.as_str()), vocab_size)
    }

    /// Train a byte-level BPE on an iterator of documents (see [`Tokenizer::train_bpe`]).
    pub fn train_bpe_from_texts<'a, I>(texts: I, vocab_size: u32) -> Result<Self>
    where
        I: Iterator<Item = &'a str> + Send,
    {
        use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::{
            AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper,
            PreTokenizerWrapper,
        };
        let min_vocab = 256 + 1;
        if vocab_size < min_vocab {
            return Err(DataError::Config(format!(
                "BPE vocab_size must be at least {min_vocab} (256 bytes + separator)"
            )));
        }
        let mut trainer = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size as usize)
            .min_frequency(2)
            .special_tokens(vec![AddedToken::from("<|endoftext|>", true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut tok: tokenizers::TokenizerImpl<
            BPE,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        > = tokenizers::TokenizerImpl::new(BPE::default());
        tok.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, true, true,
        ))));
        tok.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        tok.train(&mut trainer, texts)
            .map_err(|e| DataError::Tokenizer(format!("BPE training failed: {e}")))?;
        let tok = tokenizers::Tokenizer::from(tok);
        Self::from_hf(tok, "bpe", Some("<|endoftext|>"))
    }

    /// Rebuild from a corpus manifest's [`TokenizerInfo`] (`dir` holds the tokenizer file) and
    /// check that the hash still matches.
    pub fn from_info(info: &TokenizerInfo, dir: &Path) -> Result<Self> {
        let tok = match (info.kind.as_str(), &info.file) {
            ("gpt2", _) => Self::gpt2()?,
            (_, Some(f)) => {
                let path = crate::manifest::corpus_file(dir, "tokenizer.file", f)?;
                let mut t = Self::from_file_with_eot(&path, None)?;
                if t.eot_id != info.eot_id {
                    t = Self::from_file_with_eot_id(path, info.eot_id)?;
                }
                t.kind = if info.kind == "bpe" { "bpe" } else { "hf" };
                t
            }
            (k, None) => {
                return Err(DataError::Tokenizer(format!(
                    "manifest tokenizer of kind `{k}` names no file"
                )))
            }
        };
        if tok.hash != info.hash {
            return Err(DataError::Tokenizer(format!(
                "tokenizer in {} hashes to {}, the manifest says {}",
                dir.display(),
                tok.hash,
                info.hash
            )));
        }
        if tok.vocab_size != info.vocab_size || tok.eot_id != info.eot_id {
            return Err(DataError::Tokenizer(format!(
                "{}: tokenizer.vocab_size {} and eot_id {} disagree with the tokenizer it names ({} ids, separator {})",
                dir.join(crate::manifest::MANIFEST_FILE).display(),
                info.vocab_size,
                info.eot_id,
                tok.vocab_size,
                tok.eot_id
            )));
        }
        Ok(tok)
    }

    fn from_file_with_eot_id(path: PathBuf, eot_id: u32) -> Result<Self> {
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let tok = tokenizers::Tokenizer::from_str(crate::input::strip_bom(&text))
            .map_err(|e| DataError::Tokenizer(e.to_string()))?;
        let name = tok.id_to_token(eot_id).ok_or_else(|| {
            DataError::Tokenizer(format!("{}: no token with id {eot_id}", path.display()))
        })?;
        Self::from_hf(tok, "hf", Some(&name))
    }

    /// This tokenizer with `specials` as extra single-id tokens: `specials[i]` encodes to
    /// `vocab_size() + i` and decodes to itself; text between them is encoded as ordinary text.
    /// Replaces any special tokens it had. Refuses an empty string or a duplicate; where a
    /// special string is also text the base tokenizer knows, the special id wins. Used for BoLT's latent-thought delimiters (Ruan et al. 2025,
    /// arXiv 2503.18866, §"data format"; authors' release ryoungj/BoLT `lingua/tokenizer.py`).
    pub fn with_special_tokens(&self, specials: &[String]) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        for (i, s) in specials.iter().enumerate() {
            if s.is_empty() {
                return Err(DataError::Config(format!("special_tokens[{i}] is empty")));
            }
            if !seen.insert(s.as_str()) {
                return Err(DataError::Config(format!(
                    "special_tokens[{i}] `{s}` is listed twice"
                )));
            }
        }
        let total = self.vocab_size as u64 + specials.len() as u64;
        if total > u32::MAX as u64 {
            return Err(DataError::Config(format!(
                "{} special tokens after a vocabulary of {} do not fit in 32-bit ids",
                specials.len(),
                self.vocab_size
            )));
        }
        let mut t = self.clone();
        t.specials = Arc::new(specials.to_vec());
        Ok(t)
    }

    /// The special tokens, in id order (`vocab_size() + i`); empty for a plain tokenizer.
    pub fn special_tokens(&self) -> &[String] {
        &self.specials
    }

    /// Ids in use: the base vocabulary and the special tokens.
    pub fn total_ids(&self) -> u32 {
        self.vocab_size + self.specials.len() as u32
    }

    /// The id of special token `s`, if it is one.
    pub fn special_id(&self, s: &str) -> Option<u32> {
        self.specials.iter().position(|x| x == s).map(|i| self.vocab_size + i as u32)
    }

    /// The first special token in `text` at or after byte `from`: (start, index in
    /// `specials`). At one position the longest special wins.
    fn next_special(&self, text: &str, from: usize) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        for (i, s) in self.specials.iter().enumerate() {
            if let Some(p) = text[from..].find(s.as_str()) {
                let p = p + from;
                let better = match best {
                    None => true,
                    Some((bp, bi)) => p < bp || (p == bp && s.len() > self.specials[bi].len()),
                };
                if better {
                    best = Some((p, i));
                }
            }
        }
        best
    }

    /// Encode one document as ordinary text (no special tokens of the base tokenizer are
    /// recognised; the corpus's own special tokens, if any, become their single ids). An HF
    /// tokenizer that fails on the text (rare: a normaliser error) yields no ids; use
    /// [`Tokenizer::try_encode`] to see the error (ingest does).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.try_encode(text).unwrap_or_default()
    }

    /// [`Tokenizer::encode`], reporting HF tokenizer errors.
    pub fn try_encode(&self, text: &str) -> Result<Vec<u32>> {
        if self.specials.is_empty() {
            return self.encode_ordinary(text);
        }
        let mut ids = Vec::new();
        let mut at = 0;
        while let Some((p, i)) = self.next_special(text, at) {
            if p > at {
                ids.extend(self.encode_ordinary(&text[at..p])?);
            }
            ids.push(self.vocab_size + i as u32);
            at = p + self.specials[i].len();
        }
        if at < text.len() {
            ids.extend(self.encode_ordinary(&text[at..])?);
        }
        Ok(ids)
    }

    fn encode_ordinary(&self, text: &str) -> Result<Vec<u32>> {
        match &self.inner {
            Inner::Gpt2(bpe) => Ok(bpe.encode_ordinary(text)),
            Inner::Hf(tok) => tok
                .encode_fast(text, false)
                .map(|enc| enc.get_ids().to_vec())
                .map_err(|e| DataError::Tokenizer(e.to_string())),
        }
    }

    /// Decode ids back to text (invalid UTF-8 is replaced, which can happen mid-character).
    /// Special-token ids render as their strings.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if self.specials.is_empty() {
            return self.decode_ordinary(ids);
        }
        let mut out = String::new();
        let mut run_start = 0;
        for (k, &id) in ids.iter().enumerate() {
            let Some(s) = id.checked_sub(self.vocab_size).and_then(|i| self.specials.get(i as usize)) else {
                continue;
            };
            out.push_str(&self.decode_ordinary(&ids[run_start..k])?);
            out.push_str(s);
            run_start = k + 1;
        }
        out.push_str(&self.decode_ordinary(&ids[run_start..])?);
        Ok(out)
    }

    fn decode_ordinary(&self, ids: &[u32]) -> Result<String> {
        if ids.is_empty() {
            return Ok(String::new());
        }
        match &self.inner {
            Inner::Gpt2(bpe) => {
                let bytes = bpe
                    .decode_bytes(ids)
                    .map_err(|e| DataError::Tokenizer(format!("{e:?}")))?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Inner::Hf(tok) => tok
                .decode(ids, false)
                .map_err(|e| DataError::Tokenizer(e.to_string())),
        }
    }

    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }
    /// The document separator id.
    pub fn eot_id(&self) -> u32 {
        self.eot_id
    }
    /// blake3 (hex) of the tokenizer's content.
    pub fn hash(&self) -> &str {
        &self.hash
    }
    pub fn kind(&self) -> &str {
        self.kind
    }
    /// Canonical `tokenizer.json` text (HF and trained tokenizers only).
    pub fn to_json(&self) -> Option<&str> {
        self.json.as_deref().map(|s| s.as_str())
    }
    /// Save as `tokenizer.json` (HF and trained tokenizers only), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        match &self.json {
            Some(j) => crate::fsutil::write_atomic(path, j.as_bytes()),
            None => Err(DataError::Tokenizer(
                "the built-in GPT-2 tokenizer has no file to save".into(),
            )),
        }
    }
    /// True when every id (special tokens included) fits in a u16 (shards then use 2 bytes
    /// per token).
    pub fn fits_u16(&self) -> bool {
        self.total_ids() <= 1 << 16
    }

    pub(crate) fn info(&self, file: Option<String>) -> TokenizerInfo {
        TokenizerInfo {
            kind: self.kind.to_string(),
            vocab_size: self.vocab_size,
            eot_id: self.eot_id,
            hash: self.hash.clone(),
            file,
        }
    }
}

/// How an ingest picks its tokenizer (serde, so it can come from a script map or RON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum TokenizerSpec {
    /// GPT-2 BPE, compiled in.
    #[default]
    Gpt2,
    /// A Hugging Face `tokenizer.json`, with an optional separator token.
    HfFile {
        path: PathBuf,
        eot_token: Option<String>,
    },
    /// Train a byte-level BPE of `vocab_size` on the ingest's own inputs (all domains, or the
    /// named ones) before tokenizing them.
    TrainBpe {
        vocab_size: u32,
        domains: Option<Vec<String>>,
    },
}
