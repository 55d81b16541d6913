//! The shape of a model, without the model: [`ModelConfig`] (layers, widths, vocabulary,
//! context), the named [`PRESETS`], parameter and FLOP counts, and the [`VocabLayout`] of a
//! run's token ids. Plain data, hashed into cell ids and written to manifests; it compiles
//! without libtorch (the planner uses it in both builds). The network itself is `model`.
use serde::{Deserialize, Serialize};

/// GPT-2's BPE has 50,257 tokens; padded to a multiple of 64 it is 50,304, as in
/// dc_pretrain (Xu, Wu, Cho, Hu, Wang 2026, "MIR and SoftQ"; authors' release
/// yixinw-lab/dc_pretrain, commit 8d7ceeb) and nanoGPT. The benchmarks and the presets
/// listing use it; a run's vocabulary comes from its corpus ([`VocabLayout`]).
pub const GPT2_VOCAB: i64 = 50_257;
pub const GPT2_PADDED_VOCAB: i64 = 50_304;

/// Rows of the embedding and the head are padded to a multiple of this (faster matmuls).
pub const VOCAB_PAD_MULTIPLE: i64 = 64;

/// How a run's token ids are laid out: the tokenizer's ids `0 .. base`, then the corpus's
/// special tokens (BoLT's latent delimiters; Ruan et al. 2025, arXiv 2503.18866) as the entry
/// named [`CORPUS_SPECIALS`], then each plugin's extra tokens (MIR's MASK) as real ids right
/// after, in the order the plugins are listed, then padding up to a multiple of 64 (`padded` =
/// rows of the embedding and the head). Recorded in the manifest (in the run plan) and in the
/// checkpoint's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VocabLayout {
    /// The tokenizer's vocabulary (the corpus manifest's `vocab_size`).
    pub base: i64,
    /// The corpus's special tokens (if any), then each plugin's extra ids, in list order.
    pub extra: Vec<ExtraTokens>,
    /// base + all extra tokens, rounded up to a multiple of [`VOCAB_PAD_MULTIPLE`].
    pub padded: i64,
}

/// The name of the [`ExtraTokens`] entry that holds a corpus's special tokens.
pub const CORPUS_SPECIALS: &str = "corpus";

/// The ids `first_id .. first_id + count` belong to `plugin`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraTokens {
    pub plugin: String,
    pub first_id: i64,
    pub count: i64,
}

impl VocabLayout {
    /// The layout of a tokenizer of `base` ids and the plugins' `(name, extra tokens)`.
    pub fn new(base: i64, plugins: &[(String, i64)]) -> VocabLayout {
        VocabLayout::with_corpus_specials(base, 0, plugins)
    }

    /// The layout of a tokenizer of `base` ids, a corpus with `specials` special tokens
    /// (ids `base .. base + specials`) and the plugins' `(name, extra tokens)` after them.
    pub fn with_corpus_specials(base: i64, specials: i64, plugins: &[(String, i64)]) -> VocabLayout {
        let mut next = base;
        let extra = std::iter::once((CORPUS_SPECIALS.to_string(), specials))
            .chain(plugins.iter().cloned())
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| {
                let t = ExtraTokens { plugin: name, first_id: next, count: n };
                next += n;
                t
            })
            .collect();
        let padded = (next + VOCAB_PAD_MULTIPLE - 1) / VOCAB_PAD_MULTIPLE * VOCAB_PAD_MULTIPLE;
        VocabLayout { base, extra, padded }
    }

    /// Ids in use: the tokenizer's, the corpus's special tokens and the plugins' (before
    /// padding).
    pub fn used(&self) -> i64 {
        self.base + self.extra.iter().map(|e| e.count).sum::<i64>()
    }

    /// The corpus's special tokens (0 for a plain corpus).
    pub fn corpus_specials(&self) -> i64 {
        self.extra.iter().find(|e| e.plugin == CORPUS_SPECIALS && e.first_id == self.base).map_or(0, |e| e.count)
    }

    /// Ids the corpus's tokenizer knows (its vocabulary and its special tokens): the ids
    /// text encodes to, that decoding may sample, and after which plugin ids begin.
    pub fn text_ids(&self) -> i64 {
        self.base + self.corpus_specials()
    }
}

/// The shape of a model. A plain serde struct: it is parsed from a script, hashed
/// into the run id and written to the run manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Rows of the embedding and the output head (padded vocabulary).
    pub vocab_size: i64,
    pub n_layer: i64,
    pub n_head: i64,
    /// Residual stream width.
    pub d_model: i64,
    /// SwiGLU hidden width.
    pub d_ff: i64,
    /// Longest sequence the RoPE tables cover.
    pub max_seq_len: i64,
    pub rope_theta: f64,
    pub norm_eps: f64,
}

