"""The reference side of `dctk bench generate`: Hugging Face `transformers` `generate` on a
`dctk export-hf` directory, greedy, on random prompts, timed.

    .dctk/hf-venv/bin/python bench/hf_generate.py --model DIR --batch 8 --prompt-tokens 32 \
        --new-tokens 64 --threads 2 --reps 3 [--no-cache] [--device cpu|cuda]

One warm-up call, then --reps timed calls of
`model.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False, use_cache=...)`;
prints one JSON line whose `tokens_per_s` is generated tokens (batch × N) / wall seconds of the
best rep. Prompts are --batch rows of --prompt-tokens ids drawn uniformly (seeded) from the
tokenizer's ids other than end-of-text, so every row has the same length and no padding.
"""
import argparse
import json
import os
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a dctk export-hf directory")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-cache", action="store_true", help="use_cache=False: recompute the prefix every step")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for name in ("batch", "prompt_tokens", "new_tokens", "threads", "reps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")

    torch.set_num_threads(args.threads)
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    if args.prompt_tokens + args.new_tokens > config["max_position_embeddings"]:
        ap.error(f"--prompt-tokens + --new-tokens exceed the model's context of {config['max_position_embeddings']}")
    # fp32 on the CPU (as dctk decodes there); the saved precision on a GPU (as dctk loads it).
    dtype = torch.float32 if args.device == "cpu" else getattr(torch, config.get("dtype", "float32"))
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(args.device)
    model.eval()

    eot = config["eos_token_id"]
    base = config["dctk"]["vocab"]["base"]
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, base - 1, (args.batch, args.prompt_tokens), generator=gen)
    ids[ids >= eot] += 1  # skip end-of-text: a prompt is text
    ids = ids.to(args.device)
    mask = torch.ones_like(ids)

    def run() -> float:
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                use_cache=not args.no_cache,
                pad_token_id=eot,
            )
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        assert out.shape == (args.batch, args.prompt_tokens + args.new_tokens), out.shape
        return seconds

    run()  # warm-up: allocator, kernels, lazy initialisation
    seconds = min(run() for _ in range(args.reps))
    generated = args.batch * args.new_tokens
    print(json.dumps({
        "tokens_per_s": generated / seconds,
        "seconds": seconds,
        "batch": args.batch,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "generated_tokens": generated,
        "threads": args.threads,
        "reps": args.reps,
        "use_cache": not args.no_cache,
        "device": args.device,
        "dtype": str(dtype).removeprefix("torch."),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
