#!/usr/bin/env bash
# The GPU check (see benchmarks/gpu_check.py): LoRA, QLoRA 4-bit, full fine-tuning and DPO for a few steps each on the
# default model, then the throughput comparison with plain TRL, in one table.
#   bash benchmarks/gpu_check.sh          one CUDA GPU; stops after 8 minutes whatever happens
#   bash benchmarks/gpu_check.sh --cpu    the same table on the CPU, smaller (no time limit: a 2-core CPU needs ~10 min)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ "${1:-}" = "--cpu" ]; then
  exec "$PY" benchmarks/gpu_check.py "$@"
fi
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
