"""Prompted completion against a flat fill: pixel MSE of the part the model writes.

``python -m jpeglm.completion_mse --images DIR [--model DIR ...] [--ratio 0.5] [-o OUT.json]``

Every image in DIR is encoded with the model's profile and cut after the first
``ratio`` of its MCUs (``codec.prompt_prefix``, whole rows of MCUs in raster order for
0.25/0.5/0.75); the model writes the rest (one sample per image, sample ``i`` with seed
``seed + i``; scan grammar on, so every completion decodes). The reference is the
canonical decode of the whole image (what the model is trained to write). Two numbers
per model, both the mean over images of the per-pixel squared error (0-255 scale,
averaged over the RGB channels) on the MCUs *not* in the prompt:

- ``mse_model``: the model's completion;
- ``mse_mean_fill``: those MCUs painted with the mean colour of the prompt's pixels,
  the baseline a model has to beat to show it uses what it sees.

``--pool DIR`` (training images, never the held-out ones) adds what *sampled*
completions can be expected to score (:func:`pool_baselines`): a single sample, however
good, is not a point estimate, and a sampler that draws the missing part from its true
conditional distribution scores about twice the conditional variance, which can be
above the mean fill's error:

- ``mse_retrieval_sample``: the missing part of the pool image whose prompt part is
  nearest (a nonparametric conditional sample);
- ``mse_retrieval_mean``: the mean of the :data:`RETRIEVAL_K` nearest ones' (an
  estimate of the conditional mean: a point estimate, like the fill);
- ``mse_random_sample``: the missing part of a random pool image (an unconditional
  sample: what a model that ignores the prompt scores).

``--samples N`` (N > 1) draws N completions of each image (sample ``j`` of image ``i``
with seed ``seed + j * images + i``, so the first ones are the single-sample run's) and
adds two numbers that tell the model's bias from its sampling noise:

- ``mse_model_samples``: the mean single-sample MSE over all N completions (a less noisy
  ``mse_model``);
- ``mse_model_mean_of_samples``: the MSE of the pixel mean of each image's N completions,
  a Monte Carlo estimate of the *model's* conditional mean (a point estimate, like the
  fill and ``mse_retrieval_mean``). As N grows it falls towards the model's bias (the
  squared error of its conditional mean); the sampling variance leaves it as 1/N.

``--model`` may be given several times (``bundled`` is the bundled model); one JSON
object per model is printed (and written to ``-o`` as a list).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def generated_mask(profile, ratio: float) -> np.ndarray:
    """(height, width) bool: True on the pixels of MCUs after the first ``ratio`` of them
    (the part a completion at ``ratio`` writes)."""
    k = math.floor(ratio * profile.mcu_count + 1e-9)
    index = np.arange(profile.mcu_count).reshape(profile.mcus_per_column, profile.mcus_per_row)
    per_pixel = np.repeat(np.repeat(index, profile.mcu_height, 0), profile.mcu_width, 1)
    return per_pixel >= k


def masked_mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared difference of two (H, W, 3) images over the pixels where ``mask``."""
    d = a.astype(np.float64)[mask] - b.astype(np.float64)[mask]
    return float(np.mean(d * d))


