"""PyTorch eager reference for `dctk bench train`.

The same decoder as dctk's core/dctk/src/train/model.rs (pre-norm blocks, RMSNorm, RoPE,
fused causal scaled-dot-product attention, SwiGLU, untied embedding and head, no
biases), the same loss, global-norm clipping and AdamW (no-decay group: embedding and
norms), timed the same way: median step time after warm-up, on random token ids.
Prints `tokens_per_s=<float>`.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


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

    def forward(self, idx):
        x = self.wte(idx)
        cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)
        for blk in self.h:
            x = blk(x, cos, sin)
        return self.lm_head(self.final_norm(x))


def main():
    p = argparse.ArgumentParser()
    for name, typ in [("n-layer", int), ("d-model", int), ("n-head", int), ("d-ff", int), ("vocab", int),
                      ("seq-len", int), ("batch", int), ("steps", int), ("warmup", int), ("threads", int)]:
        p.add_argument("--" + name, type=typ, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = Gpt(a.vocab, a.n_layer, a.d_model, a.n_head, a.d_ff, a.seq_len).to(dev)
    decay = [p for n, p in model.named_parameters() if not (n == "wte.weight" or n.endswith("norm.weight"))]
    no_decay = [p for n, p in model.named_parameters() if n == "wte.weight" or n.endswith("norm.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    use_bf16 = a.precision == "bf16"
    times = []
    for i in range(a.warmup + a.steps):
        x = torch.randint(0, 50257, (a.batch, a.seq_len), device=dev)
        y = torch.randint(0, 50257, (a.batch, a.seq_len), device=dev)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    print(f"tokens_per_s={a.batch * a.seq_len / statistics.median(times)}")


if __name__ == "__main__":
    main()
