#!/usr/bin/env bash
# One-shot GPU benchmark of the real-shape models (bench/gpu/bench_gpu_models.py), under a timeout.
#
#   bash bench/gpu/run.sh [bench_gpu_models.py options]      e.g. --models geneformer --seconds 30
#
# Needs no network: a Python with torch (CUDA build), transformers and numpy, plus scgpt (installed
# --no-deps; the project's torchtext stand-in is in src/) for scGPT and uce-model for UCE (a model
# whose package is missing gets an error row, the others still run). PYTHON picks the interpreter
# (default: the repository's .venv, else python3). CZB_GPU_TIMEOUT (seconds, default 540) bounds the
# whole run; results are written after every model × precision, so a timeout keeps what finished.
# Output: $OUT/gpu_models.{json,md} when OUT is set, else bench/out/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c 'import torch, transformers, numpy' 2>/dev/null; then
    echo "run.sh: $PY lacks torch/transformers/numpy; set PYTHON to an interpreter that has them" >&2
    exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --kill-after=20 "${CZB_GPU_TIMEOUT:-540}" "$PY" bench/gpu/bench_gpu_models.py "$@"
