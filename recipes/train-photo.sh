#!/usr/bin/env bash
# The photo models of issue 17 (docs/photo-model.md), from nothing: scikit-image's
# bundled photos (training split) -> tokenizer -> shards -> two Lightning fits
# (resumable: rerun the same command after an interruption, it goes on from the last
# checkpoint) -> exports -> the issue's measurements.
#   bash recipes/train-photo.sh [WORKDIR]              the image model (photo crops)
#   KIND=video bash recipes/train-photo.sh [WORKDIR]   the video model (pans over photos;
#                                                      recipes/train-photo-pans.sh)
# Leg 1: recipes/<cli>-photo.yaml from nothing -> WORKDIR/model, measured against the
# bundled model. Leg 2 (fifteenth session): a warm restart from WORKDIR/model on the
# same shards, peak LR 1e-3 after 30 steps, one cosine to 5e-5 over 1,000 (image) or
# 1,500 (video) steps -> WORKDIR/model-leg2 (the bundled model), measured against leg 1.
# THREADS (default 2) torch threads for the fits. The measured runs used both cores of a
# 2-core machine, ~1.5 s a step: 3,400 + 1,000 steps in about 2 hours (image), 3,000 +
# 1,500 in about 2.3 (video). On a GPU add --trainer.accelerator gpu
# --trainer.precision bf16-mixed to the fits (and a larger --trainer.max_steps /
# --model.preset); nothing else changes.
# (The earlier `mini` image runs on 16,000 crops, whose numbers docs/photo-model.md also
# gives, are this file at commit 979a54d.)
set -euo pipefail
kind=${KIND:-image}
case $kind in
  image) cli=jpeglm; modality=jpeg; verb=images; count=48000; limit=2000; leg2=1000
         dflt=runs/photo ;;
  video) cli=avclm; modality=h264; verb=videos; count=12000; limit=1000; leg2=1500
         dflt=runs/photo-pans ;;
  *) echo "train-photo.sh: KIND must be image or video, not '$kind'" >&2; exit 2 ;;
esac
work=${1:-$dflt}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/.venv/bin}
mkdir -p "$work"
cd "$work"
[ -d media/$kind ] || "$bin/python" -m data_tools synth media/$kind --kind $kind --profile tiny \
    --count $count --seed 7 --sources photo-crops
[ -f media/$modality-tiny-tokenizer.json ] || "$bin/python" -m data_tools bpe media/$kind \
    -o media/$modality-tiny-tokenizer.json --profile tiny --vocab-size 512 --kind $kind \
    --limit $limit
"$bin/python" -m data_tools $verb media/$kind shards/$modality-tiny --profile tiny \
    --tokenizer media/$modality-tiny-tokenizer.json
measure() {  # measure MODEL against BASELINE into DIR, once (a rerun resumes past it)
  [ -f "$3/.done" ] && return
  if [ "$kind" = image ]; then
    PYTHON="$bin/python" bash "$root/recipes/measure-image-model.sh" "$3" "$2" "$1"
  else
    PYTHON="$bin/python" bash "$root/recipes/measure-video-model.sh" "$3" media/video "$1" "$2"
  fi
  touch "$3/.done"
}
# leg 1
resume=()
[ -f train/checkpoints/last.ckpt ] && resume=(--ckpt_path last)
OMP_NUM_THREADS=${THREADS:-2} "$bin/python" -m $cli.cli train fit \
    --config "$root/recipes/$cli-photo.yaml" --data.path shards/$modality-tiny \
    --trainer.default_root_dir train "${resume[@]}"
"$bin/python" -m $cli.cli export train/checkpoints/last.ckpt -o model --overwrite
measure model bundled measure
# leg 2
resume=()
[ -f leg2/checkpoints/last.ckpt ] && resume=(--ckpt_path last)
OMP_NUM_THREADS=${THREADS:-2} "$bin/python" -m $cli.cli train fit \
    --config "$root/recipes/$cli-photo.yaml" --data.path shards/$modality-tiny \
    --model.init_from model --model.lr 1.0e-3 --model.min_lr 5.0e-5 \
    --model.warmup_steps 30 --trainer.max_steps $leg2 --trainer.default_root_dir leg2 \
    "${resume[@]}"
"$bin/python" -m $cli.cli export leg2/checkpoints/last.ckpt -o model-leg2 --overwrite
measure model-leg2 model measure-leg2
