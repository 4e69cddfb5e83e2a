"""`avclm eval classes`: per-class metrics of a class-conditional video model.

  avclm eval classes --model DIR --videos TRAIN_DIR -o OUT [--samples N] [--frames F]
                     [--cfg-scales 0 1 3] [--seeds 0 1 2] [--batch B]

For every class of the model and every guidance scale S, N clips of F frames are
generated per seed (S = 0 is the null class: unconditional sampling; the NAL verifier
acts on the guided distribution). Each is judged by a nearest-centroid classifier
(:mod:`codeclm.eval.class_accuracy`: first frame and frame F-1, so colour and motion
count) fitted on TRAIN_DIR (``<class>/...``, the ``--labels folder`` layout the model
was trained from; each clip as the model saw it, canonically encoded): **class
accuracy** = fraction of the clips asked for class c that the classifier puts in c;
**validity** = fraction whose stream decodes strictly with F pictures. Outputs:
OUT/results.json (per class, per scale: mean and per-seed values; ``overall``: the mean
over classes), OUT/results.md (classes x scales table), and the samples as
OUT/samples/s{S}_seed{seed}/{class}_{i}.h264 (a re-run skips sets whose files exist).
The protocol is the library function ``codeclm.eval.classes.evaluate_classes`` (shared
with ``jpeglm eval classes``).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(sub) -> None:
    from codeclm.eval import runner

    p = sub.add_parser("classes", help="class accuracy and validity per class (a model "
                       "trained with --labels)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True,
                   help="the labelled training clips (<class>/... folders) the classifier is "
                        "fitted on")
    p.add_argument("--samples", type=int, default=8, help="clips per class, scale and seed "
                   "(default 8)")
    p.add_argument("--frames", type=int, default=4, help="frames per generated clip (default 4)")
    p.add_argument("--cfg-scales", type=float, nargs="+", default=[0.0, 1.0, 3.0], metavar="S",
                   help="guidance scales (default: 0 1 3; 0 = unconditional)")
    p.add_argument("--max-nal-tokens", type=int, default=None,
                   help="tokens one NAL may take before it is retried (default: the generator's)")
    p.add_argument("--max-attempts", type=int, default=None,
                   help="tries per slice before the canonical substitute "
                        "(default: the generator's)")
    runner.add_common_arguments(p, batch=True)


def run(args: argparse.Namespace) -> int:
    """Parse, call :func:`codeclm.eval.classes.evaluate_classes`, write, print."""
    from avclm.evaluation import ClipClasses
    from codeclm.errors import ConfigError
    from codeclm.eval import classes, runner
    from codeclm.generation.args import model_dtype
    from codeclm.generation.loading import load_model

    config = classes.ClassEvalConfig(samples=args.samples, cfg_scales=args.cfg_scales,
                                     seeds=args.seeds, sampling=runner.sampling_config(args, None),
                                     batch=args.batch, quiet=args.no_progress)
    config.check()
    for flag, v in (("--max-nal-tokens", args.max_nal_tokens),
                    ("--max-attempts", args.max_attempts)):
        if v is not None and v < 1:
            raise ConfigError(f"{flag} must be >= 1, got {v}")
    media = ClipClasses(frames=args.frames, max_nal_tokens=args.max_nal_tokens,
                        max_attempts=args.max_attempts)
    lm = load_model(args.model, "h264", args.device, model_dtype(args), threads=args.threads)
    res = classes.evaluate_classes(lm, media, args.videos, args.output, config)
    classes.write_classes_report(args.output, res)
    for line in classes.summary_lines(res):
        print(line, file=sys.stderr)
    return 0
