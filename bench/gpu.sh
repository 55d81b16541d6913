#!/usr/bin/env bash
# GPU checks of dctk on one CUDA machine (made for one NVIDIA H200), in about 10 minutes:
#
#   1. doctor       `dctk doctor` must report CUDA available (else: exit 2, "CUDA not available: …")
#   2. quickstart   scripts/quickstart.rhai (the README quickstart), on the GPU
#   3. resume       a study trained straight through, and again interrupted (SIGTERM once a
#                   checkpoint past the start exists) then rerun: it must resume, and its losses
#                   match the straight run's within bf16 tolerance (max |Δloss| ≤ $RESUME_TOL)
#   4. bench        `dctk bench train` at gpt2s (seq 1024) and 1p4b, dctk vs eager vs torch.compile,
#                   bf16, JSON under $OUT
#
# (the resume check runs before the benchmarks, so a short budget still gets the
# correctness checks.) Needs: a CUDA build of dctk at target/release/dctk and dctk-torch beside it (built elsewhere with
# `cargo build --release --features cuda`; no Rust needed here), python3 with torch 2.11
# (`python3 -c 'import torch'`): dctk's libtorch is resolved from that torch install. Run it
# from the repository root (the bundled corpus, data/, and bench/train_ref.py are read).
#
#   bash bench/gpu.sh                     # results in $OUT (default ./gpu-out): gpu.log, summary.txt, *.json
#   GPU_SH_ALLOW_CPU=1 bash bench/gpu.sh  # the same logic on the CPU with the micro preset (a dry run)
#
# Knobs (environment): OUT, DCTK (the binary), PYTHON, GPU_SH_BUDGET_S (whole run, default
# 570), BENCH_SIDES (dctk,eager,compile), BENCH_ROUNDS (2), BENCH_STEPS (10), BENCH_WARMUP (3),
# GPT2S_BATCH (16), B1P4_BATCH (4), RESUME_TOL (2e-2), SKIP (space-separated step names).
# Exit status: 0 all steps passed, 1 a step failed, 2 no CUDA (and GPU_SH_ALLOW_CPU unset).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
OUT="${OUT:-./gpu-out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/gpu.log"
SUMMARY="$OUT/summary.txt"
: >"$LOG"
: >"$SUMMARY"
DCTK="${DCTK:-$root/target/release/dctk}"
ALLOW_CPU="${GPU_SH_ALLOW_CPU:-0}"
BUDGET_S="${GPU_SH_BUDGET_S:-570}"
SKIP=" ${SKIP:-} "
t_start=$(date +%s)
failures=0

log() { echo "[$(date -u +%H:%M:%S) +$(($(date +%s) - t_start))s] $*" | tee -a "$LOG"; }
result() { # step, PASS|FAIL|SKIP, detail
    printf '%-12s %-4s %s\n' "$1" "$2" "$3" | tee -a "$SUMMARY" >>"$LOG"
    echo "==> $1: $2 $3"
    [ "$2" = FAIL ] && failures=$((failures + 1))
    return 0
}
# The seconds a step may take: its own limit, cut to what is left of the whole budget.
limit() {
    local left=$((BUDGET_S - ($(date +%s) - t_start)))
    [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}
# run_step NAME LIMIT_S CMD...: the command's output appended to the log (and to
# $OUT/NAME.out), killed after LIMIT_S seconds. Returns the command's status (124: timed out).
run_step() {
    local name="$1" secs
    secs=$(limit "$2")
    shift 2
    if [ "$secs" -lt 5 ]; then
        log "$name: no time left in the ${BUDGET_S}s budget"
        return 125
    fi
    log "$name (limit ${secs}s): $*"
    timeout -k 15 "$secs" "$@" >"$OUT/$name.out" 2>&1
    local rc=$?
    cat "$OUT/$name.out" >>"$LOG"
    log "$name: exit $rc$([ $rc = 124 ] && echo ' (timed out)')"
    return $rc
}
skipped() { case "$SKIP" in *" $1 "*) result "$1" SKIP "(SKIP)"; return 0 ;; esac; return 1; }

