#!/usr/bin/env bash
# The photo-pans video model's goals (issue 17), for each MODEL (a model directory or
# 'bundled'):
#  1. bundled_eval video: 32 generated clips of 16 frames (seeds 0-31 of one run; 8 clips
#     swing the mean motion by +-30%) against
#     200 of the training clips in TRAIN_CLIPS: motion (mean absolute frame difference),
#     frames inside the training frames' pixel-statistics box, substituted slices;
#  2. prompted continuation of 32 pans over photos no model was trained on (`synth
#     --sources photo-crops --split heldout --seed 11`): 4 frames given, 4 generated;
#     PSNR and SSIM against the true frames, beside repeating the last prompt frame
#     (avclm eval continue).
# Results: WORKDIR/eval_video_<i>.json and WORKDIR/continue_<i>/results.{json,md}, one
# per model in the order given.
#   bash recipes/measure-video-model.sh WORKDIR TRAIN_CLIPS MODEL [MODEL ...]
set -euo pipefail
work=${1:?usage: measure-video-model.sh WORKDIR TRAIN_CLIPS MODEL [MODEL ...]}
train=${2:?usage: measure-video-model.sh WORKDIR TRAIN_CLIPS MODEL [MODEL ...]}
shift 2
[ $# -ge 1 ] || { echo "measure-video-model.sh: give at least one MODEL" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$work"
"$py" -m data_tools synth "$work/heldout" --kind video --profile tiny --count 32 --seed 11 \
    --sources photo-crops --split heldout --overwrite
i=0
for m in "$@"; do
  model=()
  [ "$m" = bundled ] || model=(--model "$m")
  "$py" -m codeclm_apps.bundled_eval video "${model[@]}" --data "$train" -n 32 \
      -o "$work/eval_video_$i.json" --overwrite > /dev/null
  "$py" -m avclm.cli eval continue "${model[@]}" --videos "$work/heldout" \
      -o "$work/continue_$i" --prompt-frames 4 --frames 4 --extractor none --seeds 0 \
      --overwrite -q
  i=$((i + 1))
done
