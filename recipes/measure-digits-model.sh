#!/usr/bin/env bash
# The digits video model's goals (issue 17), on the same generated clips: frame motion and
# the share of frames inside the training frames' pixel-statistics box (against the
# training clips), and the share of frames in which the recogniser fitted on held-out
# digits sees a digit with probability >= 0.8 (python -m codeclm_apps.bundled_eval
# --digits). Each MODEL is a model directory or 'bundled'; DATA is the training clips
# folder (recipes/train-digits.sh writes WORKDIR/media/video). Results: OUT/<i>.json,
# one per model, in the order given (N=clips, default 8). A class-conditional model
# (recipes/train-digits-classes.sh): CLASSES=all asks clip i for digit i mod 10 (CFG=S: the guidance scale, default 3) and adds
# the share of frames showing the asked digit.
#   [CLASSES=all [CFG=S]] bash recipes/measure-digits-model.sh OUT DATA MODEL [MODEL ...]
set -euo pipefail
out=${1:?usage: measure-digits-model.sh OUT DATA MODEL [MODEL ...]}
data=${2:?usage: measure-digits-model.sh OUT DATA MODEL [MODEL ...]}
shift 2
[ $# -ge 1 ] || { echo "measure-digits-model.sh: give at least one MODEL" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
cond=()
[ -z "${CLASSES:-}" ] || cond=(--classes "$CLASSES")
[ -z "${CFG:-}" ] || cond+=(--cfg-scale "$CFG")
n=${N:-8}
i=0
for m in "$@"; do
  model=()
  [ "$m" = bundled ] || model=(--model "$m")
  "$py" -m codeclm_apps.bundled_eval video --data "$data" "${model[@]}" -n "$n" --frames 8 \
      --seed 0 --digits "${cond[@]}" -o "$out/$i.json" --overwrite
  i=$((i + 1))
done