# ---- the environment: python with torch, libtorch from it ------------------------------------
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import torch' >/dev/null 2>&1 && [ "$ALLOW_CPU" = 1 ] && [ -x "$here/.venv/bin/python" ]; then
    PYTHON="$here/.venv/bin/python"
fi
if "$PYTHON" -c 'import torch' >/dev/null 2>&1; then
    torch_lib="$("$PYTHON" -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')"
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    HAVE_TORCH=1
else
    # dctk may still find a libtorch (its build's runpath); the benchmarks will not run.
    log "no torch in $PYTHON: dctk's libtorch cannot come from it and the PyTorch sides cannot run (pip install torch==2.11.0, or set PYTHON)"
    HAVE_TORCH=0
fi
if [ ! -x "$DCTK" ]; then
    result setup FAIL "$DCTK: no dctk binary (build it with: cargo build --release --features cuda)"
    exit 1
fi
log "dctk $DCTK; python $PYTHON ($("$PYTHON" -c 'import torch;print("torch",torch.__version__,"cuda",torch.version.cuda)' 2>&1 | tail -1)); LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$LOG" 2>&1

# ---- 1. doctor --------------------------------------------------------------------------------
run_step doctor 90 "$DCTK" doctor
rc=$?
if grep -q '^cuda  *available' "$OUT/doctor.out"; then
    DEVICE=cuda
    result doctor PASS "$(grep '^cuda  *available' "$OUT/doctor.out" | sed 's/  */ /g')"
else
    why="$(grep -E '^(cuda build|cuda) ' "$OUT/doctor.out" | sed 's/  */ /g' | paste -sd '|' - | sed 's/|/; /g')"
    [ -z "$why" ] && why="dctk doctor exited $rc: $(tail -n 3 "$OUT/doctor.out" | paste -sd ' ' -)"
    if [ "$ALLOW_CPU" != 1 ]; then
        echo "CUDA not available: $why" | tee -a "$LOG" >&2
        result doctor FAIL "CUDA not available: $why"
        exit 2
    fi
    DEVICE=cpu
    result doctor SKIP "CUDA not available ($why); GPU_SH_ALLOW_CPU=1: the rest on the CPU, small presets"
fi

if [ "$DEVICE" = cuda ]; then
    QS_MODEL=tiny QS_TOKENS=60_000
    R_MODEL=mini R_SEQ=256 R_BATCH=16 R_TOKENS=600000 R_EPOCHS=2 R_CKPT=25
    GPT2S_PRESET=gpt2s GPT2S_SEQ=1024 GPT2S_BATCH="${GPT2S_BATCH:-16}"
    B1P4_PRESET=1p4b B1P4_SEQ=1024 B1P4_BATCH="${B1P4_BATCH:-4}"
    PRECISION=bf16
else
    QS_MODEL=micro QS_TOKENS=20_000
    R_MODEL=micro R_SEQ=64 R_BATCH=8 R_TOKENS=24000 R_EPOCHS=3 R_CKPT=4
    GPT2S_PRESET=micro GPT2S_SEQ=64 GPT2S_BATCH=4
    B1P4_PRESET=tiny B1P4_SEQ=128 B1P4_BATCH=4
    PRECISION=fp32
fi

# ---- 2. quickstart ----------------------------------------------------------------------------
# scripts/quickstart.rhai with the device named (and, on the CPU, the micro preset and a third
# of the tokens), so a silent fall-back to the CPU cannot pass.
if ! skipped quickstart; then
    sed -e "s/model: \"tiny\"/model: \"$QS_MODEL\"/" -e "s/unique_tokens: 60_000/unique_tokens: $QS_TOKENS/" -e "s/^\(    name: \"quickstart\",\)/\1\n    device: \"$DEVICE\",/" \
        scripts/quickstart.rhai >"$OUT/quickstart.rhai"
    echo 'print(`device ${run.device} precision ${run.precision}`);' >>"$OUT/quickstart.rhai"
    if run_step quickstart 150 "$DCTK" run "$OUT/quickstart.rhai" --data-root data --runs "$OUT/runs-quickstart" -q; then
        dev_line="$(grep '^device ' "$OUT/quickstart.out" | tail -1)"
        loss_line="$(grep '^epoch 1 → ' "$OUT/quickstart.out" | tail -1)"
        case "$dev_line" in
        "device $DEVICE"*) result quickstart PASS "$dev_line; $loss_line; $(grep -o '[0-9]* tokens/s' "$OUT/quickstart.out" | tail -1)" ;;
        *) result quickstart FAIL "ran on the wrong device: '$dev_line' (wanted $DEVICE)" ;;
        esac
    else
        result quickstart FAIL "dctk run exited non-zero (see $OUT/quickstart.out)"
    fi
