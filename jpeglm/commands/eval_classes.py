"""`jpeglm eval classes`: per-class metrics of a class-conditional model.

  jpeglm eval classes --model DIR --images TRAIN_DIR -o OUT [--samples N]
                      [--cfg-scales 0 1 3] [--seeds 0 1 2] [--batch B] [--overwrite]

For every class of the model and every guidance scale S, N images are sampled per seed
(S = 0 is the null class: unconditional sampling). Each is judged by a nearest-centroid
classifier (:mod:`codeclm.eval.class_accuracy`) fitted on TRAIN_DIR (``<class>/...``, the
``--labels folder`` layout the model was trained from): **class accuracy** = fraction of
the images asked for class c that the classifier puts in c; **validity** = fraction
complete and valid as sampled. Outputs: OUT/results.json (per class, per scale: mean and
per-seed values), OUT/results.md (classes x scales table), and the samples as
OUT/samples/s{S}_seed{seed}/{class}_{i}.jpg (a re-run of the same run, OUT/run.json,
skips sets whose files exist; another run into OUT is refused unless --overwrite). The
protocol is the library function ``codeclm.eval.classes.evaluate_classes`` (shared with
``avclm eval classes``).
"""

from __future__ import annotations

import argparse


def add_arguments(sub) -> None:
    from codeclm.eval.classes import add_class_eval_arguments

    add_class_eval_arguments(sub, __doc__, "--images", "the labelled training images "
                             "(<class>/... folders) the classifier is fitted on", "images")


def run(args: argparse.Namespace) -> int:
    """Parse, call :func:`codeclm.eval.classes.evaluate_classes`, write, print."""
    from codeclm.eval.classes import run_class_eval
    from jpeglm.evaluation import ImageClasses

    return run_class_eval(args, ImageClasses())
