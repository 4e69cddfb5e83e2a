#!/usr/bin/env bash
# Retrain a bundled demo model from nothing: synthetic media -> tokenizer -> shards ->
# Lightning fit -> export into the package. These are the exact commands that made
# avclm/assets/model and jpeglm/assets/model (see the model cards there).
#   bash recipes/retrain-bundled.sh video|image [WORKDIR]
set -euo pipefail
kind=${1:?usage: retrain-bundled.sh video|image [WORKDIR]}
work=${2:-runs/bundled}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/.venv/bin
case $kind in
  video) cmd=avclm; count=3000; vocab=512; limit=1000; verb=videos; modality=h264 ;;
  image) cmd=jpeglm; count=6000; vocab=320; limit=2000; verb=images; modality=jpeg ;;
  *) echo "retrain-bundled.sh: kind must be video or image" >&2; exit 2 ;;
esac
mkdir -p "$work"
cd "$work"
"$bin/python" -m data_tools synth media/$kind --kind $kind --profile tiny --count $count --seed 7
"$bin/python" -m data_tools bpe media/$kind -o media/$modality-tiny-tokenizer.json --profile tiny \
    --vocab-size $vocab --kind $kind --limit $limit
"$bin/python" -m data_tools $verb media/$kind shards/$modality-tiny --profile tiny \
    --tokenizer media/$modality-tiny-tokenizer.json
# One thread per run: the two bundled models were trained side by side on 2 cores.
# Legs exactly as the shipped models were made: the recipe's 400 steps, then resumes to
# 900 (both models) and 1500 (video only) steps; the cosine schedule is re-stretched over
# the new max_steps at each resume.
case $kind in video) legs="900 1500" ;; image) legs="900" ;; esac
OMP_NUM_THREADS=1 "$bin/$cmd" train fit --config "$root/recipes/$cmd-demo.yaml" \
    --data.path shards/$modality-tiny --trainer.default_root_dir train_$kind
for steps in $legs; do
  OMP_NUM_THREADS=1 "$bin/$cmd" train fit --config "$root/recipes/$cmd-demo.yaml" \
      --data.path shards/$modality-tiny --trainer.default_root_dir train_$kind \
      --trainer.max_steps $steps --ckpt_path last
done
final=train_$kind/checkpoints/last.ckpt
if [ "$kind" = video ]; then
  # Video, fourth leg: a fresh run warm-started from the 1500-step export (new AdamW
  # state, warmup, then cosine from 1.5e-3 to 1.5e-4 over 3500 steps).
  "$bin/$cmd" export "$final" -o model_leg3
  OMP_NUM_THREADS=1 "$bin/$cmd" train fit --config "$root/recipes/$cmd-demo.yaml" \
      --data.path shards/$modality-tiny --trainer.default_root_dir train_video_leg4 \
      --model.init_from model_leg3 --model.lr 1.5e-3 --model.min_lr 1.5e-4 \
      --trainer.max_steps 3500
  final=train_video_leg4/checkpoints/last.ckpt
fi
"$bin/$cmd" export "$final" -o "$root/$cmd/assets/model"
