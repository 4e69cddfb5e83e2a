"""The class-conditioning protocol both modalities share (``jpeglm eval classes``,
``avclm eval classes``): class accuracy and validity per class and guidance scale.

For every class c of a class-conditional model and every guidance scale S, ``samples``
media are generated per seed, asked for c with scale S (S = 0 is the null class:
unconditional sampling). A nearest-centroid classifier
(:class:`codeclm.eval.class_accuracy.CentroidClassifier`) fitted on the labelled
training media (``TRAIN/<class>/...``, the ``--labels folder`` layout) names the class
of each sample: **class accuracy** = fraction of the samples asked for c that it puts in
c; **validity** = fraction that decode strictly. Samples are files
``OUT/samples/s{S}_seed{seed}/{class}_{i}{ext}`` written atomically; a set whose files
all exist is not generated again (metrics are always recomputed from the files).

What differs per modality is a :class:`ClassMedia`: how to fit the classifier on the
training folder, how to generate one set, and how to score one sample file.
``jpeglm.evaluation.ImageClasses`` and ``avclm.evaluation.ClipClasses`` are the two.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Protocol

from ..errors import ConfigError, InputError, ModelError
from .protocol import EvalConfig


@dataclasses.dataclass
class ClassEvalConfig(EvalConfig):
    """The settings of :class:`codeclm.eval.protocol.EvalConfig` (seeds, sampling, batch,
    device...; the seed of ``sampling`` is replaced per set), plus ``samples`` per class,
    scale and seed and ``cfg_scales`` (0 = unconditional)."""

    samples: int = 8
    cfg_scales: list[float] = dataclasses.field(default_factory=lambda: [0.0, 1.0, 3.0])

    def check(self) -> None:
        from ..class_args import check_scale

        super().check()
        if self.samples < 1:
            raise ConfigError(f"--samples must be >= 1, got {self.samples}")
        if len(set(self.cfg_scales)) != len(self.cfg_scales):
            raise ConfigError(f"--cfg-scales has repeated values: {self.cfg_scales}")
        for s in self.cfg_scales:
            check_scale(s)


class ClassMedia(Protocol):
    """One modality's part of the protocol."""

    task: str  #: ``"jpeglm eval classes"``
    modality: str  #: the model's modality (``jpeg`` / ``h264``)
    ext: str  #: sample file suffix (``.jpg`` / ``.h264``)

    def fit(self, lm, train_dir: Path):
        """A :class:`CentroidClassifier` fitted on ``train_dir/<class>/*``."""

    def generate(self, lm, name: str, scale: float, n: int, sampling, batch: int) -> list[bytes]:
        """``n`` sample files (bytes) of class ``name`` at guidance ``scale``."""

    def score(self, lm, data: bytes):
        """``(feature vector for the classifier, strictly valid)`` of one sample file."""

    def protocol(self) -> dict:
        """Modality settings recorded in results.json (e.g. frames per clip)."""


def check_model_classes(lm) -> list[str]:
    """The model's classes; :class:`ModelError` for an unconditional model."""
    from ..labels import class_names

    classes = class_names(lm.tokenizer)
    if not classes:
        raise ModelError(f"{lm.path}: this model was trained without class labels")
    return classes


def set_tag(scale: float, seed: int) -> str:
    """The sample folder of scale ``scale``, seed ``seed``: ``s3_seed0``."""
    return f"s{scale:g}_seed{seed}"


