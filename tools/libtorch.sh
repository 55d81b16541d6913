#!/usr/bin/env bash
# Install libtorch for dctk into a project-local environment, from PyPI only.
#
# tch and libtorch are released in lock-step: tch 0.24.0 builds against exactly
# libtorch 2.11.0. The pin lives here and in core/dctk/Cargo.toml (`tch = "=0.24.0"`);
# change both together. The PyPI torch 2.11.0 wheel is the +cu130 build, which is
# also what the GPU machines carry, so one binary runs on both.
#
# We install the wheel with --no-deps (skipping ~2.7 GB of NVIDIA wheels) plus the
# two CUDA runtime pieces that libtorch_cpu.so itself links (libcudart, libcupti).
# Result: .dctk/libtorch -> <venv>/site-packages/torch, with include/ and lib/.
# .cargo/config.toml points LIBTORCH there, so plain `cargo build` works.
#
# Usage: bash tools/libtorch.sh          (idempotent; prints the libtorch path)
set -euo pipefail
TORCH_VERSION="2.11.0"
CUDA_TOOLKIT_VERSION="13.0.2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_dir="$root/.dctk"
venv="$env_dir/venv"
link="$env_dir/libtorch"
stamp="$env_dir/libtorch.version"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$TORCH_VERSION" && -e "$link/lib/libtorch_cpu.so" ]]; then
  echo "$link"
  exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null; then
  echo "error: python3 is needed to install libtorch from PyPI (set PYTHON=...)" >&2
  exit 1
fi
mkdir -p "$env_dir"
rm -f "$stamp"
echo "dctk: installing torch==$TORCH_VERSION (libtorch) into $venv (about 530 MB from PyPI)" >&2
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "torch==$TORCH_VERSION" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "cuda-toolkit[cudart,cupti]==$CUDA_TOOLKIT_VERSION" >&2
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [[ ! -e "$site/torch/lib/libtorch_cpu.so" ]]; then
  echo "error: torch wheel installed but $site/torch/lib/libtorch_cpu.so is missing" >&2
  exit 1
fi
ln -sfn "$site/torch" "$link"
echo "$TORCH_VERSION" > "$stamp"
echo "$link"
