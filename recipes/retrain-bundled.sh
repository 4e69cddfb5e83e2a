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
# Each runs its recipes/train-photo*.sh (two legs, each measured), then exports leg 2's
# last checkpoint into the package.
case $kind in
  video) script=train-photo-pans.sh; cli=avclm ;;   # pans over photos
  image) script=train-photo.sh; cli=jpeglm ;;       # photo crops
  *) echo "retrain-bundled.sh: kind must be video or image" >&2; exit 2 ;;
esac
bash "$root/recipes/$script" "$work"
"$bin/$cli" export "$work/leg2/checkpoints/last.ckpt" -o "$root/$cli/assets/model" --overwrite
