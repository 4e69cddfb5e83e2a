"""`jpeglm eval classes`: per-class metrics of a class-conditional model.

  jpeglm eval classes --model DIR --images TRAIN_DIR -o OUT [--samples N]
                      [--cfg-scales 0 1 3] [--seeds 0 1 2] [--batch B]

For every class of the model and every guidance scale S, N images are sampled per seed
(S = 0 is the null class: unconditional sampling). Each is judged by a nearest-centroid
classifier (:mod:`codeclm.eval.class_accuracy`) fitted on TRAIN_DIR (``<class>/...``, the
``--labels folder`` layout the model was trained from): **class accuracy** = fraction of
the images asked for class c that the classifier puts in c; **validity** = fraction
complete and valid as sampled. Outputs: OUT/results.json (per class, per scale: mean and
per-seed values), OUT/results.md (classes x scales table), and the samples as
OUT/samples/s{S}_seed{seed}/{class}_{i}.jpg (a re-run skips sets whose files exist). The
protocol is the library function ``codeclm.eval.classes.evaluate_classes`` (shared with
``avclm eval classes``).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(sub) -> None:
    from codeclm.eval import runner

    p = sub.add_parser("classes", help="class accuracy and validity per class (a model "
                       "trained with --labels)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True,
                   help="the labelled training images (<class>/... folders) the classifier is "
                        "fitted on")
    p.add_argument("--samples", type=int, default=8, help="images per class, scale and seed "
                   "(default 8)")
    p.add_argument("--cfg-scales", type=float, nargs="+", default=[0.0, 1.0, 3.0], metavar="S",
                   help="guidance scales (default: 0 1 3; 0 = unconditional)")
    runner.add_common_arguments(p, batch=True)


def config_of(args):
    """The shared protocol's settings from the verb's flags."""
    from codeclm.eval import runner
    from codeclm.eval.classes import ClassEvalConfig

    return ClassEvalConfig(samples=args.samples, cfg_scales=args.cfg_scales, seeds=args.seeds,
                           sampling=runner.sampling_config(args, None), batch=args.batch,
                           quiet=args.no_progress)


def run(args: argparse.Namespace) -> int:
    """Parse, call :func:`codeclm.eval.classes.evaluate_classes`, write, print."""
    from codeclm.eval import classes
    from codeclm.generation.args import model_dtype
    from codeclm.generation.loading import load_model
    from jpeglm.evaluation import ImageClasses

    config = config_of(args)
    config.check()
    lm = load_model(args.model, "jpeg", args.device, model_dtype(args), threads=args.threads)
    res = classes.evaluate_classes(lm, ImageClasses(), args.images,
                                   args.output, config)
    classes.write_classes_report(args.output, res)
    for line in classes.summary_lines(res):
        print(line, file=sys.stderr)
    return 0
