"""The transformers side of tests/export_hf.rs: load a `dctk export-hf` directory with
AutoModelForCausalLM and AutoTokenizer, tokenize the given texts, run the model on dctk's ids,
and write what it saw, for the Rust test to compare with dctk's own ids and logits.

    python hf_check.py --model DIR --input in.json --out DIR

in.json:  {"texts": [str], "ids": [[int]]}   (dctk's ids of each text)
writes:   DIR/report.json  {"tokenizer_class", "model_class", "ids": [[int]] (the tokenizer's),
                            "decoded": [str], "rope_inv_freq_max_abs_diff", "shapes": [[T, V]]}
          DIR/logits.f32   every text's logits [T, V], float32 little-endian, concatenated
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.input) as f:
        given = json.load(f)

    tok = AutoTokenizer.from_pretrained(args.model)
    # Compared in fp32 (dctk computes its logits in fp32 on the CPU).
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()

    # The rotary frequencies transformers derived from config.json must be the ones dctk used
    # (a wrong or ignored rope_theta would otherwise pass whenever it equals the default).
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    head_dim = cfg["head_dim"]
    want = cfg["rope_theta"] ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    got = model.model.rotary_emb.inv_freq.to(torch.float64)
    rope_diff = float((got - want).abs().max())

    ids_by_tokenizer = [tok(text)["input_ids"] for text in given["texts"]]
    decoded = [tok.decode(ids) for ids in given["ids"]]
    shapes = []
    with open(os.path.join(args.out, "logits.f32"), "wb") as f, torch.no_grad():
        for ids in given["ids"]:
            logits = model(torch.tensor([ids], dtype=torch.long)).logits[0].float().numpy()
            shapes.append(list(logits.shape))
            f.write(np.ascontiguousarray(logits, dtype="<f4").tobytes())
    report = {
        "tokenizer_class": type(tok).__name__,
        "model_class": type(model).__name__,
        "ids": ids_by_tokenizer,
        "decoded": decoded,
        "rope_inv_freq_max_abs_diff": rope_diff,
        "shapes": shapes,
    }
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
