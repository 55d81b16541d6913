//! The LM head and its cross-entropy, fused and chunked: the loss of hidden states `h`
//! [N, d] through the head `W` [V, d] against targets [N] without ever holding the
//! logits `h·Wᵀ` [N, V] or their gradient whole.
//!
//! Why: at the default CPU shape (tiny, batch 16 × seq 256, V = 50,304) the logits are
//! 824 MB in fp32, and autograd keeps them, their log-softmax and a dense gradient of the
//! same size — over 3 GB allocated and freed every step, 90% of the model's FLOPs and most
//! of its memory traffic. The method is the fused linear cross-entropy of Liger-Kernel
//! (Hsu et al. 2024, "Liger Kernel: Efficient Triton Kernels for LLM Training", §3.2:
//! the gradient is computed during the forward, chunk by chunk) — here in plain libtorch
//! ops, on any device:
//!
//! for each chunk of rows c: `z = h_c·Wᵀ` into one reused [c, V] buffer, `lse = logsumexp(z)`,
//! loss += Σ (lse − z[y]); and, when training, `p = softmax(z) − onehot(y)` scaled by 1/N
//! in place, `∂h_c = p·W`, `∂W += pᵀ·h_c`. The FLOPs are autograd's (three GEMMs of
//! N·V·d); what is gone is the [N, V] memory, the log-softmax backward and the dense
//! zero-filled gradient of `nll_loss`.
//!
//! The gradients reach autograd through a surrogate that is linear in `h` and `W`:
//! `L = loss + ⟨h, ∂h⟩ + ⟨W, ∂W⟩ − (⟨h, ∂h⟩ + ⟨W, ∂W⟩)|detached`. Its value is exactly the
//! loss (x − x = 0) and its gradients are exactly `∂h` and `∂W`, times whatever the caller
//! multiplies the loss by (accumulation, a regularizer's weight), so it composes with any
//! loss built on top of it and one `backward()`.
//!
//! Targets below 0 are ignored (PyTorch's `ignore_index = -100` convention); the mean is
//! over the others. The loss is computed in fp32 whatever the weights' kind.
use tch::{Kind, Tensor};

/// The most bytes one chunk's logits may take. 256 MiB is 1,334 rows at V = 50,304: the
/// GEMMs stay large enough to run near peak (measured on 2 cores: 512-row chunks were
/// ~10% slower than 1,024-row ones), while a step never holds more than this of logits.
const MAX_CHUNK_LOGITS_BYTES: i64 = 256 << 20;

/// Rows per chunk for `rows` rows over a vocabulary of `vocab`: the rows split into equal
/// chunks of at most [`MAX_CHUNK_LOGITS_BYTES`] of fp32 logits each. `DCTK_HEAD_CHUNK_ROWS`
/// overrides it (for measurements; 0 or unset: automatic).
pub fn chunk_rows(rows: i64, vocab: i64) -> i64 {
    if let Some(forced) = std::env::var("DCTK_HEAD_CHUNK_ROWS").ok().and_then(|v| v.parse::<i64>().ok()).filter(|&v| v > 0) {
        return forced.min(rows.max(1));
    }
    let max_rows = (MAX_CHUNK_LOGITS_BYTES / (4 * vocab.max(1))).max(1);
    let chunks = ((rows + max_rows - 1) / max_rows).max(1);
    ((rows + chunks - 1) / chunks).max(1)
}

/// Mean next-token cross-entropy of `hidden` [.., d] through `weight` [V, d] against
/// `targets` [..] (the same leading shape), chunked by [`chunk_rows`]. With autograd
/// (when `hidden` requires grad) the result carries the gradients of `hidden` and
/// `weight`; under `no_grad` only the loss is computed.
pub fn cross_entropy(hidden: &Tensor, weight: &Tensor, targets: &Tensor) -> Tensor {
    let d = *hidden.size().last().expect("hidden states have a width");
    let rows = hidden.numel() as i64 / d.max(1);
    cross_entropy_chunked(hidden, weight, targets, chunk_rows(rows, weight.size()[0]))
}

