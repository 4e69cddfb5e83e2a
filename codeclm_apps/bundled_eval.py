"""Does a generated sample look like the training data? Statistics for the bundled models.

``python -m codeclm_apps.bundled_eval video|image --data DIR [--model DIR] [-n N]``
generates N samples and compares simple pixel statistics with the training media in ``DIR``:

- per frame / image: the mean and standard deviation of each RGB channel (6 numbers);
  a generated frame is *in range* when all six lie within the [1st, 99th] percentile
  range of the same statistics over the training frames;
- video only: motion, the mean absolute difference between consecutive frames (0-255
  scale), for generated clips and for the training clips;
- video with ``--digits`` (a moving-digits model, issue 17): the share of frames in which
  :class:`data_tools.digits.DigitRecogniser` sees a digit with probability >= 0.8, for
  the generated clips and for the training clips;
- a class-conditional video model with ``--classes all|A,B,..`` (and ``--cfg-scale S``):
  clip ``i`` is asked for class ``i mod K``; with ``--digits`` (classes ``0``-``9``, from
  ``data_tools synth --digit-labels``) also the share of frames in which the recogniser
  sees *the asked* digit with probability >= 0.8.

Prints one JSON object (and writes it with ``-o``). Cheap and weight-free: this is a
sanity check that the output is not noise, not a quality metric like FID.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def frame_stats(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 6): per-channel mean and std."""
    f = frames.astype(np.float32).reshape(len(frames), -1, 3)
    return np.concatenate([f.mean(1), f.std(1)], axis=1)


