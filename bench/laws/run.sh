#!/usr/bin/env bash
# Benchmark dctk-laws against a scipy L-BFGS-B reference on the same
# 4,500-start Chinchilla grid and the same 240 Epoch points, plus 4,000
# bootstrap refits. Usage (from anywhere): bash bench/laws/run.sh [--quick]
#   --quick: scipy runs only the first 450 starts and its time is scaled x10
#            (marked "extrapolated" in the output).
# Results: bench/laws/out/*.json and a summary on stdout.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
DATA="core/laws/tests/data/chinchilla_epoch_svg_extracted.csv"
OUT="bench/laws/out"
VENV="bench/.venv"
mkdir -p "$OUT"
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1

if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c "import numpy, scipy" 2>/dev/null || "$VENV/bin/pip" install -q "numpy==2.4.6" "scipy==1.17.1"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/laws}"
cargo build -q --release -p dctk-laws --example bench_fit
BIN="$CARGO_TARGET_DIR/release/examples/bench_fit"

echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== dctk-laws (rayon, $(nproc) threads)"
"$BIN" "$DATA" 5 | tee "$OUT/rust.txt" | grep -E "^(objective|starts|grid_fit|bootstrap_)"
grep '^JSON ' "$OUT/rust.txt" | sed 's/^JSON //' > "$OUT/rust.json"

SCIPY_ARGS=()
[[ $QUICK == 1 ]] && SCIPY_ARGS=(--starts 450)
for g in analytic numeric; do
  echo "== scipy L-BFGS-B, gradient=$g ${SCIPY_ARGS[*]:-}"
  "$VENV/bin/python" bench/laws/scipy_chinchilla.py "$DATA" --gradient "$g" "${SCIPY_ARGS[@]}" > "$OUT/scipy_$g.json"
  cat "$OUT/scipy_$g.json"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

"$VENV/bin/python" - "$OUT" "$QUICK" <<'PY'
import json, sys
out, quick = sys.argv[1], sys.argv[2] == "1"
r = json.load(open(f"{out}/rust.json"))
print("\n== summary")
print(f"dctk-laws 4,500-start fit: {r['grid_wall_median_s']:.3f} s wall (median of 5, min {r['grid_wall_min_s']:.3f}), {r['grid_cpu_s']:.3f} CPU-s, objective {r['objective']:.10e}")
print(f"dctk-laws 4,000 bootstrap refits + grid fit: {r['bootstrap_plus_grid_wall_s']:.3f} s wall, {r['bootstrap_plus_grid_cpu_s']:.3f} CPU-s")
for g in ("analytic", "numeric"):
    s = json.load(open(f"{out}/scipy_{g}.json"))
    scale = 4500 / s["starts"]
    tag = " (extrapolated from %d starts)" % s["starts"] if scale != 1 else ""
    wall, cpu = s["wall_s"] * scale, s["cpu_s"] * scale
    print(f"scipy ({g} gradient): {wall:.1f} s wall, {cpu:.1f} CPU-s{tag}, objective {s['objective']:.10e}; "
          f"ratio wall {wall / r['grid_wall_median_s']:.0f}x, CPU {cpu / r['grid_cpu_s']:.0f}x")
PY
