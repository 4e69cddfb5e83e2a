#!/usr/bin/env bash
# The image model's goals (issue 17), measured on photos no model was trained on:
#  1. completion at ratio 0.5 on 64 held-out photo crops: pixel MSE of the generated half
#     against filling it with the prompt's mean colour (python -m jpeglm.completion_mse),
#     and against what sampled completions score: retrieval and random samples from the
#     16,000 training crops (--pool; the same crops recipes/train-photo.sh trains on), and
#     the MSE of the pixel mean of SAMPLES (default 16) completions per crop: the model's
#     own point estimate, which tells its bias from its sampling noise;
#  2. FID (weight-free pixels extractor) of 256 unconditional samples against 256 held-out
#     crops, for each of the sampling seeds 0-3 (jpeglm eval uncond: one seed's FID moves
#     by up to 0.9 at 256 samples), beside the floor: 256 training crops through the codec
#     against the same held-out crops (python -m jpeglm.reference_fid).
# Both sample mask-first (top-k / top-p among the valid tokens), the order the numbers in
# docs/photo-model.md were measured with. Each MODEL is a model directory or 'bundled'.
# Results: WORKDIR/completion_mse.json, WORKDIR/uncond_<i>/results.json (one per model, in
# the order given) and WORKDIR/reference_fid.json.
#   bash recipes/measure-image-model.sh WORKDIR MODEL [MODEL ...]
set -euo pipefail
work=${1:?usage: measure-image-model.sh WORKDIR MODEL [MODEL ...]}
shift
[ $# -ge 1 ] || { echo "measure-image-model.sh: give at least one MODEL" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$work"
"$py" -m data_tools synth "$work/heldout" --kind image --profile tiny --count 256 --seed 11 \
    --sources photo-crops --split heldout
models=()
for m in "$@"; do models+=(--model "$m"); done
[ -d "$work/train" ] || "$py" -m data_tools synth "$work/train" --kind image --profile tiny \
    --count 16000 --seed 7 --sources photo-crops
"$py" -m jpeglm.completion_mse --images "$work/heldout" -n 64 --ratio 0.5 --seed 0 \
    --pool "$work/train" "${models[@]}" --mask-order mask-first --samples "${SAMPLES:-16}" \
    --batch 8 -o "$work/completion_mse.json" --overwrite
"$py" -m jpeglm.reference_fid --images "$work/heldout" --reference "$work/train" \
    -o "$work/reference_fid.json" --overwrite
i=0
for m in "$@"; do
  model=()
  [ "$m" = bundled ] || model=(--model "$m")
  "$py" -m jpeglm.cli eval uncond "${model[@]}" --images "$work/heldout" --samples 256 \
      --seeds 0 1 2 3 --extractor pixels --fid-backend fast --mask-order mask-first \
      --no-progress -o "$work/uncond_$i"
  i=$((i + 1))
done
