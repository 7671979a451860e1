#!/usr/bin/env bash
# DeQA training launcher: accelerate launch + deqa.cli.train.
#
#   scripts/train.sh <accelerate config> <train config> [overrides...]
#
# Configs are names under configs/accelerate/ and configs/train/ (or paths to YAML files):
#   scripts/train.sh single_gpu qwen2_5_vl_7b_koniq
#   scripts/train.sh deepspeed_zero2 qwen2_5_vl_7b_mix3 num_train_epochs=2 --learning_rate 1e-5
#   scripts/train.sh cpu tiny_cpu max_steps=50
#   ACCELERATE_ARGS="--num_processes 4" scripts/train.sh multi_gpu_ddp qwen2_5_vl_3b_koniq
#   ACCELERATE_ARGS="--machine_rank 1" scripts/train.sh multi_node_example qwen2_5_vl_7b_mix3
#
# Runs from the repository root, so relative paths in the configs (data/, outputs/,
# configs/deepspeed/) resolve there. Resume an interrupted run with resume_from_checkpoint=latest.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

resolve() {  # resolve <name or path> <folder under the repository>: an absolute path
    # A path is taken from the caller's folder (the script then runs from the repository root).
    if [[ -f "$1" ]]; then echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; return; fi
    if [[ -f "$ROOT/$2/${1%.yaml}.yaml" ]]; then echo "$ROOT/$2/${1%.yaml}.yaml"; return; fi
    echo "scripts/train.sh: no config '$1' (not a file here, nor $2/${1%.yaml}.yaml); available: $(ls "$ROOT/$2" | sed 's/\.yaml$//' | tr '\n' ' ')" >&2
    exit 2
}
ACC_CONFIG="$(resolve "$1" configs/accelerate)"
TRAIN_CONFIG="$(resolve "$2" configs/train)"
cd "$ROOT"
shift 2

# shellcheck disable=SC2086  # ACCELERATE_ARGS is a list of words on purpose
exec "${ACCELERATE:-accelerate}" launch --config_file "$ACC_CONFIG" ${ACCELERATE_ARGS:-} \
    -m deqa.cli.train --config "$TRAIN_CONFIG" "$@"
