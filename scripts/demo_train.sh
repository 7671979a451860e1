#!/usr/bin/env bash
# End-to-end CPU demo: build a tiny random Qwen2.5-VL and the synthetic blur/noise task, train it
# with the DeQA losses (configs/train/tiny_cpu.yaml, ~1 minute), then score the held-out images.
#   scripts/demo_train.sh [overrides for deqa-train...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

if [[ ! -f outputs/tiny/qwen2_5_vl/config.json ]]; then
    "$PYTHON" -c "from deqa.models.tiny import build_tiny_vlm; build_tiny_vlm('qwen2_5_vl', 'outputs/tiny/qwen2_5_vl', text_initializer_range=0.1)"
fi
if [[ ! -f outputs/tiny/synthetic/val.jsonl ]]; then
    "$PYTHON" -m deqa.training.synthetic outputs/tiny/synthetic
fi
scripts/train.sh cpu tiny_cpu "$@"
"$PYTHON" -m deqa.cli.score --model outputs/tiny/run outputs/tiny/synthetic/val --format jsonl -o outputs/tiny/val_scores.jsonl
echo "held-out scores: outputs/tiny/val_scores.jsonl"
