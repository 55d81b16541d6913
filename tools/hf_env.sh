#!/usr/bin/env bash
# Make .dctk/hf-venv: PyTorch + Hugging Face `transformers` from PyPI, for the checks and
# benchmarks that compare dctk with transformers (tests/export_hf.rs, bench/hf_generate.py).
#
# torch is the same 2.11.0 dctk builds against (tools/libtorch.sh); the full PyPI wheel
# with its CUDA dependencies (~4.9 GB, ~2 min), which also runs on CPU-only machines.
# transformers and numpy are pinned to the versions we tested; change the pins here only.
# --no-compile: byte-compiling the ~10,000 .py files of the wheels costs CPU while cargo
# builds beside this install in CI; Python compiles the few modules a test imports itself.
#
# Idempotent (a stamp file records the pins), and safe to start twice at once: `.ci/run`
# starts it in the background while cargo builds, and `make test` runs it again, which waits
# on the same lock and then finds the stamp.
#
# Usage: bash tools/hf_env.sh          (prints the venv's python)
set -euo pipefail
TORCH_VERSION="2.11.0"
TRANSFORMERS_VERSION="5.24.0"
NUMPY_VERSION="2.4.6"
pins="torch==$TORCH_VERSION transformers==$TRANSFORMERS_VERSION numpy==$NUMPY_VERSION"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_dir="$root/.dctk"
mkdir -p "$env_dir"
# The venv records its own path (in its scripts): use the real one, .dctk may be a symlink.
env_dir="$(cd "$env_dir" && pwd -P)"
venv="$env_dir/hf-venv"
stamp="$env_dir/hf-venv.version"

exec 9>"$env_dir/hf-venv.lock"
flock 9

if [[ -f "$stamp" && "$(cat "$stamp")" == "$pins" && -x "$venv/bin/python" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null; then
  echo "error: python3 is needed to install transformers from PyPI (set PYTHON=...)" >&2
  exit 1
fi
rm -f "$stamp"
echo "dctk: installing $pins into $venv (about 4.9 GB from PyPI)" >&2
"$python" -m venv "$venv"
# shellcheck disable=SC2086 # the pins are separate words on purpose
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-compile $pins >&2
"$venv/bin/python" -c 'import torch, transformers, numpy' >&2
echo "$pins" > "$stamp"
echo "$venv/bin/python"
