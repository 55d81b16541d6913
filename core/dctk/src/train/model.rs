//! The model: a decoder-only transformer, read top to bottom.
//!
//! Shape of one block (pre-norm, as in LLaMA and dc_pretrain):
//!
//! ```text
//! x ─┬─ RMSNorm ─ q,k,v ─ RoPE(q,k) ─ causal SDPA ─ out-proj ─ dropout ─(+)─┬─ RMSNorm ─ SwiGLU ─ dropout ─(+)─▶
//!    └───────────────────────────────────────────────────────────────────────┘└────────────────────────────────┘
//! ```
//!
//! - Attention goes through libtorch's fused `scaled_dot_product_attention` with
//!   `is_causal = true` (flash / memory-efficient kernels on CUDA, a fused kernel on CPU), or,
//!   when documents packed into one sequence must not see each other, with an explicit
//!   block-diagonal causal mask ([`Gpt::forward_masked`], [`Gpt::document_mask`]).
//! - Rotary position embeddings (Su et al. 2021, "RoFormer"), rotate-half form.
//! - RMSNorm (Zhang & Sennrich 2019) without bias.
//! - SwiGLU feed-forward (Shazeer 2020) with hidden = 256·⌈(8d/3)/256⌉, as in dc_pretrain.
//! - Untied input embedding and output head; no biases anywhere.
//!
//! Parameter names are stable (`wte`, `h.{i}.attn.qkv`, …): they are the keys of the
//! checkpoint's safetensors file and decide the optimizer's no-decay group.
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

pub use super::shape::*;

/// Root-mean-square layer norm (Zhang & Sennrich 2019): x · w / sqrt(mean(x²) + ε).
#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(vs: nn::Path, d: i64, eps: f64) -> Self {
        RmsNorm { weight: vs.ones("weight", &[d]), eps }
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.rms_norm(&[*x.size().last().unwrap()], Some(&self.weight), self.eps)
    }
}

/// A bias-free linear layer whose weight is initialised N(0, std²).
fn linear(vs: nn::Path, name: &str, d_in: i64, d_out: i64, std: f64) -> Tensor {
    vs.var(name, &[d_out, d_in], nn::Init::Randn { mean: 0.0, stdev: std })
}

#[derive(Debug)]
struct Block {
    attn_norm: RmsNorm,
    /// Fused q, k, v projection: [3·d, d].
    qkv: Tensor,
    /// Attention output projection: [d, d].
    proj: Tensor,
    mlp_norm: RmsNorm,
    /// Fused SwiGLU gate and up projections: [2·d_ff, d].
    gate_up: Tensor,
    /// SwiGLU down projection: [d, d_ff].
    down: Tensor,
    n_head: i64,
    d_ff: i64,
}

impl Block {
    fn new(vs: nn::Path, cfg: &ModelConfig) -> Self {
        let d = cfg.d_model;
        let std = 0.02;
        // GPT-2's scaled init of the projections that write into the residual stream.
        let out_std = 0.02 / (2.0 * cfg.n_layer as f64).sqrt();
        Block {
            attn_norm: RmsNorm::new(&vs / "attn_norm", d, cfg.norm_eps),
            qkv: linear(&vs / "attn", "qkv", d, 3 * d, std),
            proj: linear(&vs / "attn", "proj", d, d, out_std),
            mlp_norm: RmsNorm::new(&vs / "mlp_norm", d, cfg.norm_eps),
            gate_up: linear(&vs / "mlp", "gate_up", d, 2 * cfg.d_ff, std),
            down: linear(&vs / "mlp", "down", cfg.d_ff, d, out_std),
            n_head: cfg.n_head,
            d_ff: cfg.d_ff,
        }
    }

    /// Queries, keys and values [B, H, T, hd] of `x` [B, T, d] (before RoPE).
    fn project_qkv(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (b, t, d) = x.size3().unwrap();
        let h = self.attn_norm.forward(x).matmul(&self.qkv.tr());
        let qkv = h.view([b, t, 3, self.n_head, d / self.n_head]).permute([2, 0, 3, 1, 4]); // [3, B, H, T, hd]
        (qkv.get(0), qkv.get(1), qkv.get(2))
    }

