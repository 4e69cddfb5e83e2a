"""Tiny labelled image and video sets for class conditioning: ``OUT/<class>/NNNNN.png|mp4``.

Three classes, each one shape kind in its own colour on a dark background tinted with
that colour, at a seeded random position and size (``circle``: red discs, ``square``:
green squares, ``triangle``: blue triangles). The tint makes the class visible in every
block, so a tiny model learns it within a few hundred steps. The folder layout is the
one ``--labels folder`` reads. Item ``i`` of class ``c`` draws from
``numpy.random.default_rng((seed, k, i))`` (``k`` the class's index), so a set is the
same whatever else is asked.

Videos (:func:`write_labelled_clips`): the same three shapes and colours, each class
with its own motion (:data:`CLASS_MOTION`: circles move right, squares move down,
triangles stand still), so colour and motion both tell the class.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: class -> RGB colour of its shape
CLASS_COLOURS = {"circle": (230, 40, 40), "square": (40, 200, 70), "triangle": (40, 90, 230)}
#: background = this fraction of the class colour
TINT = 0.3
#: class -> shape velocity (dx, dy) in pixels per frame in a video clip
CLASS_MOTION = {"circle": (3.0, 0.0), "square": (0.0, 3.0), "triangle": (0.0, 0.0)}
#: a video clip's background: this fraction of the class colour (brighter than the
#: images': most of a small clip's macroblocks are background, and they carry the class)
CLIP_TINT = 0.6


def render(kind: str, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """One ``(height, width, 3)`` uint8 picture of a ``kind`` shape."""
    short = min(width, height)
    r = rng.uniform(0.18, 0.32) * short
    cx = rng.uniform(r, width - r)
    cy = rng.uniform(r, height - r)
    return draw(kind, cx, cy, r, width, height)


def draw(kind: str, cx: float, cy: float, r: float, width: int, height: int,
         tint: float = TINT) -> np.ndarray:
    """A ``kind`` shape of radius ``r`` centred at ``(cx, cy)`` (pixels) on the class's
    colour times ``tint`` as background: ``(height, width, 3)`` uint8."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = (np.array(CLASS_COLOURS[kind]) * tint).astype(np.uint8)
    y, x = np.mgrid[0:height, 0:width] + 0.5
    if kind == "circle":
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    elif kind == "square":
        inside = (abs(x - cx) <= r * 0.85) & (abs(y - cy) <= r * 0.85)
    elif kind == "triangle":  # apex up, base at cy + r
        top, base = cy - r, cy + r
        half = (y - top) / (2 * r) * r
        inside = (y >= top) & (y <= base) & (abs(x - cx) <= half)
    else:
        raise ValueError(kind)
    img[inside] = CLASS_COLOURS[kind]
    return img


def write_labelled_shapes(out: str | os.PathLike, per_class: int, seed: int = 0,
                          size: tuple[int, int] = (64, 64)) -> list[Path]:
    """Write ``per_class`` PNGs of each class under ``out/<class>/``; returns the paths."""
    from PIL import Image

    out = Path(out)
    paths = []
    for k, kind in enumerate(CLASS_COLOURS):
        (out / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = render(kind, np.random.default_rng((seed, k, i)), *size)
            path = out / kind / f"{i:05d}.png"
            Image.fromarray(img).save(path)
            paths.append(path)
    return paths


def render_clip(kind: str, rng: np.random.Generator, width: int, height: int,
                frames: int) -> np.ndarray:
    """``(frames, height, width, 3)`` uint8: a ``kind`` shape moving by the class's
    :data:`CLASS_MOTION`, placed so that it stays inside the picture throughout."""
    dx, dy = CLASS_MOTION[kind]
    r = rng.uniform(0.12, 0.2) * min(width, height)
    span_x, span_y = abs(dx) * (frames - 1), abs(dy) * (frames - 1)
    cx = rng.uniform(r, max(r, width - r - span_x))
    cy = rng.uniform(r, max(r, height - r - span_y))
    return np.stack([draw(kind, cx + dx * t, cy + dy * t, r, width, height, CLIP_TINT)
                     for t in range(frames)])


def write_labelled_clips(out: str | os.PathLike, per_class: int, seed: int = 0,
                         size: tuple[int, int] = (64, 64), frames: int = 8,
                         fps: float = 4) -> list[Path]:
    """Write ``per_class`` MP4 clips (``frames`` frames at ``fps``) of each class under
    ``out/<class>/``; returns the paths. Clip ``i`` of class ``k`` draws from
    ``default_rng((seed, k, i))``."""
    from .synth import save_mp4

    out = Path(out)
    paths = []
    for k, kind in enumerate(CLASS_COLOURS):
        (out / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            clip = render_clip(kind, np.random.default_rng((seed, k, i)), *size, frames)
            path = out / kind / f"{i:05d}.mp4"
            save_mp4(clip, fps, path)
            paths.append(path)
    return paths


def labelled_shards(d: str | os.PathLike, kind: str, per_class: int, vocab_size: int,
                    seed: int = 0, drop_label: float = 0.1) -> dict[str, Path]:
    """A whole labelled training set at the tiny profile, for experiments and tests:
    ``d/media`` (:func:`write_labelled_shapes` or :func:`write_labelled_clips`, ``kind``
    ``"image"`` or ``"video"``), ``d/tok.json`` (byte-level BPE of ``vocab_size`` tokens
    trained on every item) and ``d/shards`` (``--labels folder`` with ``drop_label`` of
    the items also written under the null class). Returns those three paths by name."""
    from codeclm.profile import get_profile
    from codeclm.tokenizer import ByteTokenizer

    from .pipeline import build_dataset

    d = Path(d)
    if kind == "image":
        from jpeglm.codec import encode_image as encode

        paths, modality = write_labelled_shapes(d / "media", per_class, seed=seed), "jpeg"
    else:
        from avclm.codec import encode_video as encode

        paths, modality = write_labelled_clips(d / "media", per_class, seed=seed), "h264"
    tiny = get_profile(modality, "tiny")
    ByteTokenizer.train([encode(p, tiny) for p in paths], vocab_size, modality).save(d / "tok.json")
    extra = {"clips": 1} if kind == "video" else {}
    build_dataset(d / "media", d / "shards", kind, tiny, d / "tok.json", show_progress=False,
                  labels="folder", drop_label=drop_label, **extra)
    return {"media": d / "media", "tok": d / "tok.json", "shards": d / "shards"}
