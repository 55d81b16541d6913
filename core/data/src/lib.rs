//! dctk-data: dctk's data pipeline, from documents to the token ids a trainer consumes.
//!
//! Data-constrained studies need exact data accounting: how many *unique* tokens a run saw, how
//! often each was repeated, in which order, from which domain. This crate owns that, and nothing
//! about tensors (no libtorch): the trainer turns the ids it serves into tensors.
//!
//! * [`ingest`]: JSONL(.gz) / text / Parquet → token shards + `manifest.ron` (streaming, parallel,
//!   reproducible, atomic).
//! * [`Tokenizer`]: GPT-2 built in, any HF `tokenizer.json`, or a freshly trained byte-level BPE.
//! * [`Corpus`]: open + verify a corpus; domains, hash-based validation split, nested
//!   unique-token budgets.
//! * [`Sampler`]: mixtures over domains with repetition, exhaustion policies, schedules, exact
//!   accounting and exact resume; [`ValBatches`]: fixed per-domain validation batches.
//!
//! ```no_run
//! use dctk_data::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = IngestConfig {
//!     out: "corpora/study".into(),
//!     domains: vec![
//!         DomainInput::new("code", vec!["data/corpora/code.jsonl".into()]),
//!         DomainInput::new("quotes", vec!["data/corpora/quotes.jsonl".into()]),
//!     ],
//!     dedup: true,
//!     ..Default::default()
//! };
//! let _manifest: CorpusManifest = ingest(&cfg)?; // GPT-2 unless `tokenizer` says otherwise
//!
//! let corpus = Corpus::open("corpora/study")?; // refuses damaged shards, naming the file
//! let spec = MixSpec {
//!     domains: vec![
//!         MixDomainSpec { name: "code".into(), unique_tokens: Some(1_000_000), weight: 0.8, exhaustion: Exhaustion::Repeat },
//!         MixDomainSpec { name: "quotes".into(), unique_tokens: None, weight: 0.2, exhaustion: Exhaustion::StopAfterEpochs(4) },
//!     ],
//!     schedule: None,
//!     seq_len: 256,
//!     batch_size: 16,
//!     seed: 1,
//!     cross_doc_attention: true,
//! };
//! let mut sampler = corpus.sampler(&spec)?;
//! let batch = sampler.next_batch()?; // 16 rows × 257 ids
//! assert_eq!(batch.row(0).len(), 257);
//! let ckpt = ron::to_string(&sampler.state())?; // save with the model checkpoint
//! sampler.restore(ron::from_str(&ckpt)?)?; // exact resume
//! let _acct: MixAccounting = sampler.accounting(); // → run manifest
//! for _val in corpus.val_batches("code", 256, 16, 8)? { /* per-domain validation loss */ }
//! # Ok(()) }
//! ```

pub mod corpus;
pub mod entropy;
pub mod error;
mod fsutil;
pub mod ingest;
pub mod input;
pub mod manifest;
pub mod mix;
pub mod sampler;
pub mod shard;
pub mod tokenizer;
pub mod val;

pub use corpus::{Corpus, DocRef, Domain, OpenOptions, Span, Subset};
pub use entropy::{domain_entropy, proxy_mixture, sequences_entropy, von_neumann_entropy, DomainEntropy, EntropyOptions, EntropySplit, Normalisation, Proxy};
pub use error::{DataError, Result};
pub use fsutil::write_atomic;
pub use ingest::{
    ingest, ingest_with_stats, ingest_with_tokenizer, DomainInput, IngestConfig, IngestStats,
    DEFAULT_VAL_FRACTION,
};
pub use input::{InputFormat, InputSpec, SourceInfo, TextSplit};
pub use manifest::{corpus_file, CorpusManifest, DomainKind, DomainManifest, ShardInfo};
pub use mix::{sampler_over, MixDomainSpec, MixSpec};
pub use sampler::{
    Batch, DomainAccounting, Exhaustion, MixAccounting, MixDomain, Packing, Proportions, Sampler,
    SamplerConfig, SamplerState, SchedulePoint,
};
pub use tokenizer::{Tokenizer, TokenizerInfo, TokenizerSpec, GPT2_EOT_ID};
pub use val::ValBatches;
