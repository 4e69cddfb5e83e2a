#!/usr/bin/env bash
# The photo-pans AVC-LM of issue 17 (docs/photo-model.md), from nothing: clips of a camera
# panning over scikit-image's bundled photos (training split, `synth --kind video
# --sources photo-crops`) -> tokenizer -> shards -> one Lightning fit (resumable: rerun
# the same command after an interruption, it goes on from the last checkpoint) -> export
# -> the issue's measurements against the bundled model (recipes/measure-video-model.sh).
#   bash recipes/train-photo-pans.sh [WORKDIR]
# THREADS (default 2) torch threads for the fit. The recipe is the photo image model's
# (recipes/jpeglm-photo.yaml: hidden 160, 6 layers, one cosine) over 3,000 steps: the
# measured run took ~1.5 s a step on both cores of a 2-core machine, 80 min in all. On a
# GPU add --trainer.accelerator gpu --trainer.precision bf16-mixed to the fit (and a
# larger --trainer.max_steps / --model.preset); nothing else changes.
set -euo pipefail
work=${1:-runs/photo-pans}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/.venv/bin}
mkdir -p "$work"
cd "$work"
[ -d media/video ] || "$bin/python" -m data_tools synth media/video --kind video --profile tiny \
    --count 12000 --seed 7 --sources photo-crops
[ -f media/h264-tiny-tokenizer.json ] || "$bin/python" -m data_tools bpe media/video \
    -o media/h264-tiny-tokenizer.json --profile tiny --vocab-size 512 --kind video --limit 1000
"$bin/python" -m data_tools videos media/video shards/h264-tiny --profile tiny \
    --tokenizer media/h264-tiny-tokenizer.json
resume=()
[ -f train/checkpoints/last.ckpt ] && resume=(--ckpt_path last)
OMP_NUM_THREADS=${THREADS:-2} "$bin/python" -m avclm.cli train fit \
    --config "$root/recipes/avclm-photo.yaml" --data.path shards/h264-tiny \
    --trainer.default_root_dir train "${resume[@]}"
"$bin/python" -m avclm.cli export train/checkpoints/last.ckpt -o model --overwrite
PYTHON="$bin/python" bash "$root/recipes/measure-video-model.sh" measure media/video model bundled
