#!/usr/bin/env bash
# dctk-data benchmarks: ingest throughput + peak RSS at 10 MB vs ~200 MB of text, and loader
# throughput for the tiny (seq 256, batch 16) and 72m-like (seq 2048, batch 128) shapes.
#
#   bench/data/run.sh                 # inputs made from the bundled slices (data/corpora/)
#   FULL=/path/to/corpus bench/data/run.sh   # 200 MB case = the real 7-domain corpus
#                                            # (made by examples/build_corpus/build.sh)
#
# Needs only cargo and python3. Writes scratch data to bench/data/work/ (git-ignored by name;
# delete it after). Prints one JSON line per measurement; RESULTS.md records a run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-$ROOT/bench/data/work}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/data}
SLICES=$ROOT/data/corpora
mkdir -p "$WORK"
cargo build -q --release -p dctk-data --examples --manifest-path "$ROOT/Cargo.toml"
BIN=$CARGO_TARGET_DIR/release/examples
DOMAINS="code dialogue docs literature math quotes reference"

# Inputs: in10 = the first ~10 MB of the slices (proportionally per domain); in200 = the slices
# repeated to ~200 MB (each copy is a separate file, so the reader streams them one by one).
python3 - "$SLICES" "$WORK" <<'PY'
import os, sys
src, work = sys.argv[1], sys.argv[2]
doms = "code dialogue docs literature math quotes reference".split()
total = sum(os.path.getsize(f"{src}/{d}.jsonl") for d in doms)
for name, target in (("in10", 10e6), ("in200", 200e6)):
    if os.path.exists(f"{work}/{name}/.done"):
        continue
    os.makedirs(f"{work}/{name}", exist_ok=True)
    for d in doms:
        with open(f"{src}/{d}.jsonl", encoding="utf-8") as fh:
            lines = list(fh)  # "\n" only; splitlines() would split inside JSON strings
        share = target * os.path.getsize(f"{src}/{d}.jsonl") / total
        os.makedirs(f"{work}/{name}/{d}", exist_ok=True)
        written, copy = 0, 0
        while written < share:
            with open(f"{work}/{name}/{d}/{copy:03d}.jsonl", "w", encoding="utf-8") as f:
                for l in lines:
                    if written >= share:
                        break
                    f.write(l)
                    written += len(l.encode())
            copy += 1
    open(f"{work}/{name}/.done", "w").close()
PY

load() { cut -d' ' -f1 /proc/loadavg; }
run_ingest() { # label input_dir_with_domain_subdirs
  local label=$1 dir=$2 args=""
  for d in $DOMAINS; do args="$args $d=$dir/$d"; done
  local l0; l0=$(load)
  local out; out=$("$BIN/ingest_bench" "$WORK/out-$label" $args)
  echo "{\"case\":\"$label\",\"loadavg_before\":$l0,${out#\{}"
}
run_ingest in10 "$WORK/in10"
if [ -n "${FULL:-}" ]; then
  mkdir -p "$WORK/full"; for d in $DOMAINS; do mkdir -p "$WORK/full/$d"; ln -sf "$FULL/$d.jsonl" "$WORK/full/$d/$d.jsonl"; done
  run_ingest full "$WORK/full"
else
  run_ingest in200 "$WORK/in200"
fi
# Loader: on the 10 MB corpus (the sampler's speed does not depend on corpus size: it copies
# from memory-mapped shards).
"$BIN/loader_bench" "$WORK/out-in10" --seconds "${LOADER_SECONDS:-3}"
# Entropy proxies (`dctk data stats`, issue 15) over the two ingested corpora, side by side with
# their ingest above: tokens/s and peak RSS (VmHWM via GNU time). The dctk binary is the
# workspace's release build; the RSS includes libtorch's libraries (loaded for VNE's eigvalsh).
DCTK=${DCTK:-$ROOT/target/release/dctk}
if [ -x "$DCTK" ] && [ -x /usr/bin/time ]; then
  for label in in10 in200 full; do
    [ -d "$WORK/out-$label" ] || continue
    l0=$(load)
    /usr/bin/time -f '%M %e' -o "$WORK/time-$label" "$DCTK" data stats "$WORK/out-$label" --split all --json > "$WORK/stats-$label.json"
    read -r rss_kb secs < "$WORK/time-$label"
    tokens=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(x["tokens"] for x in d["domains"]))' "$WORK/stats-$label.json")
    echo "{\"case\":\"stats-$label\",\"loadavg_before\":$l0,\"tokens\":$tokens,\"seconds\":$secs,\"tokens_per_s\":$(python3 -c "print(round($tokens/$secs))"),\"peak_rss_mb\":$(python3 -c "print(round($rss_kb/1024,1))")}"
  done
else
  echo "skipping the entropy benchmark: build dctk (make build) and install GNU time" >&2
fi
