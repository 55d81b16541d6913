#!/usr/bin/env bash
# Slurm executor overhead for a 1,000-cell round, on a running cluster (SLURM_CONF set; the
# single-node test cluster of tests/slurm.rs is enough): the time from the driver's start to
# the array being submitted (planning 1,000 cells, writing their manifests, cells.txt, job.sh,
# one sbatch), and the driver's CPU while it waits (status files every second, squeue every
# 3 s). The array is cancelled at the end.
#
#   SLURM_CONF=/path/slurm.conf bash bench/slurm/run.sh [CELLS] [WAIT_SECONDS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CELLS=${1:-1000}
WAIT=${2:-30}
DCTK=${DCTK:-$ROOT/target/release/dctk}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/big.rhai" <<RHAI
let base = #{ name: "b", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 2_000, epochs: 1, val_tokens: 256, seq_len: 32, batch_size: 8 };
let seeds = []; for s in 0..$CELLS { seeds.push(s); }
train(sweep(base, zip(#{ seed: seeds })));
RHAI
# Plan once first: the corpus is ingested and cached, as it would be on a second run.
"$DCTK" plan "$WORK/big.rhai" --runs "$WORK/runs" --data-root "$ROOT/data" > /dev/null
start=$(date +%s.%N)
"$DCTK" run "$WORK/big.rhai" --runs "$WORK/runs" --data-root "$ROOT/data" --executor slurm --cpus-per-cell 1 > "$WORK/driver.log" 2>&1 &
pid=$!
until grep -q "slurm: submitted job array" "$WORK/driver.log"; do
  kill -0 $pid 2>/dev/null || { cat "$WORK/driver.log"; exit 1; }
  sleep 0.02
done
submitted=$(date +%s.%N)
ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
t0=$(ticks); w0=$(date +%s.%N)
sleep "$WAIT"
t1=$(ticks); w1=$(date +%s.%N)
job=$(grep -o "submitted job array [0-9]*" "$WORK/driver.log" | awk '{print $4}')
scancel "$job"; kill -INT $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
hz=$(getconf CLK_TCK)
python3 - "$start" "$submitted" "$t0" "$t1" "$w0" "$w1" "$hz" "$CELLS" "$(grep -o 'in [0-9.]* s' "$WORK/driver.log" | head -1)" <<'PY'
import sys
start, sub, t0, t1, w0, w1, hz, cells, own = sys.argv[1:10]
start, sub, t0, t1, w0, w1, hz = map(float, (start, sub, t0, t1, w0, w1, hz))
cpu = (t1 - t0) / hz / (w1 - w0)
print(f'{{"cells":{cells},"start_to_submitted_s":{sub-start:.3f},"executor_write_and_sbatch":"{own}","driver_cpu_fraction_while_waiting":{cpu:.4f},"waited_s":{w1-w0:.1f}}}')
PY