    /// The rest of the block after attention: out-projection of the heads `y` [B, H, T, hd],
    /// residual, then the SwiGLU feed-forward down(silu(gate(x)) ⊙ up(x)) and its residual.
    fn finish(&self, x: &Tensor, y: &Tensor, dropout: f64, train: bool) -> Tensor {
        let (b, t, d) = x.size3().unwrap();
        let y = y.transpose(1, 2).contiguous().view([b, t, d]).matmul(&self.proj.tr());
        let x = x + y.dropout(dropout, train);
        let gu = self.mlp_norm.forward(&x).matmul(&self.gate_up.tr());
        let parts = gu.split(self.d_ff, -1);
        let m = (parts[0].silu() * &parts[1]).matmul(&self.down.tr());
        x + m.dropout(dropout, train)
    }

    fn forward(&self, x: &Tensor, rope: &Rope, mask: Option<&Tensor>, dropout: f64, train: bool) -> Tensor {
        let t = x.size()[1];
        let (q, k, v) = self.project_qkv(x);
        let (q, k) = (rope.apply(&q, t), rope.apply(&k, t));
        let attn_dropout = if train { dropout } else { 0.0 };
        // Causal by the fused kernel, or by an explicit (block-diagonal causal) mask.
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, attn_dropout, mask.is_none(), None, false);
        self.finish(x, &y, dropout, train)
    }

    /// The block at inference with explicit positions and attention mask, optionally
    /// appending this step's keys and values to a layer of a [`KvCache`]:
    /// `x` [B, T, d] are new positions `positions` [B, T]; `mask` [B, 1, T, S] (true = may
    /// attend) covers the S = cached + T keys. Same arithmetic as [`Block::forward`] with
    /// dropout off, so decoding with and without the cache sees the same function.
    fn forward_decode(&self, x: &Tensor, rope: &Rope, positions: &Tensor, mask: &Tensor, cache: Option<(&Tensor, &Tensor, i64)>) -> Tensor {
        let t = x.size()[1];
        let (q, k, v) = self.project_qkv(x);
        let (q, k) = (rope.apply_at(&q, positions), rope.apply_at(&k, positions));
        let (k, v) = match cache {
            Some((k_buf, v_buf, start)) => {
                // Write this step's keys/values into their slots, attend over all filled ones.
                k_buf.narrow(2, start, t).copy_(&k);
                v_buf.narrow(2, start, t).copy_(&v);
                (k_buf.narrow(2, 0, start + t), v_buf.narrow(2, 0, start + t))
            }
            None => (k, v),
        };
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, false);
        self.finish(x, &y, 0.0, false)
    }
}

/// Keys and values of every layer while decoding a batch: per layer two tensors
/// [B, H, capacity, head_dim], of which the first `len` positions are filled. Allocated
/// once for the longest sequence of the batch, so a decode step writes one slot per layer
/// instead of re-concatenating the whole prefix.
#[derive(Debug)]
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: i64,
}

impl KvCache {
    pub fn new(cfg: &ModelConfig, batch: i64, capacity: i64, kind: Kind, device: Device) -> KvCache {
        let shape = [batch, cfg.n_head, capacity, cfg.head_dim()];
        let zeros = || Tensor::zeros(shape, (kind, device));
        KvCache { keys: (0..cfg.n_layer).map(|_| zeros()).collect(), values: (0..cfg.n_layer).map(|_| zeros()).collect(), len: 0 }
    }

    /// Positions filled.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the batch rows `rows` (int64 indices), e.g. once other rows finished.
    pub fn keep_rows(&mut self, rows: &Tensor) {
        for t in self.keys.iter_mut().chain(self.values.iter_mut()) {
            *t = t.index_select(0, rows);
        }
    }
}