def evaluate_classes(lm, media: ClassMedia, train_dir: str | os.PathLike,
                     out: str | os.PathLike, config: ClassEvalConfig | None = None) -> dict:
    """Run the protocol with ``lm`` (a loaded class-conditional model) on ``media``;
    samples under ``out``; returns the results dict (the layout of ``results.json``).
    Raises typed errors: an unconditional model, a missing training folder, a training
    folder whose classes are not the model's."""
    from . import protocol, report, run_record, runner

    config = config or ClassEvalConfig()
    config.check()
    train_dir, out = Path(train_dir), Path(out)
    if not train_dir.is_dir():
        raise InputError(f"{train_dir}: no such folder")
    classes = check_model_classes(lm)
    clf = media.fit(lm, train_dir)
    if missing := sorted(set(classes) - set(clf.classes)):
        raise InputError(f"{train_dir}: no training media for the model's class(es) "
                         f"{', '.join(missing)} (expected {train_dir}/<class>/...)")
    run_record.start_run(out, classes_record(run_record.loaded_identity(lm), media, config),
                         config.overwrite)
    store = runner.SampleStore(out)
    ids = {name: [f"{name}_{i}" for i in range(config.samples)] for name in classes}
    sets = [(n, s, seed) for n in classes for s in config.cfg_scales for seed in config.seeds]
    bar = runner.progress(total=len(sets), desc="classes", disable=config.quiet)
    generated = 0
    table: dict[str, dict[str, dict]] = {}
    for name, scale, seed in sets:
        tag = set_tag(scale, seed)
        if store.pending(tag, ids[name], media.ext):
            sampling = protocol.sample_config(config.sampling, seed, 0)
            for item, data in zip(ids[name], media.generate(lm, name, scale, config.samples,
                                                             sampling, config.batch)):
                store.write(tag, item, media.ext, data)
            generated += config.samples
        scored = [media.score(lm, store.path(tag, i, media.ext).read_bytes()) for i in ids[name]]
        got = clf.predict_vectors([v for v, _ in scored])
        cell = table.setdefault(name, {}).setdefault(f"{scale:g}", {"acc": {}, "valid": {}})
        cell["acc"][seed] = sum(g == name for g in got) / len(got)
        cell["valid"][seed] = sum(ok for _, ok in scored) / len(scored)
        bar.update(1)
    bar.close()
    per_class = {n: {s: {"class_accuracy": report.seed_summary(c["acc"]),
                         "validity": report.seed_summary(c["valid"])}
                     for s, c in by_scale.items()} for n, by_scale in table.items()}
    overall = {f"{s:g}": {
        "class_accuracy": report.seed_summary(
            {seed: sum(table[n][f"{s:g}"]["acc"][seed] for n in classes) / len(classes)
             for seed in config.seeds}),
        "validity": report.seed_summary(
            {seed: sum(table[n][f"{s:g}"]["valid"][seed] for n in classes) / len(classes)
             for seed in config.seeds})} for s in config.cfg_scales}
    return {"task": media.task, "model": str(lm.path), "classes": classes,
            "classifier": {"kind": "nearest centroid", "fitted_on": str(train_dir),
                           "classes": clf.classes},
            "protocol": {"samples_per_class_scale_seed": config.samples, "seeds": config.seeds,
                         "cfg_scales": [float(s) for s in config.cfg_scales],
                         "sampling": protocol.sampling_record(config.sampling),
                         **media.protocol()},
            "samples_per_class_scale_seed": config.samples, "seeds": config.seeds,
            "per_class": per_class, "overall": overall,
            "samples": {"total": len(sets) * config.samples, "generated_this_run": generated}}


def classes_record(model: dict, media: ClassMedia, config: ClassEvalConfig) -> dict:
    """The run record (:mod:`codeclm.eval.run_record`) of ``media.task`` with the model
    ``model`` (its identity): the config's settings and the modality's (``media``'s
    dataclass fields but its names; the training folder never changes a sample)."""
    from . import run_record

    names = {"task", "modality", "ext"}
    extra = {f.name: getattr(media, f.name) for f in dataclasses.fields(media)
             if f.name not in names}
    return run_record.run_record(media.task, model, config, **extra)


def write_classes_report(out: str | os.PathLike, results: dict) -> None:
    """``results.json`` and ``results.md`` (classes x scales: accuracy / validity, and a
    mean row) in ``out``."""
    from . import report

    out = Path(out)
    report.write_json(out / "results.json", results)
    report.write_text(out / "results.md", classes_markdown(results))


