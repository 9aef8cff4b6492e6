#!/usr/bin/env bash
# GPU check, under 5 minutes on one GPU: generation throughput of vLLM against the project's
# transformers engines on the same prompts, and a short SFT/DPO training step rate.
#
#   bash benchmarks/gpu_check.sh                      # models/base, 256 IFEval prompts
#   N_PROMPTS=541 MAX_NEW=512 bash benchmarks/gpu_check.sh
#
# Needs: the project's venv (.venv, `make setup TORCH_SPEC=...` with a CUDA torch), models/base
# (`dvc repro prepare_model`), and for the vLLM row a vLLM install in its own venv
# (`make vllm-setup`; VLLM=/path/to/vllm to use another). Without vLLM that row is skipped and
# says so. For training rates, data/sft.jsonl and data/dpo.jsonl (`dvc repro build_data`).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
VLLM=${VLLM:-.venv-vllm/bin/vllm}
MODEL=${MODEL:-models/base}
N_PROMPTS=${N_PROMPTS:-256}
MAX_NEW=${MAX_NEW:-256}
PORT=${PORT:-8765}
OUT=${OUT:-benchmarks/results}
export PYTHONPATH=$PWD
mkdir -p "$OUT"

"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch: install the CUDA build"
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
PY

echo "== transformers: static baseline vs the continuous engine (bf16, on cuda) =="
"$PY" benchmarks/generation.py --model "$MODEL" --limit "$N_PROMPTS" \
  --max-new-tokens "$MAX_NEW" --batch-size 128 --output "$OUT/gpu_generation.json"

echo "== vLLM (OpenAI-compatible server, same prompts, through the project's client) =="
if [[ -x "$VLLM" ]]; then
  "$VLLM" serve "$MODEL" --served-model-name bench --host 127.0.0.1 --port "$PORT" \
    --dtype bfloat16 --gpu-memory-utilization 0.4 --max-model-len 2048 >"$OUT/vllm.log" 2>&1 &
  VLLM_PID=$!
  trap 'kill $VLLM_PID 2>/dev/null || true' EXIT
  for _ in $(seq 1 180); do
    if "$PY" -c "import httpx,sys; httpx.get('http://127.0.0.1:$PORT/health').raise_for_status()" \
      2>/dev/null; then break; fi
    if ! kill -0 "$VLLM_PID" 2>/dev/null; then
      echo "vLLM exited; its log:"; tail -20 "$OUT/vllm.log"; exit 1
    fi
    sleep 1
  done
  "$PY" benchmarks/served_generation.py --base-url "http://127.0.0.1:$PORT/v1" --model bench \
    --limit "$N_PROMPTS" --max-new-tokens "$MAX_NEW" --concurrency 256 \
    --output "$OUT/gpu_vllm.json"
else
  echo "skipped: no vLLM at $VLLM (make vllm-setup, or VLLM=/path/to/vllm)"
fi

echo "== training step rate (8 steps each) =="
if [[ -f data/sft.jsonl && -f data/dpo.jsonl ]]; then
  "$PY" benchmarks/training.py --steps 8 --output "$OUT/gpu_training.json"
else
  echo "skipped: data/sft.jsonl or data/dpo.jsonl missing (dvc repro build_data)"
fi