/// Rotary embedding tables, cos and sin of shape [max_seq_len, head_dim/2].
#[derive(Debug)]
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(cfg: &ModelConfig, device: Device) -> Self {
        let half = cfg.head_dim() / 2;
        let inv_freq = Tensor::arange(half, (Kind::Float, device))
            .g_mul_scalar(-2.0 * cfg.rope_theta.ln() / cfg.head_dim() as f64)
            .exp();
        let pos = Tensor::arange(cfg.max_seq_len, (Kind::Float, device));
        let angles = pos.outer(&inv_freq);
        Rope { cos: angles.cos(), sin: angles.sin() }
    }

    /// Rotates pairs (x_i, x_{i+hd/2}) of a [B, H, T, hd] tensor by position-dependent angles.
    fn apply(&self, x: &Tensor, t: i64) -> Tensor {
        rotate(x, &self.cos.narrow(0, 0, t), &self.sin.narrow(0, 0, t))
    }

    /// [`Rope::apply`] at explicit positions [B, T] (int64) of a [B, H, T, hd] tensor: a
    /// left-padded row of a batch, or the next token at the end of a cache.
    fn apply_at(&self, x: &Tensor, positions: &Tensor) -> Tensor {
        let (b, t) = positions.size2().unwrap();
        let half = x.size()[3] / 2;
        let flat = positions.view([-1]);
        let cos = self.cos.index_select(0, &flat).view([b, 1, t, half]);
        let sin = self.sin.index_select(0, &flat).view([b, 1, t, half]);
        rotate(x, &cos, &sin)
    }
}

/// The rotate-half form of RoPE: (x1, x2) ↦ (x1·cos − x2·sin, x1·sin + x2·cos) on the two
/// halves of the last dimension, with tables that broadcast against x.
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    let (cos, sin) = (cos.to_kind(x.kind()), sin.to_kind(x.kind()));
    let x1 = x.narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    Tensor::cat(&[&x1 * &cos - &x2 * &sin, &x1 * &sin + &x2 * &cos], 3)
}

/// The decoder-only language model. Owns its parameters through the `VarStore` it was
/// built in.
#[derive(Debug)]
pub struct Gpt {
    pub config: ModelConfig,
    wte: Tensor,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
    lm_head: Tensor,
    rope: Rope,
    dropout: f64,
}

impl Gpt {
    /// Builds the model's variables under `vs.root()`; initialisation draws from
    /// libtorch's global generator, so seed it first (`tch::manual_seed`).
    pub fn new(vs: &nn::VarStore, config: &ModelConfig, dropout: f64) -> Self {
        let root = vs.root();
        let d = config.d_model;
        let wte = root.var("wte", &[config.vocab_size, d], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let blocks = (0..config.n_layer)
            .map(|i| Block::new(&root / "h" / i, config))
            .collect();
        let final_norm = RmsNorm::new(&root / "final_norm", d, config.norm_eps);
        let lm_head = linear(root.clone(), "lm_head", d, config.vocab_size, 0.02);
        Gpt {
            config: config.clone(),
            wte,
            blocks,
            final_norm,
            lm_head,
            rope: Rope::new(config, vs.device()),
            dropout,
        }
    }

    /// Logits [B, T, vocab] for token ids [B, T] (int64), causal attention. `train` turns
    /// dropout on.
    pub fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        self.forward_masked(idx, None, train)
    }

    /// [`Gpt::forward`] with an optional boolean attention mask [B, 1, T, T] (true = may
    /// attend), e.g. [`Gpt::document_mask`]; with a mask the kernel is not told `is_causal`,
    /// so the mask must itself be causal.
    pub fn forward_masked(&self, idx: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        self.logits(&self.forward_hidden(idx, mask, train))
    }

    /// The final hidden states [B, T, d] (after the final norm, before the head) of
    /// [`Gpt::forward_masked`]: what [`Gpt::head_loss`] and [`Gpt::logits`] take.
    pub fn forward_hidden(&self, idx: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let mut x = self.wte.embedding_lookup(idx).dropout(self.dropout, train);
        for block in &self.blocks {
            x = block.forward(&x, &self.rope, mask, self.dropout, train);
        }
        self.final_norm.forward(&x)
    }