/// Named sizes. The dc_pretrain shapes (Xu, Wu, Cho, Hu, Wang 2026, "MIR and SoftQ", model
/// table; authors' release yixinw-lab/dc_pretrain, commit 8d7ceeb) are named by their total
/// parameter count with untied embeddings and vocabulary 50,304; the CPU sizes are for
/// quickstarts and tests.
pub const PRESETS: &[(&str, i64, i64, i64, &str)] = &[
    // (name, layers, d_model, heads, what it is for)
    ("micro", 1, 64, 2, "tests: a one-layer model that trains in seconds"),
    ("tiny", 2, 128, 4, "CPU quickstarts: trains several epochs in minutes on 2 cores"),
    ("mini", 4, 256, 4, "CPU studies: a step up from tiny"),
    ("72m", 6, 512, 8, "dc_pretrain 72m"),
    ("140m", 9, 768, 12, "dc_pretrain 140m"),
    ("gpt2s", 12, 768, 12, "GPT-2-small shape (the 124M class) for GPU benchmarks"),
    ("257m", 12, 1024, 16, "dc_pretrain 257m"),
    ("664m", 18, 1536, 24, "dc_pretrain 664m"),
    ("1p4b", 24, 2048, 32, "dc_pretrain 1p4b"),
];

impl ModelConfig {
    /// A shape with dc_pretrain's conventions: SwiGLU hidden 256·⌈(8d/3)/256⌉, RoPE θ=10⁴.
    pub fn new(n_layer: i64, d_model: i64, n_head: i64, vocab_size: i64, max_seq_len: i64) -> Self {
        let d_ff = 256 * (((8 * d_model) as f64 / 3.0) / 256.0).ceil() as i64;
        ModelConfig {
            vocab_size,
            n_layer,
            n_head,
            d_model,
            d_ff,
            max_seq_len,
            rope_theta: 10_000.0,
            norm_eps: 1e-6,
        }
    }

    /// A named preset at the GPT-2 padded vocabulary.
    pub fn preset(name: &str, max_seq_len: i64) -> Option<Self> {
        PRESETS
            .iter()
            .find(|p| p.0 == name)
            .map(|&(_, l, d, h, _)| Self::new(l, d, h, GPT2_PADDED_VOCAB, max_seq_len))
    }

    pub fn head_dim(&self) -> i64 {
        self.d_model / self.n_head
    }

    /// Checks that the shape can be built; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("d_model", self.d_model),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
        ];
        for (name, v) in positive {
            if v <= 0 {
                return Err(format!("model.{name} must be positive, got {v}"));
            }
        }
        if self.d_model % self.n_head != 0 {
            return Err(format!(
                "model.d_model ({}) must be divisible by model.n_head ({})",
                self.d_model, self.n_head
            ));
        }
        if self.head_dim() % 2 != 0 {
            return Err(format!("model head dimension d_model/n_head = {} must be even for RoPE", self.head_dim()));
        }
        Ok(())
    }

    /// Parameters of one block: qkv + out projections, SwiGLU (gate, up, down), two norms.
    fn block_params(&self) -> i64 {
        let d = self.d_model;
        4 * d * d + 3 * d * self.d_ff + 2 * d
    }

    /// Exact total parameter count (embedding + blocks + final norm + head).
    pub fn total_params(&self) -> i64 {
        self.vocab_size * self.d_model * 2 + self.n_layer * self.block_params() + self.d_model
    }

    /// Non-embedding parameters: everything but the input embedding and the output
    /// head, the convention of dc_pretrain's model table (Xu et al. 2026; 72m → 20.5M).
    pub fn non_embedding_params(&self) -> i64 {
        self.n_layer * self.block_params() + self.d_model
    }

    /// Training FLOPs per token (forward + backward) at context `seq_len`:
    /// 6·(non-embedding params + head) for the matmuls, plus 12·layers·d·seq_len for the
    /// attention scores and weighted sums (Kaplan et al. 2020, Table 1; PaLM App. B).
    /// The input embedding is a lookup and costs no FLOPs. Causal masking is not
    /// discounted, as in the MFU convention of PaLM and nanoGPT.
    pub fn flops_per_token(&self, seq_len: i64) -> f64 {
        let matmul_params = (self.non_embedding_params() + self.vocab_size * self.d_model) as f64;
        6.0 * matmul_params + 12.0 * (self.n_layer * self.d_model * seq_len) as f64
    }
}
