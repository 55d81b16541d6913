"""PyTorch reference for `dctk bench train`.

The same decoder as dctk's core/dctk/src/train/model.rs (pre-norm blocks, RMSNorm, RoPE,
fused causal scaled-dot-product attention, SwiGLU, untied embedding and head, no
biases), the same loss, global-norm clipping and AdamW (no-decay group: embedding and
norms), timed the same way: median step time after warm-up, on random token ids.

Variants (`--variant`):
  eager    (default) plain PyTorch eager: full logits [N, vocab], one cross-entropy.
  chunked  eager with chunked cross-entropy: the LM head and the loss computed over
           `--chunk` rows of the final hidden state at a time, each chunk under
           activation checkpointing (non-reentrant), so no chunk's logits are kept for
           backward; the summed losses are divided by N (the same mean).
  compile  `torch.compile(model)` (default inductor); its compilation happens in the
           warm-up steps (at least 2), which are not timed.

Prints `tokens_per_s=`, `minor_faults_per_step=` (getrusage ru_minflt over the timed
part of the timed steps, per step), `peak_rss_kib=` (ru_maxrss of this process) and, on
CUDA, `peak_gpu_mib=` (torch.cuda.max_memory_allocated).
`--check-chunked` instead checks on a tiny model that the chunked loss and gradients
equal the plain ones, and exits.
"""
import argparse
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

GPT2_VOCAB = 50257


class Block(nn.Module):
    def __init__(self, d, n_head, d_ff, n_layer):
        super().__init__()
        self.n_head, self.d_ff = n_head, d_ff
        self.attn_norm = nn.RMSNorm(d, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.mlp_norm = nn.RMSNorm(d, eps=1e-6)
        self.gate_up = nn.Linear(d, 2 * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        hd = d // self.n_head
        qkv = self.qkv(self.attn_norm(x)).view(b, t, 3, self.n_head, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, d))
        g, u = self.gate_up(self.mlp_norm(x)).split(self.d_ff, dim=-1)
        return x + self.down(F.silu(g) * u)


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Gpt(nn.Module):
    def __init__(self, vocab, n_layer, d, n_head, d_ff, seq_len):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.h = nn.ModuleList(Block(d, n_head, d_ff, n_layer) for _ in range(n_layer))
        self.final_norm = nn.RMSNorm(d, eps=1e-6)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        hd = d // n_head
        inv = torch.exp(torch.arange(hd // 2, dtype=torch.float32) * (-2.0 * math.log(10000.0) / hd))
        ang = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)

    def hidden(self, idx):
        """The final hidden state (after the final norm), [B, T, d]."""
        x = self.wte(idx)
        cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)
        for blk in self.h:
            x = blk(x, cos, sin)
        return self.final_norm(x)

    def forward(self, idx):
        return self.lm_head(self.hidden(idx))


def plain_loss(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))


def chunked_loss(model, x, y, chunk):
    """Mean cross-entropy with the head and the loss over `chunk` rows at a time; each
    chunk is checkpointed, so its logits are recomputed in backward, never kept."""
    h = model.hidden(x)
    h = h.reshape(-1, h.shape[-1])
    y = y.reshape(-1)
    n = h.shape[0]

    def chunk_sum(h_c, y_c):
        return F.cross_entropy(model.lm_head(h_c).float(), y_c, reduction="sum")

    total = None
    for s in range(0, n, chunk):
        part = checkpoint(chunk_sum, h[s:s + chunk], y[s:s + chunk], use_reentrant=False)
        total = part if total is None else total + part
    return total / n


def check_chunked():
    torch.manual_seed(0)
    vocab, seq, batch = 1000, 16, 3
    model = Gpt(vocab, 2, 32, 4, 64, seq).double()
    x = torch.randint(0, vocab, (batch, seq))
    y = torch.randint(0, vocab, (batch, seq))
    a = plain_loss(model, x, y)
    ga = torch.autograd.grad(a, list(model.parameters()))
    worst = 0.0
    for chunk in (1, 7, 16, 48, 1024):  # uneven, even, whole, larger than N
        b = chunked_loss(model, x, y, chunk)
        gb = torch.autograd.grad(b, list(model.parameters()))
        dl = abs(a.item() - b.item())
        dg = max((p - q).abs().max().item() for p, q in zip(ga, gb))
        worst = max(worst, dl, dg)
        print(f"chunk {chunk:>4}: plain loss {a.item():.12f}, chunked {b.item():.12f}, |dloss| {dl:.2e}, max |dgrad| {dg:.2e}")
    # fp32 too, at the tolerance the benchmark needs.
    model = model.float()
    a, b = plain_loss(model, x, y).item(), chunked_loss(model, x, y, 7).item()
    print(f"fp32 chunk 7: plain {a:.8f}, chunked {b:.8f}, |dloss| {abs(a - b):.2e}")
    ok = worst <= 1e-5 and abs(a - b) <= 1e-5
    print("check-chunked:", "PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--check-chunked", action="store_true", help="check chunked CE against the plain loss and exit")
    for name, typ in [("n-layer", int), ("d-model", int), ("n-head", int), ("d-ff", int), ("vocab", int),
                      ("seq-len", int), ("batch", int), ("steps", int), ("warmup", int), ("threads", int)]:
        p.add_argument("--" + name, type=typ)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--variant", default="eager", choices=["eager", "chunked", "compile"])
    p.add_argument("--chunk", type=int, default=1024, help="rows per chunk of the chunked cross-entropy")
    a = p.parse_args()
    if a.check_chunked:
        check_chunked()
    missing = [k for k in ("n_layer", "d_model", "n_head", "d_ff", "vocab", "seq_len", "batch", "steps", "warmup", "threads")
               if getattr(a, k) is None]
    if missing:
        p.error("missing: " + ", ".join("--" + k.replace("_", "-") for k in missing))
    if a.chunk < 1:
        p.error("--chunk must be at least 1")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = Gpt(a.vocab, a.n_layer, a.d_model, a.n_head, a.d_ff, a.seq_len).to(dev)
    decay = [p for n, p in model.named_parameters() if not (n == "wte.weight" or n.endswith("norm.weight"))]
    no_decay = [p for n, p in model.named_parameters() if n == "wte.weight" or n.endswith("norm.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    warmup = a.warmup
    if a.variant == "compile":
        model = torch.compile(model)
        warmup = max(warmup, 2)  # the first steps compile (forward, then backward graphs)
    use_bf16 = a.precision == "bf16"
    times, faults = [], 0
    for i in range(warmup + a.steps):
        x = torch.randint(0, GPT2_VOCAB, (a.batch, a.seq_len), device=dev)
        y = torch.randint(0, GPT2_VOCAB, (a.batch, a.seq_len), device=dev)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            if a.variant == "chunked":
                loss = chunked_loss(model, x, y, a.chunk)
            else:
                loss = plain_loss(model, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    print(f"tokens_per_s={a.batch * a.seq_len / statistics.median(times)}")
    print(f"minor_faults_per_step={faults / a.steps}")
    print(f"warmup_steps={warmup}")
    if dev.type == "cuda":
        print(f"peak_gpu_mib={torch.cuda.max_memory_allocated(dev) / 2**20}")
    print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


if __name__ == "__main__":
    main()
