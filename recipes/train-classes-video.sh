#!/usr/bin/env bash
# The class-conditional AVC-LM experiment of issue 19, from nothing: labelled clips (red
# circles moving right, green squares moving down, blue triangles standing still) ->
# tokenizer -> labelled shards (10% null class, for guidance) -> Lightning fit in
# resumable legs -> export -> `avclm eval classes` at S = 0, 1, 3.
#   bash recipes/train-classes-video.sh [WORKDIR] [MAX_STEPS] [DECAY_STEPS]
# Run it again with a larger MAX_STEPS to add a leg: the data steps skip what exists and
# the fit resumes exactly from train/checkpoints/last.ckpt (the cosine schedule decays
# over DECAY_STEPS, fixed, so legs can end anywhere). On a GPU add
# --trainer.accelerator gpu --trainer.precision bf16-mixed to fit(); nothing else changes.
set -euo pipefail
work=${1:-runs/classes-video}
steps=${2:-3000}
decay=${3:-3000}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/.venv/bin}
mkdir -p "$work"
cd "$work"
[ -d media/train ] || "$bin/python" -m data_tools synth media/train --kind video --profile tiny \
    --count 1000 --seed 0 --labelled -q
[ -f media/tokenizer.json ] || "$bin/python" -m data_tools bpe media/train \
    -o media/tokenizer.json --profile tiny --vocab-size 384 --kind video
[ -d shards ] || "$bin/python" -m data_tools videos media/train shards --profile tiny \
    --tokenizer media/tokenizer.json --labels folder --drop-label 0.1 --clips 1 -q
resume=()
[ -f train/checkpoints/last.ckpt ] && resume=(--ckpt_path last)
OMP_NUM_THREADS=1 "$bin/python" -m avclm.cli train fit --config "$root/recipes/avclm-tiny.yaml" \
    --data.path shards --data.context 1024 --data.batch_size 4 \
    --model.decay_steps "$decay" --model.log_samples 0 --trainer.max_steps "$steps" \
    --trainer.default_root_dir train "${resume[@]}"
"$bin/python" -m avclm.cli export train/checkpoints/last.ckpt -o model --overwrite
OMP_NUM_THREADS=1 "$bin/python" -m avclm.cli eval classes --model model --videos media/train \
    -o "eval-$steps" --samples 6 --frames 3 --seeds 0 --batch 6 -q
