#!/usr/bin/env bash
# Retrain a bundled demo model from nothing: synthetic media -> tokenizer -> shards ->
# Lightning fit -> export into the package. These are the exact commands that made
# avclm/assets/model and jpeglm/assets/model (see the model cards there; the export
# replaces the card with a short generated one: `git checkout` it back).
#   bash recipes/retrain-bundled.sh video|image [WORKDIR]
set -euo pipefail
kind=${1:?usage: retrain-bundled.sh video|image [WORKDIR]}
work=${2:-runs/bundled}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/.venv/bin
case $kind in
  # video: panning-camera clips (one motion vector per clip), 4000 steps in one run
  video) cmd=avclm; count=3000; vocab=512; limit=1000; verb=videos; modality=h264
         sources=pan; steps=4000 ;;
  # image: photo crops, recipes/train-photo.sh (which also measures the new model against
  # the one bundled now), then into the package
  image) bash "$root/recipes/train-photo.sh" "$work"
         "$bin/jpeglm" export "$work/train/checkpoints/last.ckpt" -o "$root/jpeglm/assets/model" \
             --overwrite
         exit 0 ;;
  *) echo "retrain-bundled.sh: kind must be video or image" >&2; exit 2 ;;
esac
mkdir -p "$work"
cd "$work"
"$bin/python" -m data_tools synth media/$kind --kind $kind --profile tiny --count $count --seed 7 \
    --sources $sources
"$bin/python" -m data_tools bpe media/$kind -o media/$modality-tiny-tokenizer.json --profile tiny \
    --vocab-size $vocab --kind $kind --limit $limit
"$bin/python" -m data_tools $verb media/$kind shards/$modality-tiny --profile tiny \
    --tokenizer media/$modality-tiny-tokenizer.json
# One thread per run (the shipped models were trained beside other work on 2 cores).
fit() {
  OMP_NUM_THREADS=1 "$bin/$cmd" train fit --config "$root/recipes/$cmd-demo.yaml" \
      --data.path shards/$modality-tiny --trainer.default_root_dir train_$kind "$@"
}
fit --trainer.max_steps $steps
"$bin/$cmd" export train_$kind/checkpoints/last.ckpt -o "$root/$cmd/assets/model" --overwrite
