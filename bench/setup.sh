#!/usr/bin/env bash
# Makes bench/.venv: a full PyTorch (the same 2.11.0 dctk builds against, with its CUDA
# dependencies, ~3 GB from PyPI) for the reference side of `dctk bench train`.
# Not needed to build, run or test dctk.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check torch==2.11.0 numpy
"$here/.venv/bin/python" -c 'import torch; print("bench/.venv: torch", torch.__version__)'
