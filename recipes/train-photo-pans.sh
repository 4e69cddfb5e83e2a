#!/usr/bin/env bash
# The photo-pans AVC-LM of issue 17 (docs/photo-model.md): clips of a camera panning over
# scikit-image's bundled photos (training split, `synth --kind video --sources
# photo-crops`), in two legs; rerun the same command to resume either.
#  1. recipes/train-photo.sh with KIND=video: data, tokenizer, shards, then
#     recipes/avclm-photo.yaml from nothing (hidden 160, 6 layers, one cosine over 3,000
#     steps) -> WORKDIR/model, measured against the bundled model;
#  2. a warm restart from that model on the same shards (fifteenth session): peak LR
#     1e-3 after 30 steps, one cosine to 5e-5 over 1,500 steps -> WORKDIR/model-leg2
#     (the bundled model), measured against leg 1.
# THREADS (default 2) and the GPU flags as in recipes/train-photo.sh.
#   bash recipes/train-photo-pans.sh [WORKDIR]
set -euo pipefail
work=${1:-runs/photo-pans}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/.venv/bin}
KIND=video bash "$root/recipes/train-photo.sh" "$work"
cd "$work"
resume=()
[ -f leg2/checkpoints/last.ckpt ] && resume=(--ckpt_path last)
OMP_NUM_THREADS=${THREADS:-2} "$bin/python" -m avclm.cli train fit \
    --config "$root/recipes/avclm-photo.yaml" --data.path shards/h264-tiny \
    --model.init_from model --model.lr 1.0e-3 --model.min_lr 5.0e-5 \
    --model.warmup_steps 30 --trainer.max_steps 1500 --trainer.default_root_dir leg2 \
    "${resume[@]}"
"$bin/python" -m avclm.cli export leg2/checkpoints/last.ckpt -o model-leg2 --overwrite
PYTHON="$bin/python" bash "$root/recipes/measure-video-model.sh" measure-leg2 media/video \
    model-leg2 model
