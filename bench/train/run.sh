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
# Medians from the per-round runs themselves (an even count: the mean of the middle two);
# ratios are the median of the per-round ratios, as `dctk bench train` prints them.
import json, statistics, sys
out, configs = sys.argv[1], sys.argv[2:]
sides = ["dctk", "eager", "eager-alloc", "eager-chunked", "compile"]
rows, loads, meta = [], [], None
for c in configs:
    preset, seq = c.split(":")
    d = json.load(open(f"{out}/{preset}_{seq}.json"))
    meta = meta or d
    loads += [d["machine"]["loadavg_1min_start"], d["machine"]["loadavg_1min_end"]]
    by = {}
    for r in d["runs"]:
        by.setdefault(r["side"], {})[r["round"]] = r
    rows.append((preset, seq, by))
def med(xs):
    return statistics.median(xs) if xs else float("nan")
m = meta["machine"]
print(f"machine: {m['cpu']}, {m['nproc']} cores; {meta['rounds']} rounds x {meta['steps']} timed steps after {meta['warmup']} warm-up; "
      f"1-min load {min(loads):.2f}-{max(loads):.2f}; started {meta['date']}")
print("| preset, seq | " + " | ".join(f"{x}: tok/s, peak RSS GiB, faults/step" for x in sides) + " | dctk / eager | dctk / compile | dctk RSS / eager RSS |")
print("|---" * (len(sides) + 4) + "|")
for preset, seq, by in rows:
    cells = []
    for x in sides:
        r = by.get(x, {})
        if not r:
            cells.append("—")
            continue
        cells.append(f"{med([v['tokens_per_s'] for v in r.values()]):,.0f}, {med([v['peak_rss_kib'] for v in r.values()]) / 2**20:.2f}, {med([v['minor_faults_per_step'] for v in r.values()]):,.0f}")
    def ratio(x, key, invert=False):
        if x not in by or "dctk" not in by:
            return "—"
        rs = [by["dctk"][k][key] / by[x][k][key] for k in by["dctk"] if k in by[x]]
        return f"{med(rs):.2f}"
    print(f"| {preset}, {seq} | " + " | ".join(cells) + f" | **{ratio('eager', 'tokens_per_s')}×** | **{ratio('compile', 'tokens_per_s')}×** | **{ratio('eager', 'peak_rss_kib')}** |")
PY
