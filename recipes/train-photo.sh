#!/usr/bin/env bash
# The photo models of issue 17 (docs/photo-model.md), from nothing: scikit-image's
# bundled photos (training split) -> tokenizer -> shards -> one Lightning fit (resumable:
# rerun the same command after an interruption, it goes on from the last checkpoint) ->
# export -> the issue's measurements against the bundled model.
#   bash recipes/train-photo.sh [WORKDIR]              the image model (photo crops)
#   KIND=video bash recipes/train-photo.sh [WORKDIR]   the video model (pans over photos;
#                                                      recipes/train-photo-pans.sh)
# THREADS (default 2) torch threads for the fit. The measured runs used both cores of a
# 2-core machine, ~1.5 s a step: 3,400 steps in about 1.5 hours (image), 3,000 in 80
# minutes (video). On a GPU add --trainer.accelerator gpu --trainer.precision bf16-mixed
# to the fit (and a larger --trainer.max_steps / --model.preset); nothing else changes.
# (The earlier `mini` image runs on 16,000 crops, whose numbers docs/photo-model.md also
# gives, are this file at commit 979a54d.)
set -euo pipefail
kind=${KIND:-image}
case $kind in
  image) cli=jpeglm; modality=jpeg; verb=images; count=48000; limit=2000; dflt=runs/photo ;;
  video) cli=avclm; modality=h264; verb=videos; count=12000; limit=1000
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
resume=()
[ -f train/checkpoints/last.ckpt ] && resume=(--ckpt_path last)
OMP_NUM_THREADS=${THREADS:-2} "$bin/python" -m $cli.cli train fit \
    --config "$root/recipes/$cli-photo.yaml" --data.path shards/$modality-tiny \
    --trainer.default_root_dir train "${resume[@]}"
"$bin/python" -m $cli.cli export train/checkpoints/last.ckpt -o model --overwrite
if [ "$kind" = image ]; then
  PYTHON="$bin/python" bash "$root/recipes/measure-image-model.sh" measure bundled model
else
  PYTHON="$bin/python" bash "$root/recipes/measure-video-model.sh" measure media/video model \
      bundled
fi