/// [`cross_entropy`] with an explicit chunk size (tests compare it with the unchunked loss
/// at chunk sizes that do not divide the rows).
pub fn cross_entropy_chunked(hidden: &Tensor, weight: &Tensor, targets: &Tensor, chunk: i64) -> Tensor {
    let d = *hidden.size().last().expect("hidden states have a width");
    let h = hidden.reshape([-1, d]);
    let y = targets.reshape([-1]);
    let (n, v) = (h.size()[0], weight.size()[0]);
    let (kind, device) = (h.kind(), h.device());
    let with_grad = h.requires_grad();
    let chunk = chunk.clamp(1, n.max(1));
    let (loss, grads) = tch::no_grad(|| {
        let hd = h.detach();
        let wd = weight.detach();
        let wt = wd.tr();
        let valid = y.ge(0);
        let y_safe = y.clamp_min(0).unsqueeze(1);
        let valid_f = valid.to_kind(Kind::Float);
        let n_valid = valid_f.sum(Kind::Float);
        // One buffer for every chunk's logits, overwritten in place by their log-softmax
        // and then by their gradient: nothing of size [rows, V] is allocated per chunk.
        let logits_buf = Tensor::empty([chunk, v], (kind, device));
        let log_probs_buf = if kind == Kind::Float { logits_buf.shallow_clone() } else { Tensor::empty([chunk, v], (Kind::Float, device)) };
        let minus_one = Tensor::full([chunk, 1], -1.0, (Kind::Float, device));
        // Per-row weight of the mean: 1/N for counted rows, 0 for ignored ones.
        let row_weight = (&valid_f / &n_valid).unsqueeze(1);
        let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
        let mut grad_h = with_grad.then(|| Tensor::empty([n, d], (kind, device)));
        let mut grad_w = with_grad.then(|| Tensor::zeros([v, d], (Kind::Float, device)));
        let mut start = 0;
        while start < n {
            let r = chunk.min(n - start);
            let h_c = hd.narrow(0, start, r);
            let z = logits_buf.narrow(0, 0, r);
            let _ = h_c.mm_out(&z, &wt);
            // log softmax(z) in place (fp32; bf16 logits go to an fp32 buffer of their own):
            // one fused kernel instead of logsumexp's full-size temporaries.
            let mut log_p = log_probs_buf.narrow(0, 0, r);
            if kind == Kind::Float {
                let _ = z.internal_log_softmax_out(&log_p, 1, false);
            } else if device.is_cuda() {
                let _ = z.internal_log_softmax_out(&log_p, 1, true);
            } else {
                // libtorch's CPU kernel has no half-to-float mode.
                let _ = z.to_kind(Kind::Float).internal_log_softmax_out(&log_p, 1, false);
            }
            let y_c = y_safe.narrow(0, start, r);
            let w_c = row_weight.narrow(0, start, r);
            let _ = loss_sum.g_sub_(&(log_p.gather(1, &y_c, false) * &valid_f.narrow(0, start, r).unsqueeze(1)).sum(Kind::Float));
            if let (Some(gh), Some(gw)) = (grad_h.as_mut(), grad_w.as_mut()) {
                // ∂loss/∂z = (softmax(z) − onehot(y)) · w per row. The row weights are folded
                // into the two [r, d]-sized sides of the GEMMs instead of a pass over [r, V].
                let mut p = log_p.exp_();
                let _ = p.scatter_add_(1, &y_c, &minus_one.narrow(0, 0, r));
                let gh_c = gh.narrow(0, start, r);
                if kind == Kind::Float {
                    let _ = p.mm_out(&gh_c, &wd);
                    let _ = gw.addmm_(&p.tr(), &(&h_c * &w_c));
                } else {
                    let p = p.to_kind(kind);
                    let _ = p.mm_out(&gh_c, &wd);
                    let _ = gw.g_add_(&p.tr().mm(&(&h_c * &w_c.to_kind(kind))));
                }
                let mut gh_c = gh_c;
                let _ = gh_c.g_mul_(&w_c.to_kind(kind));
            }
            start += r;
        }
        (loss_sum / &n_valid, grad_h.zip(grad_w))
    });
    match grads {
        None => loss,
        Some((grad_h, grad_w)) => {
            let grad_w = if weight.kind() == Kind::Float { grad_w } else { grad_w.to_kind(weight.kind()) };
            let linear = (&h * &grad_h).sum(Kind::Float) + (weight * &grad_w).sum(Kind::Float);
            &linear - linear.detach() + loss
        }
    }
}

