#!/usr/bin/env bash
# The photo-pans AVC-LM of issue 17 (docs/photo-model.md): clips of a camera panning over
# scikit-image's bundled photos (training split, `synth --kind video --sources
# photo-crops`), trained with recipes/avclm-photo.yaml (the photo image model's shape:
# hidden 160, 6 layers, one cosine over 3,000 steps), then a warm-restarted second leg
# of 1,500 steps (the bundled model), each measured (recipes/measure-video-model.sh).
# recipes/train-photo.sh with KIND=video does the work; rerun to resume; THREADS and the
# GPU flags as there.
#   bash recipes/train-photo-pans.sh [WORKDIR]
set -euo pipefail
KIND=video exec bash "$(dirname "$0")/train-photo.sh" "$@"