    /// The head: logits [.., vocab] of final hidden states [.., d].
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.matmul(&self.lm_head.tr())
    }

    /// Mean next-token cross-entropy of final hidden states [B, T, d] against `targets`
    /// [B, T] through the head, fused and chunked ([`super::head`]): equal to
    /// `Gpt::loss(&self.logits(hidden), targets)` to fp32 rounding, without the logits.
    pub fn head_loss(&self, hidden: &Tensor, targets: &Tensor) -> Tensor {
        super::head::cross_entropy(hidden, &self.lm_head, targets)
    }

    /// Mean cross-entropy of the model on `idx` against `targets` ([`Gpt::forward_hidden`]
    /// then [`Gpt::head_loss`]).
    pub fn forward_loss(&self, idx: &Tensor, targets: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        self.head_loss(&self.forward_hidden(idx, mask, train), targets)
    }

    /// Log-probabilities [N] of `targets` under final hidden states (chunked, no autograd).
    pub fn target_log_probs(&self, hidden: &Tensor, targets: &Tensor) -> Tensor {
        super::head::target_log_probs(hidden, &self.lm_head, targets)
    }

    /// Inference forward for decoding (dropout off): tokens `idx` [B, T] at `positions`
    /// [B, T], attention `mask` [B, 1, T, S] over the S = cached + T keys (true = may
    /// attend). With a cache, this step's keys and values are appended to it; without, S = T
    /// (the reference path: the whole prefix recomputed). Returns logits [B, T, vocab], or
    /// [B, 1, vocab] of the last position only when `last_only` (a prompt's prefill needs
    /// no head over its earlier positions).
    pub fn forward_decode(&self, idx: &Tensor, positions: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>, last_only: bool) -> Tensor {
        let t = idx.size()[1];
        let mut x = self.wte.embedding_lookup(idx);
        let start = cache.as_ref().map_or(0, |c| c.len);
        for (i, block) in self.blocks.iter().enumerate() {
            let layer = cache.as_ref().map(|c| (&c.keys[i], &c.values[i], start));
            x = block.forward_decode(&x, &self.rope, positions, mask, layer);
        }
        if let Some(c) = cache {
            c.len = start + t;
        }
        let x = if last_only { x.narrow(1, t - 1, 1) } else { x };
        self.final_norm.forward(&x).matmul(&self.lm_head.tr())
    }

    /// The element type of the weights (fp32, or bf16 in a bf16 run on a GPU).
    pub fn kind(&self) -> Kind {
        self.wte.kind()
    }

    /// The block-diagonal causal mask [B, 1, T, T] of per-position document ids [B, T]:
    /// position p may attend to q iff q ≤ p and both are in the same document.
    pub fn document_mask(segment_ids: &Tensor) -> Tensor {
        let t = segment_ids.size()[1];
        let same = segment_ids.unsqueeze(2).eq_tensor(&segment_ids.unsqueeze(1));
        let causal = Tensor::ones([t, t], (Kind::Bool, segment_ids.device())).tril(0);
        same.logical_and(&causal).unsqueeze(1)
    }

    /// Mean next-token cross-entropy of `logits` [B, T, V] against `targets` [B, T],
    /// computed in fp32 whatever the model's precision.
    pub fn loss(logits: &Tensor, targets: &Tensor) -> Tensor {
        let v = logits.size()[2];
        logits
            .view([-1, v])
            .to_kind(Kind::Float)
            .cross_entropy_for_logits(&targets.view([-1]))
    }
}

impl crate::plugin::regularizer::ModelHead for Gpt {
    fn logits(&self, hidden: &Tensor) -> Tensor {
        Gpt::logits(self, hidden)
    }

    fn loss(&self, hidden: &Tensor, targets: &Tensor) -> Tensor {
        self.head_loss(hidden, targets)
    }
}

trait EmbeddingLookup {
    fn embedding_lookup(&self, idx: &Tensor) -> Tensor;
}

impl EmbeddingLookup for Tensor {
    fn embedding_lookup(&self, idx: &Tensor) -> Tensor {
        Tensor::embedding(self, idx, -1, false, false)
    }
}