def motion(clip: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames of a (T, H, W, 3) clip."""
    c = clip.astype(np.int16)
    return float(np.abs(np.diff(c, axis=0)).mean()) if len(c) > 1 else 0.0


def in_range_fraction(train: np.ndarray, generated: np.ndarray, pct: float = 1.0) -> float:
    """Fraction of generated rows (N, 6) inside the training rows' percentile box."""
    lo, hi = np.percentile(train, pct, axis=0), np.percentile(train, 100 - pct, axis=0)
    ok = np.all((generated >= lo) & (generated <= hi), axis=1)
    return float(ok.mean())


def _media(data: Path, kind: str) -> list[Path]:
    """The files under ``data`` of media kind ``kind`` (the registry's extension list)."""
    from codeclm.modality import extensions

    exts = extensions(kind)
    return sorted(p for p in data.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def _training_clips(data: Path, profile, limit: int) -> list[np.ndarray]:
    from avclm.codec import encode_video
    from avclm.stream import decode_annexb

    paths = _media(data, "video")[:limit]
    return [np.stack(decode_annexb(encode_video(p, profile), profile, strict=True)) for p in paths]


def _training_images(data: Path, profile, limit: int) -> np.ndarray:
    from jpeglm.codec import decode, encode_image

    paths = _media(data, "image")[:limit]
    return np.stack([np.asarray(decode(encode_image(p, profile), profile).convert("RGB"))
                     for p in paths])


def video_report(model, data: Path, n: int, frames: int, seed: int, limit: int = 200,
                 digits: bool = False, sampling: dict | None = None,
                 classes: str | None = None, cfg_scale: float | None = None) -> dict:
    """The video statistics (module docstring) of ``n`` clips of ``frames`` frames, clip
    ``i`` sampled with seed ``seed + i``; ``classes``: ``all`` or a comma list of a
    class-conditional model's classes, clip ``i`` asked for the ``i``-th (cycling), with
    guidance scale ``cfg_scale``."""
    from avclm.generate import DoneEvent, FrameEvent, generate_video
    from codeclm.generation.loading import load_model
    from codeclm.generation.sampling_config import SamplingConfig

    lm = load_model(model, "h264", "cpu", None)
    asked = _asked_classes(lm.tokenizer, classes, n)
    train = _training_clips(data, lm.profile, limit)
    gen, verify, replaced = [], [], 0
    for i in range(n):
        clip = []
        config = SamplingConfig(seed=seed + i, **(sampling or {}))
        for ev in generate_video(lm, frames, config=config, class_name=asked[i],
                                 cfg_scale=cfg_scale if asked[i] else None):
            if isinstance(ev, FrameEvent):
                clip.append(ev.image)
            elif isinstance(ev, DoneEvent):
                verify.append(ev.stats.get("verify"))
                replaced += ev.stats["replaced"]
        gen.append(np.stack(clip))
    train_stats = frame_stats(np.concatenate(train))
    gen_stats = frame_stats(np.concatenate(gen))
    report = {
        "kind": "video", "clips": n, "frames_per_clip": frames, "training_clips": len(train),
        "motion_generated": float(np.mean([motion(c) for c in gen])),
        "motion_training": float(np.mean([motion(c) for c in train])),
        "frames_in_training_range": in_range_fraction(train_stats, gen_stats),
        "training_frames_in_range": in_range_fraction(train_stats, train_stats),
        "substituted_slices": replaced, "verify": verify,
    }
    if asked[0] is not None:
        from codeclm.class_args import DEFAULT_CFG_SCALE

        report.update(classes_asked=asked,
                      cfg_scale=DEFAULT_CFG_SCALE if cfg_scale is None else cfg_scale)
    if digits:
        report.update(digit_shares(gen, train, asked if asked[0] is not None else None))
    return report


def _asked_classes(tokenizer, classes: str | None, n: int) -> list[str | None]:
    """The class each of ``n`` clips is asked for: ``classes`` (``all`` or a comma list,
    cycled) checked against the model's; all None without ``classes``."""
    from codeclm.labels import class_id, class_names

    if classes is None:
        return [None] * n
    names = (class_names(tokenizer) if classes == "all"
             else [c.strip() for c in classes.split(",") if c.strip()])
    for name in names or [classes]:
        class_id(tokenizer, name)  # ModelError (unconditional) / LabelError (unknown)
    return [names[i % len(names)] for i in range(n)]


def digit_shares(generated: list[np.ndarray], training: list[np.ndarray],
                 asked: list[str] | None = None) -> dict:
    """Share of frames (clips of (T, H, W, 3) uint8) showing a digit
    (:data:`data_tools.digits.DIGIT_THRESHOLD`), generated and training, each the mean over
    its clips; both over the training clips' background level (black or grey). With
    ``asked`` (each generated clip's class, a digit's name): also the share of generated
    frames showing that digit, over all clips and per digit."""
    from data_tools.digits import DIGIT_THRESHOLD, background_level, default_recogniser

    rec = default_recogniser()
    background = background_level(training)

    # (digit, probability) of every generated frame's best blob, read once for both shares
    scores = [[rec.score(f, background) for f in clip] for clip in generated]

    def share(per_clip: list[float]) -> float:
        return float(np.mean(per_clip))

    out = {"digit_threshold": DIGIT_THRESHOLD, "digit_background": background,
           "digit_frames_generated": share([np.mean([p >= DIGIT_THRESHOLD for _, p in sc])
                                            for sc in scores]),
           "digit_frames_training": share([rec.shows_digit_share(c, background=background)
                                           for c in training])}
    if asked is not None:
        per_clip = [float(np.mean([str(d) == name and p >= DIGIT_THRESHOLD for d, p in sc]))
                    for sc, name in zip(scores, asked)]
        out["asked_digit_frames_generated"] = share(per_clip)
        out["asked_digit_frames_by_class"] = {
            k: share([s for s, n in zip(per_clip, asked) if n == k]) for k in sorted(set(asked))}
    return out


def image_report(model, data: Path, n: int, seed: int, limit: int = 500,
                 sampling: dict | None = None) -> dict:
    from codeclm.generation.loading import load_model
    from codeclm.generation.sampling_config import SamplingConfig
    from jpeglm.generate import ImageEvent, generate_images

    lm = load_model(model, "jpeg", "cpu", None)
    train = _training_images(data, lm.profile, limit)
    gen = [np.asarray(ev.image.convert("RGB"))
           for ev in generate_images(lm, n, config=SamplingConfig(seed=seed, **(sampling or {})))
           if isinstance(ev, ImageEvent)]
    train_stats, gen_stats = frame_stats(train), frame_stats(np.stack(gen))
    return {
        "kind": "image", "images": len(gen), "training_images": len(train),
        "images_in_training_range": in_range_fraction(train_stats, gen_stats),
        "training_images_in_range": in_range_fraction(train_stats, train_stats),
    }


def _report(args: argparse.Namespace) -> dict:
    """The report ``main`` prints, after the checks that need no model."""
    from codeclm.class_args import check_scale
    from codeclm.errors import ConfigError, InputError
    from codeclm.generation.args import sampling_settings
    from codeclm.outputs import check_output_file

    if args.n < 1 or args.frames < 1:
        raise ConfigError(f"-n and --frames must be >= 1, got {args.n} and {args.frames}")
    if args.kind == "image" and (args.classes or args.cfg_scale is not None):
        raise ConfigError("--classes and --cfg-scale are for video reports")
    if args.cfg_scale is not None:
        check_scale(args.cfg_scale)
        if not args.classes:
            raise ConfigError("--cfg-scale needs --classes (guidance toward a class)")
    sampling = sampling_settings(args)
    if args.output:
        check_output_file(args.output, args.overwrite)
    data = Path(args.data)
    if not _media(data, args.kind):
        raise InputError(f"{data}: no {args.kind} files")
    if args.kind == "video":
        report = video_report(args.model, data, args.n, args.frames, args.seed,
                              digits=args.digits, sampling=sampling, classes=args.classes,
                              cfg_scale=args.cfg_scale)
    else:
        report = image_report(args.model, data, args.n, args.seed, sampling=sampling)
    return {**report, "sampling": sampling}


def main(argv=None) -> int:
    from codeclm.cli import OneLineParser
    from codeclm.generation.args import add_sampling_flags

    p = OneLineParser(prog="python -m codeclm_apps.bundled_eval",
                      description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("video", "image"))
    p.add_argument("--data", required=True, help="the training media folder")
    p.add_argument("--model", default=None, help="model directory (default: the bundled one)")
    p.add_argument("-n", type=int, default=8, help="samples to generate")
    p.add_argument("--frames", type=int, default=16, help="frames per generated clip")
    p.add_argument("--seed", type=int, default=0)
    add_sampling_flags(p)
    p.add_argument("--digits", action="store_true",
                   help="video: also the share of frames showing a recognisable digit")
    p.add_argument("--classes", default=None, metavar="all|A,B,..",
                   help="video, class-conditional model: ask clip i for the i-th of these "
                        "classes (cycling; all: the model's)")
    p.add_argument("--cfg-scale", type=float, default=None, metavar="S",
                   help="with --classes: classifier-free guidance scale (default: the "
                        "generator's)")
    p.add_argument("-o", "--output", default=None, help="also write the JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    args = p.parse_args(argv)
    from codeclm.errors import CodecLMError

    try:
        res = _report(args)
    except CodecLMError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    text = json.dumps(res, indent=2)
    print(text)
    if args.output:
        from codeclm.io import atomic_write_bytes

        atomic_write_bytes(args.output, text.encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
