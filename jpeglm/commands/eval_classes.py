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
OUT/samples/s{S}_seed{seed}/{class}_{i}.jpg.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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


def _check(args) -> None:
    from codeclm.class_args import check_class_args
    from codeclm.errors import ConfigError, InputError
    from codeclm.eval import runner

    runner.check_common(args)
    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    for s in args.cfg_scales:
        check_class_args(argparse.Namespace(cfg_scale=s, class_name="?"))
    if not Path(args.images).is_dir():
        raise InputError(f"{args.images}: no such folder")


def _images(args, lm, name: str, scale: float, seed: int, out: Path) -> list:
    """ImageEvents of one (class, scale, seed) set; the samples are written as JPEGs."""
    from codeclm.eval import runner
    from codeclm.io import atomic_write_bytes
    from jpeglm import codec
    from jpeglm.generate import ImageEvent, generate_images

    events = [e for e in generate_images(lm, args.samples, batch=args.batch,
                                         config=runner.sampling_config(args, seed),
                                         class_name=name, cfg_scale=scale)
              if isinstance(e, ImageEvent)]
    folder = out / "samples" / f"s{scale:g}_seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    for e in events:
        atomic_write_bytes(folder / f"{name}_{e.sample}.jpg", codec.to_jpeg(e.data, lm.profile))
    return events


def run(args: argparse.Namespace) -> int:
    from codeclm.eval import report
    from codeclm.eval.class_accuracy import CentroidClassifier
    from codeclm.generation.args import model_dtype
    from codeclm.generation.loading import load_model
    from codeclm.labels import class_names

    _check(args)
    lm = load_model(args.model, "jpeg", args.device, model_dtype(args), threads=args.threads)
    classes = class_names(lm.tokenizer)
    if not classes:
        from codeclm.errors import ModelError

        raise ModelError(f"{lm.path}: this model was trained without class labels")
    clf = CentroidClassifier.fit_folder(args.images)
    out = Path(args.output)
    table: dict[str, dict[str, dict]] = {}
    for name in classes:
        for scale in args.cfg_scales:
            acc, valid = [], []
            for seed in args.seeds:
                evs = _images(args, lm, name, scale, seed, out)
                acc.append(clf.accuracy([e.image for e in evs], name))
                valid.append(sum(e.valid for e in evs) / len(evs))
            table.setdefault(name, {})[f"{scale:g}"] = {
                "class_accuracy": report.seed_summary(dict(zip(args.seeds, acc))),
                "validity": report.seed_summary(dict(zip(args.seeds, valid)))}
    results = {"task": "jpeglm eval classes", "model": str(lm.path), "classes": classes,
               "classifier": {"kind": "nearest centroid", "fitted_on": str(args.images),
                              "classes": clf.classes},
               "samples_per_class_scale_seed": args.samples, "seeds": args.seeds,
               "per_class": table}
    report.write_json(out / "results.json", results)
    heads = ["class"] + [f"S={s:g} accuracy / validity" for s in args.cfg_scales]
    rows = [[n] + [f"{table[n][f'{s:g}']['class_accuracy']['mean']:.2f} / "
                   f"{table[n][f'{s:g}']['validity']['mean']:.0%}" for s in args.cfg_scales]
            for n in classes]
    report.write_text(out / "results.md", "# Class-conditional samples\n\n"
                      + report.markdown_table(heads, rows))
    for n in classes:
        print(f"{n}: " + ", ".join(
            f"S={s:g} {table[n][f'{s:g}']['class_accuracy']['mean']:.2f}"
            for s in args.cfg_scales), file=sys.stderr)
    return 0
