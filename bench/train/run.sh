#!/usr/bin/env bash
# The CPU training benchmark behind the README's table: `dctk bench train` at tiny and mini,
# seq 128 and 256 (batch 16, fp32, 2 threads), every side a fresh process per round (dctk,
# PyTorch eager, eager with dctk's allocator setting, eager with chunked cross-entropy,
# torch.compile), then one markdown table of the medians and ratios from the JSON files.
#
#   bash bench/setup.sh            # once: bench/.venv with torch 2.11.0
#   bash bench/train/run.sh        # results: bench/train/out/*.json, table on stdout
#
# Knobs (environment): ROUNDS (2), STEPS (5), WARMUP (2), THREADS (2), CONFIGS (the four
# "preset:seq" pairs), DCTK (target/release/dctk).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
DCTK="${DCTK:-target/release/dctk}"
OUT="bench/train/out"
mkdir -p "$OUT"
ROUNDS="${ROUNDS:-2}" STEPS="${STEPS:-5}" WARMUP="${WARMUP:-2}" THREADS="${THREADS:-2}"
CONFIGS="${CONFIGS:-tiny:256 tiny:128 mini:256 mini:128}"
[ -x "$DCTK" ] || { echo "$DCTK not found: cargo build --release first" >&2; exit 1; }
for c in $CONFIGS; do
    preset="${c%%:*}" seq="${c##*:}"
    "$DCTK" bench train --preset "$preset" --seq-len "$seq" --batch 16 --threads "$THREADS" \
        --rounds "$ROUNDS" --steps "$STEPS" --warmup "$WARMUP" --json "$OUT/${preset}_${seq}.json"
done
python3 - "$OUT" $CONFIGS <<'PY'
import json, sys
out, configs = sys.argv[1], sys.argv[2:]
rows = []
for c in configs:
    preset, seq = c.split(":")
    d = json.load(open(f"{out}/{preset}_{seq}.json"))
    s = {r["side"]: r for r in d["summary"]}
    m = d["machine"]
    rows.append((preset, seq, s, d, m))
print(f"machine: {rows[0][4]['cpu']}, {rows[0][4]['nproc']} cores; {rows[0][3]['rounds']} rounds x {rows[0][3]['steps']} timed steps; "
      f"1-min load {min(r[4]['loadavg_1min_start'] for r in rows):.2f}-{max(r[4]['loadavg_1min_end'] for r in rows):.2f}; {rows[0][3]['date']}")
sides = ["dctk", "eager", "eager-alloc", "eager-chunked", "compile"]
print("| preset, seq | " + " | ".join(f"{x} tok/s (RSS GiB, faults/step)" for x in sides) + " | dctk / eager | dctk / compile | dctk RSS / eager RSS |")
print("|---" * (len(sides) + 4) + "|")
for preset, seq, s, d, m in rows:
    cells = []
    for x in sides:
        r = s.get(x)
        cells.append("—" if r is None else f"{r['tokens_per_s']:,.0f} ({r['peak_rss_kib'] / 2**20:.2f}, {r['minor_faults_per_step']:,.0f})")
    ratio = lambda x, k: "—" if x not in s else f"{s[x][k]:.2f}"
    print(f"| {preset}, {seq} | " + " | ".join(cells) + f" | **{ratio('eager', 'dctk_over_side_tokens_per_s')}×** | **{ratio('compile', 'dctk_over_side_tokens_per_s')}×** | **{ratio('eager', 'dctk_over_side_peak_rss')}** |")
PY
