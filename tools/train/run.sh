#!/usr/bin/env bash
# Regenerates everything the demo needs, from a fixed seed:
#   tools/train/data/*.jsonl      synthetic datasets (support, sales, code: prompt/completion; general: input)
#   models/demo/                  the base model (HF Llama format, byte-level BPE tokenizer)
#   adapters/{support,sales,code} PEFT LoRA adapters
# and prints greedy samples from the held-out prompts with pass/fail checks (also written to
# tools/train/data/eval-samples.md).
#
# Needs Debian's python3-torch and an optimized BLAS (see tools/train/README.md):
#   apt-get install python3-torch libopenblas0-openmp
# and node with this repo's node_modules (npm ci) for the tokenizer cross-check.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON="${PYTHON:-/usr/bin/python3}"   # Debian's interpreter, where python3-torch lives
export OMP_NUM_THREADS="${TRAIN_THREADS:-1}" OPENBLAS_NUM_THREADS="${TRAIN_THREADS:-1}" MKL_NUM_THREADS="${TRAIN_THREADS:-1}"
export PYTHONHASHSEED=0

nice -n "${NICE:-19}" "$PYTHON" tools/train/gen_data.py
nice -n "${NICE:-19}" "$PYTHON" tools/train/train_all.py "$@"