/// Log-probabilities of `targets` [N] under the head: `log softmax(h·Wᵀ)[y]` per row, in
/// fp32, chunked like [`cross_entropy`] (no autograd; for scoring).
pub fn target_log_probs(hidden: &Tensor, weight: &Tensor, targets: &Tensor) -> Tensor {
    let d = *hidden.size().last().expect("hidden states have a width");
    tch::no_grad(|| {
        let h = hidden.reshape([-1, d]);
        let y = targets.reshape([-1, 1]);
        let n = h.size()[0];
        let chunk = chunk_rows(n, weight.size()[0]);
        let wt = weight.tr();
        let parts: Vec<Tensor> = (0..n)
            .step_by(chunk as usize)
            .map(|start| {
                let r = chunk.min(n - start);
                let z = h.narrow(0, start, r).mm(&wt).to_kind(Kind::Float);
                z.gather(1, &y.narrow(0, start, r), false).squeeze_dim(1) - z.logsumexp([1], false)
            })
            .collect();
        Tensor::cat(&parts, 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unchunked(h: &Tensor, w: &Tensor, y: &Tensor) -> Tensor {
        h.matmul(&w.tr()).to_kind(Kind::Float).cross_entropy_for_logits(y)
    }

    fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// Loss, ∂h and ∂W of the chunked head against autograd through the full logits, at
    /// chunk sizes that divide the rows and ones that do not, with ignored targets, and
    /// with the loss scaled afterwards (as accumulation and regularizer weights do).
    #[test]
    fn chunked_loss_and_gradients_equal_the_unchunked_ones() {
        tch::manual_seed(3);
        let (n, d, v) = (37, 16, 101);
        let h0 = Tensor::randn([n, d], (Kind::Float, tch::Device::Cpu));
        let w0 = Tensor::randn([v, d], (Kind::Float, tch::Device::Cpu)) * 0.3;
        let y = Tensor::randint(v, [n], (Kind::Int64, tch::Device::Cpu));
        let _ = y.narrow(0, 5, 3).fill_(-100);
        let reference = {
            let h = h0.copy().set_requires_grad(true);
            let w = w0.copy().set_requires_grad(true);
            let loss = unchunked(&h, &w, &y);
            (loss.shallow_clone() * 0.25).backward();
            (loss.double_value(&[]), h.grad(), w.grad())
        };
        for chunk in [1, 4, 10, 37, 64] {
            let h = h0.copy().set_requires_grad(true);
            let w = w0.copy().set_requires_grad(true);
            let loss = cross_entropy_chunked(&h, &w, &y, chunk);
            (loss.shallow_clone() * 0.25).backward();
            let got = loss.double_value(&[]);
            assert!((got - reference.0).abs() <= 2e-6 * reference.0.abs(), "chunk {chunk}: loss {got} vs {}", reference.0);
            let (dh, dw) = (max_abs(&h.grad(), &reference.1), max_abs(&w.grad(), &reference.2));
            let (sh, sw) = (reference.1.abs().max().double_value(&[]), reference.2.abs().max().double_value(&[]));
            assert!(dh <= 1e-5 * sh && dw <= 1e-5 * sw, "chunk {chunk}: ∂h off by {dh} (of {sh}), ∂W off by {dw} (of {sw})");
        }
    }

    #[test]
    fn without_autograd_only_the_loss_is_computed() {
        tch::manual_seed(4);
        let h = Tensor::randn([9, 8], (Kind::Float, tch::Device::Cpu));
        let w = Tensor::randn([13, 8], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let y = Tensor::randint(13, [9], (Kind::Int64, tch::Device::Cpu));
        let loss = tch::no_grad(|| cross_entropy_chunked(&h, &w, &y, 4));
        assert!(!loss.requires_grad());
        let want = tch::no_grad(|| unchunked(&h, &w, &y)).double_value(&[]);
        assert!((loss.double_value(&[]) - want).abs() < 1e-5);
        let lp = target_log_probs(&h, &w, &y);
        let want_lp = tch::no_grad(|| h.matmul(&w.tr()).log_softmax(-1, Kind::Float).gather(1, &y.unsqueeze(1), false).squeeze_dim(1));
        assert!(max_abs(&lp, &want_lp) < 1e-5);
    }

    /// bf16 weights (the GPU's precision) on the CPU path: the loss and gradients in bf16
    /// follow the fp32 ones to bf16's precision.
    #[test]
    fn bf16_weights_follow_fp32_to_bf16_precision() {
        tch::manual_seed(5);
        let (n, d, v) = (24, 32, 67);
        let h0 = Tensor::randn([n, d], (Kind::Float, tch::Device::Cpu));
        let w0 = Tensor::randn([v, d], (Kind::Float, tch::Device::Cpu)) * 0.2;
        let y = Tensor::randint(v, [n], (Kind::Int64, tch::Device::Cpu));
        let run = |kind: Kind| {
            let h = h0.to_kind(kind).detach().set_requires_grad(true);
            let w = w0.to_kind(kind).detach().set_requires_grad(true);
            let loss = cross_entropy_chunked(&h, &w, &y, 5);
            loss.backward();
            (loss.double_value(&[]), h.grad().to_kind(Kind::Float), w.grad().to_kind(Kind::Float))
        };
        let (l32, dh32, dw32) = run(Kind::Float);
        let (l16, dh16, dw16) = run(Kind::BFloat16);
        assert!((l16 - l32).abs() < 0.02 * l32, "loss {l16} vs {l32}");
        assert!(max_abs(&dh16, &dh32) < 0.05 * dh32.abs().max().double_value(&[]));
        assert!(max_abs(&dw16, &dw32) < 0.05 * dw32.abs().max().double_value(&[]));
    }

    #[test]
    fn chunks_split_rows_evenly_under_the_byte_cap() {
        assert_eq!(chunk_rows(4096, 50_304), 1024);
        assert_eq!(chunk_rows(2048, 50_304), 1024);
        assert_eq!(chunk_rows(100, 50_304), 100);
        assert_eq!(chunk_rows(0, 50_304), 1);
        assert!(chunk_rows(16_384, 50_304) * 50_304 * 4 <= MAX_CHUNK_LOGITS_BYTES);
    }
}