/// True for parameters that must not be weight-decayed: the input embedding and the
/// norm gains (dc_pretrain decays everything else, including the untied head).
pub fn is_no_decay(name: &str) -> bool {
    name == "wte" || name.ends_with("norm.weight")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dc_pretrain_param_counts_match_the_papers_table() {
        // Xu et al. 2026 ("MIR and SoftQ"), model table: total and non-embedding parameter
        // counts, in millions.
        let expected = [
            ("72m", 72.0, 20.5),
            ("140m", 141.0, 63.7),
            ("257m", 257.2, 154.2),
            ("664m", 664.2, 509.7),
            ("1p4b", 1439.3, 1233.2),
        ];
        for (name, total_m, non_emb_m) in expected {
            let cfg = ModelConfig::preset(name, 2048).unwrap();
            let total = cfg.total_params() as f64 / 1e6;
            let non_emb = cfg.non_embedding_params() as f64 / 1e6;
            assert!((total - total_m).abs() < 0.051, "{name}: total {total:.2}M, expected {total_m}M");
            assert!((non_emb - non_emb_m).abs() < 0.051, "{name}: non-emb {non_emb:.2}M, expected {non_emb_m}M");
        }
    }

    #[test]
    fn counted_params_equal_built_params() {
        let cfg = ModelConfig::preset("tiny", 64).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = Gpt::new(&vs, &cfg, 0.0);
        let built: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
        assert_eq!(built, cfg.total_params());
    }

    #[test]
    fn forward_shapes_and_causality() {
        tch::manual_seed(0);
        let cfg = ModelConfig::new(2, 32, 4, 97, 16);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Gpt::new(&vs, &cfg, 0.0);
        let idx = Tensor::randint(97, [2, 16], (Kind::Int64, Device::Cpu));
        let logits = m.forward(&idx, false);
        assert_eq!(logits.size(), vec![2, 16, 97]);
        // Changing the last token must not change the logits of earlier positions.
        let idx2 = idx.copy();
        let _ = idx2.get(0).get(15).fill_(3);
        let logits2 = m.forward(&idx2, false);
        let diff = (logits.narrow(1, 0, 15) - logits2.narrow(1, 0, 15)).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "future token leaked into the past: {diff}");
    }

    #[test]
    fn document_mask_blocks_attention_across_documents() {
        tch::manual_seed(0);
        let cfg = ModelConfig::new(2, 32, 4, 97, 8);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Gpt::new(&vs, &cfg, 0.0);
        let idx = Tensor::randint(97, [1, 8], (Kind::Int64, Device::Cpu));
        // Two documents: positions 0..3 and 3..8.
        let seg = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 1, 1, 1]).view([1, 8]);
        let mask = Gpt::document_mask(&seg);
        assert_eq!(mask.size(), vec![1, 1, 8, 8]);
        // One document everywhere: the mask is the causal one, logits match the fused kernel.
        let all = Gpt::document_mask(&Tensor::zeros([1, 8], (Kind::Int64, Device::Cpu)));
        let d = (m.forward_masked(&idx, Some(&all), false) - m.forward(&idx, false)).abs().max().double_value(&[]);
        assert!(d < 1e-4, "causal mask differs from is_causal: {d}");
        // Changing the first document must not change the second's logits under the mask.
        let a = m.forward_masked(&idx, Some(&mask), false);
        let idx2 = idx.copy();
        let _ = idx2.get(0).get(1).fill_(5);
        let b = m.forward_masked(&idx2, Some(&mask), false);
        let d2 = (a.narrow(1, 3, 5) - b.narrow(1, 3, 5)).abs().max().double_value(&[]);
        assert!(d2 < 1e-5, "attention crossed a document boundary: {d2}");
        // Without the mask it does change (the test can fail).
        let d3 = (m.forward(&idx, false).narrow(1, 3, 5) - m.forward(&idx2, false).narrow(1, 3, 5)).abs().max().double_value(&[]);
        assert!(d3 > 1e-6);
    }

    #[test]
    fn no_decay_group() {
        assert!(is_no_decay("wte"));
        assert!(is_no_decay("h.0.attn_norm.weight"));
        assert!(is_no_decay("final_norm.weight"));
        assert!(!is_no_decay("lm_head"));
        assert!(!is_no_decay("h.3.mlp.down"));
    }
}