fi

# ---- 3. resume --------------------------------------------------------------------------------
resume_check() {
    cat >"$OUT/resume.rhai" <<EOF
let r = train(#{
    name: "gpu-resume", model: "$R_MODEL", corpus: "data:corpora",
    unique_tokens: $R_TOKENS, val_tokens: 2048, epochs: $R_EPOCHS,
    seq_len: $R_SEQ, batch_size: $R_BATCH, lr: 3e-3,
    evals_per_epoch: 2, checkpoint_every: $R_CKPT, device: "$DEVICE", seed: 7,
});
print(\`final \${r.final_val_loss} steps \${r.steps} device \${r.device} precision \${r.precision}\`);
EOF
    local straight="$OUT/runs-straight" cut="$OUT/runs-interrupted"
    rm -rf "$straight" "$cut"
    run_step resume-straight 150 "$DCTK" run "$OUT/resume.rhai" --data-root data --runs "$straight" -q ||
        { result resume FAIL "the uninterrupted run failed (see $OUT/resume-straight.out)"; return; }
    # The same study, interrupted once a checkpoint at step >= 2 × checkpoint_every exists.
    local secs
    secs=$(limit 150)
    log "resume-interrupted (limit ${secs}s): $DCTK run $OUT/resume.rhai --runs $cut, SIGTERM after a checkpoint at step >= $((2 * R_CKPT))"
    setsid "$DCTK" run "$OUT/resume.rhai" --data-root data --runs "$cut" -q >"$OUT/resume-interrupted.out" 2>&1 &
    local pid=$! deadline=$(($(date +%s) + secs)) at="" st
    while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
        st="$(cat "$cut"/*/ckpt/state.ron 2>/dev/null | grep -o 'step: [0-9]*' | head -1 | cut -d' ' -f2)"
        if [ -n "$st" ] && [ "$st" -ge $((2 * R_CKPT)) ]; then
            at="$st"
            kill -TERM "$pid"
            break
        fi
        sleep 0.05
    done
    # The first signal checkpoints and stops; wait for that, then make sure nothing is left.
    local w=0
    while kill -0 "$pid" 2>/dev/null && [ $w -lt 600 ]; do sleep 0.1; w=$((w + 1)); done
    kill -0 "$pid" 2>/dev/null && { log "still running 60 s after SIGTERM: killing its process group"; kill -KILL -- "-$pid" 2>/dev/null; }
    wait "$pid" 2>/dev/null
    log "resume-interrupted: exit $? (SIGTERM after the checkpoint at step ${at:-none})"
    cat "$OUT/resume-interrupted.out" >>"$LOG"
    local cell
    cell="$(find "$cut" -mindepth 1 -maxdepth 1 -type d ! -name studies ! -name '.*' | head -1)"
    [ -n "$at" ] || { result resume FAIL "no interruption: no checkpoint at step >= $((2 * R_CKPT)) before the run ended or ${secs}s passed"; return; }
    [ -n "$cell" ] && [ "$(cat "$cell/status" 2>/dev/null)" != done ] ||
        { result resume FAIL "the interrupted run finished anyway (status $(cat "$cell/status" 2>/dev/null))"; return; }
    run_step resume-rerun 150 "$DCTK" run "$OUT/resume.rhai" --data-root data --runs "$cut" -q ||
        { result resume FAIL "the rerun failed (see $OUT/resume-rerun.out)"; return; }
    grep -q 'resumed_from_step: Some(' "$cell/result.ron" ||
        { result resume FAIL "the rerun did not resume from a checkpoint ($cell/result.ron)"; return; }
    local a b verdict
    a="$(find "$straight" -mindepth 2 -maxdepth 2 -name metrics.jsonl | head -1)"
    b="$cell/metrics.jsonl"
    verdict="$("$PYTHON" - "$a" "$b" "${RESUME_TOL:-2e-2}" "$OUT/resume_compare.json" <<'PY'
import json, sys
a, b, tol, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def curves(path):
    train, val = {}, {}
    for line in open(path):
        r = json.loads(line)
        if r.get("kind") == "train":
            train[r["step"]] = r["loss"]
        elif r.get("kind") == "eval":
            val[r["step"]] = r["val_loss"]
    return train, val
(ta, va), (tb, vb) = curves(a), curves(b)
problems = []
if sorted(ta) != sorted(tb):
    problems.append(f"train steps differ: {len(ta)} vs {len(tb)} records")
if sorted(va) != sorted(vb):
    problems.append(f"eval steps differ: {sorted(va)} vs {sorted(vb)}")
dt = max((abs(ta[s] - tb[s]) for s in ta if s in tb), default=float("nan"))
dv = max((abs(va[s] - vb[s]) for s in va if s in vb), default=float("nan"))
ok = not problems and len(ta) > 0 and dt <= tol and (dv <= tol or not va)
json.dump({"straight": a, "interrupted": b, "tolerance": tol, "train_steps": len(ta), "eval_points": len(va),
           "max_abs_diff_train_loss": dt, "max_abs_diff_val_loss": dv, "problems": problems, "pass": ok},
          open(out, "w"), indent=1)
print(("PASS" if ok else "FAIL") + f" {len(ta)} steps, max |dloss| train {dt:.3g}, val {dv:.3g} (tol {tol:g})"
      + ("; " + "; ".join(problems) if problems else ""))
PY
)"
    log "resume compare: $verdict"
    case "$verdict" in PASS* | FAIL*) ;; *) verdict="FAIL comparing $a with $b failed: $verdict" ;; esac
    result resume "${verdict%% *}" "${verdict#* }; interrupted at step $at, $(grep -o 'resumed_from_step: Some([0-9]*)' "$cell/result.ron")"
}
skipped resume || resume_check

# ---- 4. dctk bench train ----------------------------------------------------------------------
bench() { # name preset seq batch limit_s
    local name="$1" preset="$2" seq="$3" batch="$4"
    skipped "$name" && return
    [ "$HAVE_TORCH" = 1 ] || { result "$name" FAIL "no torch in $PYTHON for the PyTorch sides"; return; }
    if run_step "$name" "$5" "$DCTK" bench train --preset "$preset" --seq-len "$seq" --batch "$batch" \
        --precision "$PRECISION" --device "$DEVICE" --sides "${BENCH_SIDES:-dctk,eager,compile}" \
        --rounds "${BENCH_ROUNDS:-2}" --steps "${BENCH_STEPS:-10}" --warmup "${BENCH_WARMUP:-3}" \
        --python "$PYTHON" --json "$OUT/$name.json"; then
        result "$name" PASS "$preset seq $seq batch $batch: $(awk '/^median of/{p=1;next} p&&/^(dctk|eager|compile|eager-alloc|eager-chunked) /{printf "%s %s tok/s (dctk/side %s)%s; ", $1, $2, $5, ($7 ? ", MFU " $NF : "")}' "$OUT/$name.out")"
    else
        result "$name" FAIL "exit $? (see $OUT/$name.out)"
    fi
}
bench bench-gpt2s "$GPT2S_PRESET" "$GPT2S_SEQ" "$GPT2S_BATCH" 240
bench bench-1p4b "$B1P4_PRESET" "$B1P4_SEQ" "$B1P4_BATCH" 300

log "done in $(($(date +%s) - t_start))s, $failures failure(s); summary in $SUMMARY"
cat "$SUMMARY"
[ "$failures" = 0 ]
