#!/usr/bin/env bash
# Class-conditional moving digits (issue 17): the digits model of recipes/train-digits.sh
# fine-tuned on the same 10,000 clips with each clip's digit as its class (classes 0-9,
# 10% of clips given the null class for classifier-free guidance), so that
# `avclm generate --model WORKDIR/model_classes --class 7` asks for a seven. Needs a finished
# train-digits.sh WORKDIR (its model/, tokenizer and clips). Steps:
#   labels.csv beside the clips (synth --digit-labels rewrites the same clips, byte for byte)
#   -> labelled shards with the same tokenizer (data_tools videos --labels)
#   -> fit warm-started from WORKDIR/model (--model.init_from: the class tokens get new
#      embedding rows), resumable legs -> export WORKDIR/model_classes.
# Measure: CLASSES=all bash recipes/measure-digits-model.sh OUT WORKDIR/media/video \
#   WORKDIR/model_classes
#   bash recipes/train-digits-classes.sh [WORKDIR] [MAX_STEPS]
# Measured (1,200 steps from the 4,000-step digits model, 39 min of one shared core; 20 clips
# x 8 frames, clip i asked for digit i mod 10): the asked digit in 0% of frames at S = 0, 1
# and 3, any digit in 7.5%, 13%, 8.7% (the unconditional model, same seeds: 7.5%): the
# class does not make a mini model draw digits.
# On a GPU add --trainer.accelerator gpu --trainer.precision bf16-mixed to fit().
set -euo pipefail
work=${1:-runs/digits}
steps=${2:-1200}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/.venv/bin}
cd "$work"
[ -f model/model.safetensors ] || {
  echo "train-digits-classes.sh: $work/model is missing: run recipes/train-digits.sh $work first" >&2
  exit 2; }
[ -f media/video/labels.csv ] || "$bin/python" -m data_tools synth media/video --kind video \
    --profile tiny --count 10000 --seed 7 --sources digits --digit-labels --overwrite
[ -d shards/h264-tiny-labelled ] || "$bin/python" -m data_tools videos media/video \
    shards/h264-tiny-labelled --profile tiny --tokenizer media/h264-tiny-tokenizer.json \
    --labels media/video/labels.csv --drop-label 0.1
resume=()
[ -f train_cond/checkpoints/last.ckpt ] && resume=(--ckpt_path last)
# the cosine schedule decays over --model.decay_steps, fixed, so legs can end anywhere
OMP_NUM_THREADS=1 "$bin/python" -m avclm.cli train fit --config "$root/recipes/avclm-demo.yaml" \
    --data.path shards/h264-tiny-labelled --trainer.default_root_dir train_cond \
    --model.init_from model --model.lr 1.0e-3 --model.min_lr 1.0e-4 --model.warmup_steps 30 \
    --model.decay_steps 1200 --trainer.max_steps "$steps" "${resume[@]}"
"$bin/python" -m avclm.cli export train_cond/checkpoints/last.ckpt -o model_classes --overwrite
