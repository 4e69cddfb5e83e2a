"""`avclm eval classes`: per-class metrics of a class-conditional video model.

  avclm eval classes --model DIR --videos TRAIN_DIR -o OUT [--samples N] [--frames F]
                     [--cfg-scales 0 1 3] [--seeds 0 1 2] [--batch B] [--overwrite]

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
OUT/samples/s{S}_seed{seed}/{class}_{i}.h264 (a re-run of the same run, OUT/run.json,
skips sets whose files exist; another run into OUT is refused unless --overwrite).
The protocol is the library function ``codeclm.eval.classes.evaluate_classes`` (shared
with ``jpeglm eval classes``).
"""

from __future__ import annotations

import argparse


def add_arguments(sub) -> None:
    from codeclm.eval.classes import add_class_eval_arguments

    def video_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--frames", type=int, default=4,
                       help="frames per generated clip (default 4)")
        p.add_argument("--max-nal-tokens", type=int, default=None,
                       help="tokens one NAL may take before it is retried (default: the "
                            "generator's)")
        p.add_argument("--max-attempts", type=int, default=None,
                       help="tries per slice before the canonical substitute "
                            "(default: the generator's)")

    add_class_eval_arguments(sub, __doc__, "--videos", "the labelled training clips "
                             "(<class>/... folders) the classifier is fitted on", "clips",
                             video_flags)


def run(args: argparse.Namespace) -> int:
    """Parse, call :func:`codeclm.eval.classes.evaluate_classes`, write, print."""
    from avclm.evaluation import ClipClasses
    from codeclm.errors import ConfigError
    from codeclm.eval.classes import run_class_eval

    for flag, v in (("--max-nal-tokens", args.max_nal_tokens),
                    ("--max-attempts", args.max_attempts)):
        if v is not None and v < 1:
            raise ConfigError(f"{flag} must be >= 1, got {v}")
    return run_class_eval(args, ClipClasses(frames=args.frames, max_nal_tokens=args.max_nal_tokens,
                                            max_attempts=args.max_attempts))