def classes_markdown(results: dict) -> str:
    from . import report

    scales = [f"{s:g}" for s in results["protocol"]["cfg_scales"]]

    def cell(m: dict) -> str:
        return f"{m['class_accuracy']['mean']:.2f} / {m['validity']['mean']:.0%}"

    heads = ["class"] + [f"S={s} accuracy / validity" for s in scales]
    rows = [[n] + [cell(results["per_class"][n][s]) for s in scales] for n in results["classes"]]
    rows.append(["mean"] + [cell(results["overall"][s]) for s in scales])
    p = results["protocol"]
    return "\n".join([
        "# Class-conditional samples\n",
        (f"{p['samples_per_class_scale_seed']} samples per class, scale and seed x "
         f"{len(p['seeds'])} seeds; class accuracy by a nearest-centroid classifier fitted on "
         f"{results['classifier']['fitted_on']}; S = 0 is unconditional.\n"),
        report.markdown_table(heads, rows)]) + "\n"


def summary_lines(results: dict) -> list[str]:
    """One line per class (and ``mean``): accuracy at each scale (for stderr)."""
    scales = [f"{s:g}" for s in results["protocol"]["cfg_scales"]]
    rows = [(n, results["per_class"][n]) for n in results["classes"]]
    rows.append(("mean", results["overall"]))
    return [f"{n}: " + ", ".join(f"S={s} {m[s]['class_accuracy']['mean']:.2f}" for s in scales)
            for n, m in rows]


# ---------------------------------------------------------------------------- the verbs
def add_class_eval_arguments(sub, doc: str, media_flag: str, media_help: str, what: str,
                             extra=None):
    """The ``eval classes`` subparser both CLIs share: ``media_flag`` (``--images`` /
    ``--videos``, the labelled training folder), ``--samples``, ``--cfg-scales``, the
    flags ``extra(parser)`` adds, then the common eval flags
    (:func:`codeclm.eval.runner.add_common_arguments`). ``what``: "images" / "clips"."""
    import argparse

    from . import runner

    p = sub.add_parser("classes", help="class accuracy and validity per class (a model "
                       "trained with --labels)", description=doc,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(media_flag, dest="train_dir", required=True, help=media_help)
    p.add_argument("--samples", type=int, default=8, help=f"{what} per class, scale and seed "
                   "(default 8)")
    p.add_argument("--cfg-scales", type=float, nargs="+", default=[0.0, 1.0, 3.0], metavar="S",
                   help="guidance scales (default: 0 1 3; 0 = unconditional)")
    if extra is not None:
        extra(p)
    runner.add_common_arguments(p, batch=True)
    return p


def run_class_eval(args, media: ClassMedia) -> int:
    """The ``eval classes`` verb: config from the flags, the output directory checked
    (:mod:`codeclm.eval.run_record`) before the model loads, :func:`evaluate_classes`,
    the report, one summary line per class on stderr."""
    import sys

    from . import protocol, run_record, runner

    config = ClassEvalConfig(**runner.common_settings(args), samples=args.samples,
                             cfg_scales=args.cfg_scales)
    config.check()
    identity = run_record.model_dir_identity(args.model, media.modality)
    run_record.check_run_dir(args.output, classes_record(identity, media, config),
                             config.overwrite)
    lm = protocol.load_eval_model(args.model, media.modality, config, args.threads)
    res = evaluate_classes(lm, media, args.train_dir, args.output, config)
    write_classes_report(args.output, res)
    for line in summary_lines(res):
        print(line, file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- other evals
def item_classes(lm, items) -> dict[str, str | None]:
    """``{item id: class to condition on}`` for the eval verbs that prompt with real media
    (``jpeglm eval complete``, ``avclm eval continue``): an item in a class subfolder
    named after one of a class-conditional model's classes gets that class; every other
    item (no subfolder, a folder the model has no class for, an unconditional model) None."""
    from ..labels import class_names

    known = set(class_names(lm.tokenizer))
    return {it.id: it.cls if it.cls in known else None for it in items}


def conditioning_record(classes: dict[str, str | None], cfg_scale: float | None) -> dict:
    """What results.json says about class conditioning: whether any item was given its
    class, the guidance scale, and how many items each class had."""
    used = sorted({c for c in classes.values() if c is not None})
    counts = {c: sum(v == c for v in classes.values()) for c in used}
    return {"class_conditional": bool(used),
            "cfg_scale": (1.0 if cfg_scale is None else float(cfg_scale)) if used else None,
            "items_per_class": counts,
            "rule": "an item in a folder named after one of the model's classes is generated "
                    "with that class; others unconditionally"}