def mean_fill(reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``reference`` with the ``mask`` pixels painted the mean RGB of the others."""
    out = reference.astype(np.float64).copy()
    out[mask] = reference[~mask].reshape(-1, 3).mean(0)
    return out


#: pool images averaged for ``mse_retrieval_mean``
RETRIEVAL_K = 20
#: pool images compared at a time (bounds the distance matrix's memory)
_POOL_CHUNK = 2048


def canonical_pixels(data: bytes, profile) -> np.ndarray:
    """(H, W, 3) uint8: the canonical decode of one canonical JPEG."""
    from jpeglm import codec

    return np.asarray(codec.decode(data, profile, strict=True).convert("RGB"))


def pool_baselines(truth: list[np.ndarray], pool: list[np.ndarray], mask: np.ndarray,
                   seed: int = 0) -> dict:
    """The sampled-completion yardsticks (module docstring) for the held-out images
    ``truth`` against ``pool`` (training images), all (H, W, 3) uint8 canonical decodes
    at one profile; ``mask`` (H, W) bool: the missing part. Nearest means least squared
    distance over the prompt part's pixels (``~mask``). Mean MSEs over ``truth``, and
    ``pool``: its size. ``seed`` picks the random samples."""
    from codeclm.errors import InputError

    if not pool:
        raise InputError("the --pool folder holds no images")
    q = np.stack([t[~mask].reshape(-1) for t in truth]).astype(np.float32)
    k = min(RETRIEVAL_K, len(pool))
    best_d = np.full((len(truth), 0), np.inf, np.float32)
    best_i = np.zeros((len(truth), 0), np.int64)
    for start in range(0, len(pool), _POOL_CHUNK):
        chunk = np.stack([p[~mask].reshape(-1) for p in pool[start:start + _POOL_CHUNK]])
        chunk = chunk.astype(np.float32)
        d = ((q * q).sum(1)[:, None] - 2 * q @ chunk.T + (chunk * chunk).sum(1)[None])
        best_d = np.concatenate([best_d, d], 1)
        best_i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + len(chunk)),
                                                         d.shape)], 1)
        keep = np.argsort(best_d, 1, kind="stable")[:, :k]
        best_d = np.take_along_axis(best_d, keep, 1)
        best_i = np.take_along_axis(best_i, keep, 1)
    rng = np.random.default_rng(seed)
    sample, mean, random = [], [], []
    for t, near in zip(truth, best_i):
        sample.append(masked_mse(pool[near[0]], t, mask))
        mean.append(masked_mse(np.mean([pool[i] for i in near], 0), t, mask))
        random.append(masked_mse(pool[int(rng.integers(len(pool)))], t, mask))
    return {"pool": len(pool), "mse_retrieval_sample": float(np.mean(sample)),
            "mse_retrieval_mean": float(np.mean(mean)),
            "mse_random_sample": float(np.mean(random))}


def completion_report(model, images: list[Path], ratio: float = 0.5, seed: int = 0,
                      sampling=None, pool: list[Path] | None = None, samples: int = 1,
                      batch: int = 1, finish_early: bool = True) -> dict:
    """Completion MSE against mean fill for one model (directory, or None: bundled);
    ``sampling``: a :class:`~codeclm.generation.sampling_config.SamplingConfig` (its
    seed is replaced by ``seed``; default: the sampling defaults); with ``pool``
    (training images) also the sampled-completion yardsticks (:func:`pool_baselines`);
    ``samples`` > 1: also the mean-of-samples numbers (module docstring). ``batch``:
    completions sampled together (each keeps its own seed). ``finish_early``: an MCU the
    model would end early is finished plainly (False: ``--no-finish-early``)."""
    from codeclm.errors import ConfigError
    from codeclm.generation.loading import load_model
    from codeclm.generation.sampling_config import SamplingConfig
    from jpeglm import codec
    from jpeglm.generate import ImageEvent, generate_images

    if samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {samples}")
    lm = load_model(model, "jpeg", "cpu", None)
    profile = lm.profile
    mask = generated_mask(profile, ratio)
    data = [codec.encode_image(p, profile) for p in images]
    truth = [canonical_pixels(d, profile) for d in data]
    prompts = [codec.prompt_prefix(d, ratio, profile) for d in data]
    config = dataclasses.replace(sampling or SamplingConfig(), seed=seed)
    done = {ev.sample: np.asarray(ev.image.convert("RGB"))
            for ev in generate_images(lm, prompts=prompts * samples, config=config,
                                      batch=batch, finish_early=finish_early)
            if isinstance(ev, ImageEvent)}
    n = len(truth)
    drawn = [[done[j * n + i] for j in range(samples)] for i in range(n)]  # [image][sample]
    mse_model = [masked_mse(d[0], t, mask) for d, t in zip(drawn, truth)]
    mse_fill = [masked_mse(mean_fill(t, mask), t, mask) for t in truth]
    report = {
        "model": str(model) if model else "bundled", "images": len(images), "ratio": ratio,
        "seed": seed, "temperature": config.temperature, "top_k": config.top_k,
        "top_p": config.top_p, "mask_order": config.mask_order, "finish_early": finish_early,
        "mse_model": float(np.mean(mse_model)), "mse_mean_fill": float(np.mean(mse_fill)),
        "model_beats_fill": float(np.mean(np.array(mse_model) < np.array(mse_fill))),
    }
    if samples > 1:
        report["samples"] = samples
        report["mse_model_samples"] = float(np.mean(
            [masked_mse(s, t, mask) for d, t in zip(drawn, truth) for s in d]))
        report["mse_model_mean_of_samples"] = float(np.mean(
            [masked_mse(np.mean(d, 0), t, mask) for d, t in zip(drawn, truth)]))
    if pool is not None:
        report.update(_pool_report(tuple(images), tuple(pool), profile, ratio, seed))
    return report


@functools.lru_cache(maxsize=2)
def _pool_report(images: tuple[Path, ...], pool: tuple[Path, ...], profile, ratio: float,
                 seed: int) -> dict:
    """:func:`pool_baselines` of ``images`` against ``pool`` at ``profile``: the same for
    every model of one profile, so the pool is read and encoded once per run."""
    from jpeglm import codec

    def pixels(paths):
        return [canonical_pixels(codec.encode_image(p, profile), profile) for p in paths]

    return pool_baselines(pixels(images), pixels(pool), generated_mask(profile, ratio), seed)


def check_disjoint(heldout: list[Path], others: list[Path], flag: str) -> None:
    """ConfigError when ``others`` (training images given with ``flag``) holds any of the
    ``heldout`` images: a yardstick from the held-out set itself would flatter."""
    from codeclm.errors import ConfigError

    if {p.resolve() for p in others} & {p.resolve() for p in heldout}:
        raise ConfigError(f"{flag} shares images with --images: give training images")


def image_paths(folder: Path, limit: int | None = None) -> list[Path]:
    """The images in ``folder`` (recursively), sorted; the first ``limit``."""
    from codeclm.errors import InputError

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"{folder}: no images")
    return paths[:limit]


def main(argv: list[str] | None = None) -> int:
    from codeclm.cli import OneLineParser
    from codeclm.generation.args import add_sampling_flags

    p = OneLineParser(prog="python -m jpeglm.completion_mse",
                      description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, type=Path, help="held-out images")
    p.add_argument("--model", action="append", default=None,
                   help="model directory, or 'bundled' (repeatable; default: bundled)")
    p.add_argument("--ratio", type=float, default=0.5, help="prompt fraction of MCUs (0.5)")
    p.add_argument("-n", "--limit", type=int, default=None, help="use the first N images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=Path, default=None,
                   help="training images: also report what sampled completions score "
                        "(retrieval and random samples from them)")
    p.add_argument("--samples", type=int, default=1,
                   help="completions per image (> 1: also the MSE of their pixel mean)")
    p.add_argument("--batch", type=int, default=1, help="completions sampled together (1)")
    p.add_argument("--no-finish-early", action="store_true",
                   help="draw the model's next allowed token where it would end an MCU "
                   "early (default: finish the MCU plainly)")
    add_sampling_flags(p)
    p.add_argument("-o", "--output", default=None, help="also write the JSON list here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    args = p.parse_args(argv)
    from codeclm.errors import CodecLMError

    try:
        results = _reports(args)
    except CodecLMError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    if args.output:
        from codeclm.io import atomic_write_bytes

        atomic_write_bytes(args.output, json.dumps(results, indent=2).encode() + b"\n")
    return 0


def _reports(args: argparse.Namespace) -> list[dict]:
    """One :func:`completion_report` per ``--model`` (printed as it ends), after the checks
    that need no model: ratio, -n, sampling flags, the -o file."""
    from codeclm.errors import ConfigError
    from codeclm.generation.args import sampling_config
    from codeclm.outputs import check_output_file

    if not 0.0 < args.ratio < 1.0:
        raise ConfigError(f"--ratio must be in (0, 1), got {args.ratio}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"-n must be >= 1, got {args.limit}")
    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    config = sampling_config(args)
    if args.output:
        check_output_file(args.output, args.overwrite)
    images = image_paths(args.images, args.limit)
    pool = image_paths(args.pool) if args.pool is not None else None
    if pool is not None:
        check_disjoint(images, pool, "--pool")
    results = []
    for m in args.model or ["bundled"]:
        res = completion_report(None if m == "bundled" else m, images, args.ratio, args.seed,
                                config, pool, args.samples, args.batch,
                                finish_early=not args.no_finish_early)
        print(json.dumps(res), flush=True)
        results.append(res)
    return results

if __name__ == "__main__":
    sys.exit(main())
