#!/usr/bin/env bash
# Retrain a bundled demo model from nothing: synthetic media -> tokenizer -> shards ->
# Lightning fit -> export into the package. These are the exact commands that made
# avclm/assets/model and jpeglm/assets/model (see the model cards there; the export
# replaces the card with a short generated one: `git checkout` it back).
#   bash recipes/retrain-bundled.sh video|image [WORKDIR]
set -euo pipefail
kind=${1:?usage: retrain-bundled.sh video|image [WORKDIR]}
work=${2:-runs/bundled-$kind}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/.venv/bin
case $kind in
  # video: pans over photos, recipes/train-photo-pans.sh (which also measures the new
  # model against the one bundled now), then into the package
  video) bash "$root/recipes/train-photo-pans.sh" "$work"
         "$bin/avclm" export "$work/train/checkpoints/last.ckpt" -o "$root/avclm/assets/model" \
             --overwrite ;;
  # image: photo crops, recipes/train-photo.sh (which also measures the new model against
  # the one bundled now), then into the package
  image) bash "$root/recipes/train-photo.sh" "$work"
         "$bin/jpeglm" export "$work/train/checkpoints/last.ckpt" -o "$root/jpeglm/assets/model" \
             --overwrite ;;
  *) echo "retrain-bundled.sh: kind must be video or image" >&2; exit 2 ;;
esac
