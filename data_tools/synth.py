"""Procedural training media, written as ordinary files (PNG images, MP4 videos).

Two families of sources:

* ``shapes`` (numpy): one to three circles or rectangles of distinct palette colours on a
  plain or two-colour gradient background, each moving at a constant velocity and
  bouncing off the frame edges. Simple and consistent, so a small model can learn it;
  this is what the bundled demo models are trained on.
* ``pan`` (numpy): a camera panning at a constant whole-pixel velocity (1-3 pixels per
  frame on each axis) over a still world of three to six shapes on a gradient along the
  pan. Every macroblock moves with the same motion vector, the easiest motion there is
  for a small model to learn (the bundled video model is trained on it).
* ``photo-crops`` (scikit-image's bundled photographs, ``skimage.data``): a seeded random
  square crop (side log-uniform between the frame's short side and the photo's), resized
  to the frame size with Pillow's Lanczos filter and mirrored half of the time. The photos
  are split once and for all into :data:`TRAIN_PHOTOS` and :data:`HELDOUT_PHOTOS`
  (``split=``), so a model can be evaluated on photos it never saw. As a video, the camera
  pans at a whole-pixel velocity across the scaled photo, its view a quarter to half of
  the photo's short side. ``photo-views``: the same photos seen whole: a crop, or the
  view of a pan, spans :data:`PHOTO_VIEW` (60-80%) of the photo's short side, so the
  subject (a face, a cat, a rocket) stays in the frame.
* ``digits`` (scikit-learn's bundled handwritten digits, ``data_tools.digits``): one
  white digit bouncing over black at a whole-pixel velocity (the Moving-MNIST idea); an
  image is one such frame. Every fifth digit is held out (``split=heldout``) for
  evaluation and for the digit recogniser. ``digits-on-grey``: the same over mid grey
  (128), the background an intra macroblock with no residual decodes to.
  ``digits-large``: one digit over black at 65-85% of the frame's short side, drifting
  1 pixel per frame on each axis (simpler, larger content for a small model).
* ffmpeg ``lavfi`` generators, run through the bundled binary
  (``imageio_ffmpeg.get_ffmpeg_exe()``): ``life`` (Conway's game of life), ``testsrc2``
  (test pattern), ``mandelbrot`` (zooming fractal), ``cellauto`` (elementary cellular
  automaton), each with seeded random parameters and colours.

Everything is deterministic given ``seed``: item ``i`` draws from
``numpy.random.default_rng((seed, i))`` (so item ``i`` is the same whatever ``count``
is), PNGs are written by Pillow, MP4s by libx264 with one thread and bit-exact flags.
Sizes are the profile's (``width`` x ``height`` pixels); videos default to the profile's
frame rate and clip length.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codeclm.errors import ConfigError, EncodeError
from codeclm.io import atomic_path, atomic_write, write_png

from .digits import DIGIT_SOURCES, moving_digits

SOURCES = ("shapes", "pan", "photo-crops", "photo-views", *DIGIT_SOURCES, "life", "testsrc2",
           "mandelbrot", "cellauto")
#: the photo sources (``split=`` picks their photos)
PHOTO_SOURCES = ("photo-crops", "photo-views")
#: ``photo-views``: the share of the photo's short side a crop or a pan's view spans
PHOTO_VIEW = (0.6, 0.8)
DEFAULT_SOURCES = ("shapes",)
SPLITS = ("train", "heldout")
#: what ``synth(..., digit_labels=True)`` writes beside the items: ``path,label`` rows
DIGIT_LABELS_FILE = "labels.csv"
#: ``skimage.data`` photographs in the wheel (no download), colour and grey; grey ones are
#: repeated into three channels. Synthetic pictures (logo, colorwheel, ...) are left out.
TRAIN_PHOTOS = ("astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina",
                "rocket", "camera", "coins", "grass", "gravel", "moon", "page", "text", "cell")
#: never used for training crops: evaluation only
HELDOUT_PHOTOS = ("coffee", "clock", "brick")

#: distinct, saturated shape colours and calmer background colours (RGB)
SHAPE_PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (255, 255, 255), (20, 20, 20),
], np.uint8)
BACKGROUND_PALETTE = np.array([
    (0, 0, 0), (255, 255, 255), (128, 128, 128), (40, 40, 90), (200, 220, 240),
    (30, 70, 40), (240, 230, 200), (90, 40, 40),
], np.uint8)
#: interesting points of the Mandelbrot set to zoom into (real, imaginary)
MANDEL_POINTS = ((-0.743643887037151, 0.13182590420533), (-0.7453, 0.1127), (-1.25066, 0.02012),
                 (-0.1011, 0.9563), (0.285, 0.01), (-0.8, 0.156), (-1.768778833, -0.001738996),
                 (-0.77568377, 0.13646737))


def ffmpeg_exe() -> str:
    """The ffmpeg binary bundled with ``imageio-ffmpeg`` (there is no system ffmpeg)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# --- geometry ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Geometry:
    """What to generate: ``width`` x ``height`` pixels; videos ``frames`` frames at ``fps``."""

    width: int
    height: int
    fps: float = 0.0
    frames: int = 1


def geometry_for(profile, kind: str, fps: float | None = None, seconds: float | None = None,
                 size: tuple[int, int] | None = None) -> Geometry:
    """The profile's frame size (and for videos frame rate and clip length), overridable."""
    w, h = size or (profile.width, profile.height)
    if kind == "image":
        return Geometry(w, h)
    rate = fps or float(_first_attr(profile, ("fps", "frame_rate", "rate"), 3.0))
    if seconds is None:
        seconds = _first_attr(profile, ("seconds", "duration", "max_seconds", "clip_seconds"), None)
        if seconds is None:
            n = _first_attr(profile, ("frames", "max_frames", "num_frames"), 15)
            seconds = n / float(_first_attr(profile, ("fps", "frame_rate", "rate"), rate))
    frames = max(1, round(rate * float(seconds)))
    return Geometry(w, h, rate, frames)


def _first_attr(obj, names, default):
    for n in names:
        v = getattr(obj, n, None)
        if v is not None:
            return v
    return default


# --- shapes ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shape:
    kind: str                 #: "circle" or "rect"
    color: tuple[int, int, int]
    x: float                  #: centre at t=0, pixels
    y: float
    vx: float                 #: velocity, pixels per frame
    vy: float
    rx: float                 #: half width (circle: radius), pixels
    ry: float                 #: half height (circle: radius), pixels


@dataclasses.dataclass(frozen=True)
class Scene:
    """A background and a few moving shapes; :meth:`render` draws frame ``t``."""

    width: int
    height: int
    background: str           #: "plain", "vertical" or "horizontal" (gradient)
    colors: tuple             #: one or two background colours
    shapes: tuple[Shape, ...]

    def render(self, t: int = 0) -> np.ndarray:
        """Frame ``t`` as an (height, width, 3) uint8 RGB array."""
        h, w = self.height, self.width
        c0 = np.asarray(self.colors[0], np.float32)
        if self.background == "plain":
            img = np.empty((h, w, 3), np.float32)
            img[:] = c0
        else:
            c1 = np.asarray(self.colors[1], np.float32)
            n = h if self.background == "vertical" else w
            ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
            line = c0 + (c1 - c0) * ramp                      # (n, 3)
            img = (np.broadcast_to(line[:, None, :], (h, w, 3)) if self.background == "vertical"
                   else np.broadcast_to(line[None, :, :], (h, w, 3))).copy()
        img = np.rint(img).astype(np.uint8)
        yy = np.arange(h, dtype=np.float32)[:, None]
        xx = np.arange(w, dtype=np.float32)[None, :]
        for s in self.shapes:
            cx = bounce(s.x + s.vx * t, s.rx, w)
            cy = bounce(s.y + s.vy * t, s.ry, h)
            if s.kind == "circle":
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= s.rx * s.rx
            else:
                mask = (np.abs(xx - cx) <= s.rx) & (np.abs(yy - cy) <= s.ry)
            img[mask] = s.color
        return img


def bounce(pos: float, half: float, extent: int) -> float:
    """Reflect a centre coordinate so the shape stays inside [0, extent)."""
    lo, hi = half, max(half, extent - 1 - half)
    span = hi - lo
    if span <= 0:
        return lo
    p = (pos - lo) % (2 * span)
    return lo + (p if p <= span else 2 * span - p)


def _two_background_colors(rng: np.random.Generator) -> tuple:
    bg = rng.choice(len(BACKGROUND_PALETTE), size=2, replace=False)
    return tuple(tuple(int(v) for v in BACKGROUND_PALETTE[i]) for i in bg)


def _shape_size(rng: np.random.Generator, short: int) -> tuple[str, float, float]:
    """(kind, half width, half height): 8-20% of the short side each."""
    kind = "circle" if rng.random() < 0.5 else "rect"
    rx = float(rng.uniform(0.08, 0.2) * short)
    ry = rx if kind == "circle" else float(rng.uniform(0.08, 0.2) * short)
    return kind, rx, ry


def random_scene(rng: np.random.Generator, width: int, height: int, moving: bool = True) -> Scene:
    """A random background with 1-3 shapes; sizes scale with the frame, speeds 1-4% of it."""
    style = ("plain", "vertical", "horizontal")[rng.integers(0, 3)]
    colors = _two_background_colors(rng)
    if style == "plain":
        colors = colors[:1]
    n = int(rng.integers(1, 4))
    picks = rng.choice(len(SHAPE_PALETTE), size=n, replace=False)
    short = min(width, height)
    shapes = []
    for i in range(n):
        kind, rx, ry = _shape_size(rng, short)
        speed = float(rng.uniform(0.01, 0.04) * short) if moving else 0.0
        angle = float(rng.uniform(0, 2 * np.pi))
        shapes.append(Shape(kind, tuple(int(v) for v in SHAPE_PALETTE[picks[i]]),
                            float(rng.uniform(rx, max(rx, width - rx))),
                            float(rng.uniform(ry, max(ry, height - ry))),
                            speed * np.cos(angle), speed * np.sin(angle), rx, ry))
    return Scene(width, height, style, colors, tuple(shapes))


def random_pan(rng: np.random.Generator, width: int, height: int,
               frames: int) -> tuple[Scene, int, int]:
    """(still world, vx, vy): a world just large enough for a ``width`` x ``height`` camera
    moving ``(vx, vy)`` whole pixels per frame (each in -3..3, not both 0) for ``frames``."""
    while True:
        vx, vy = (int(v) for v in rng.integers(-3, 4, size=2))
        if vx or vy:
            break
    ww, wh = width + abs(vx) * (frames - 1), height + abs(vy) * (frames - 1)
    style = "horizontal" if abs(vx) >= abs(vy) else "vertical"  # the gradient moves too
    colors = _two_background_colors(rng)
    n = int(rng.integers(3, 7))
    picks = rng.choice(len(SHAPE_PALETTE), size=n, replace=False)
    short = min(width, height)
    shapes = []
    for i in range(n):
        kind, rx, ry = _shape_size(rng, short)
        shapes.append(Shape(kind, tuple(int(v) for v in SHAPE_PALETTE[picks[i]]),
                            float(rng.uniform(rx, max(rx, ww - rx))),
                            float(rng.uniform(ry, max(ry, wh - ry))), 0.0, 0.0, rx, ry))
    return Scene(ww, wh, style, colors, tuple(shapes)), vx, vy


def pan_frames(world: Scene, vx: int, vy: int, width: int, height: int, frames: int) -> np.ndarray:
    """The camera's view of ``world`` for ``frames`` frames: (frames, height, width, 3)."""
    img = world.render(0)
    x0, y0 = max(0, -vx) * (frames - 1), max(0, -vy) * (frames - 1)
    return np.stack([img[y0 + vy * t:y0 + vy * t + height, x0 + vx * t:x0 + vx * t + width]
                     for t in range(frames)])


# --- photographs -------------------------------------------------------------------------


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` as an (H, W, 3) uint8 RGB array (read-only)."""
    try:
        import skimage.data
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ConfigError("the photo-crops source needs scikit-image "
                          "(pip install scikit-image)") from e
    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = np.ascontiguousarray(img[:, :, :3], dtype=np.uint8)
    img.setflags(write=False)
    return img


def photos_of(split: str) -> tuple[str, ...]:
    """The photo names of a split: ``train`` or ``heldout``."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return TRAIN_PHOTOS if split == "train" else HELDOUT_PHOTOS


def check_photos(photos: Sequence[str], split: str) -> tuple[str, ...]:
    """``photos`` as a tuple without repeats (first-seen order), each a photo of ``split``
    (:class:`ConfigError` otherwise, naming the split's photos): a subset never reaches
    across the split, so held-out photos stay held out."""
    names = photos_of(split)
    chosen = tuple(dict.fromkeys(photos))
    if not chosen:
        raise ConfigError("photos: name at least one photo")
    stray = [n for n in chosen if n not in names]
    if stray:
        raise ConfigError(f"photos: {', '.join(stray)} not among the {split} photos "
                          f"({', '.join(names)})")
    return chosen


def _pick_photo(rng: np.random.Generator, split: str,
                photos: Sequence[str] | None) -> tuple[str, np.ndarray]:
    """(name, photo) drawn uniformly from ``photos`` (None: all of ``split``'s)."""
    names = photos_of(split) if photos is None else photos
    name = names[int(rng.integers(0, len(names)))]
    return name, load_photo(name)


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.LANCZOS))


def photo_crop(rng: np.random.Generator, width: int, height: int,
               split: str = "train", view: tuple[float, float] | None = None,
               photos: Sequence[str] | None = None) -> tuple[str, np.ndarray]:
    """(photo name, crop): one random crop of a random photo of ``split`` (of ``photos``,
    names checked by :func:`check_photos`, where given), resized to (height, width, 3)
    uint8.

    The crop has the frame's aspect ratio; its width is log-uniform between ``width``
    pixels and the largest that fits the photo, so crops range from native-resolution
    detail to nearly the whole photo scaled down; with ``view`` (lo, hi) it is uniform
    between those shares of the largest. Mirrored left-right half of the time.
    """
    name, photo = _pick_photo(rng, split, photos)
    ph, pw = photo.shape[:2]
    largest = min(pw, ph * width / height)
    if view is None:
        cw = float(np.exp(rng.uniform(np.log(min(width, largest)), np.log(largest))))
    else:
        cw = float(rng.uniform(*view)) * largest
    ch = cw * height / width
    x0 = float(rng.uniform(0, pw - cw))
    y0 = float(rng.uniform(0, ph - ch))
    box = photo[int(y0):int(y0) + max(1, round(ch)), int(x0):int(x0) + max(1, round(cw))]
    out = _resize(box, width, height)
    return name, (out[:, ::-1].copy() if rng.random() < 0.5 else out)


def photo_pan(rng: np.random.Generator, width: int, height: int, frames: int,
              split: str = "train", view: tuple[float, float] | None = None,
              photos: Sequence[str] | None = None) -> tuple[str, np.ndarray]:
    """(photo name, frames (frames, height, width, 3) uint8): a camera panning at
    whole-pixel velocity (-2..2 on each axis, not both 0) over a random photo of ``split``
    (of ``photos`` where given) scaled down so the view's longer side spans a share of its
    short side drawn between ``view`` (lo, hi; default a quarter to half; the scale is
    uniform in 1 / share, and the scaled photo is stretched where the pan needs more room
    than it has)."""
    name, photo = _pick_photo(rng, split, photos)
    ph, pw = photo.shape[:2]
    while True:
        vx, vy = (int(v) for v in rng.integers(-2, 3, size=2))
        if vx or vy:
            break
    lo, hi = view or (0.25, 0.5)
    scale = float(rng.uniform(1 / hi, 1 / lo)) * max(width, height) / min(pw, ph)
    sw, sh = max(width, round(pw * scale)), max(height, round(ph * scale))
    sw, sh = max(sw, width + abs(vx) * (frames - 1)), max(sh, height + abs(vy) * (frames - 1))
    world = _resize(photo, sw, sh)
    x0 = int(rng.integers(0, sw - width - abs(vx) * (frames - 1) + 1)) + max(0, -vx) * (frames - 1)
    y0 = int(rng.integers(0, sh - height - abs(vy) * (frames - 1) + 1)) + max(0, -vy) * (frames - 1)
    return name, np.stack([world[y0 + vy * t:y0 + vy * t + height,
                                 x0 + vx * t:x0 + vx * t + width] for t in range(frames)])


# --- ffmpeg lavfi sources ---------------------------------------------------------------


def _hex(rgb) -> str:
    return "0x" + "".join(f"{int(v):02X}" for v in rgb)


def lavfi_spec(source: str, rng: np.random.Generator, geo: Geometry) -> tuple[str, int, tuple]:
    """(filtergraph, frames to skip at the start, two-colour palette or ()) for one item."""
    size = f"{geo.width}x{geo.height}"
    rate = geo.fps or 25
    if source == "life":
        c = rng.choice(len(SHAPE_PALETTE), size=2, replace=False)
        spec = (f"life=s={size}:r={rate}:seed={int(rng.integers(0, 2**31))}"
                f":ratio={rng.uniform(0.1, 0.5):.3f}:mold={int(rng.integers(0, 40))}"
                f":life_color={_hex(SHAPE_PALETTE[c[0]])}"
                f":death_color={_hex(BACKGROUND_PALETTE[rng.integers(0, 8)])}"
                f":mold_color={_hex(SHAPE_PALETTE[c[1]])}")
        return spec, int(rng.integers(0, 30)), ()
    if source == "testsrc2":
        spec = f"testsrc2=s={size}:r={rate},hue=h={rng.uniform(0, 360):.1f}"
        return spec, int(rng.integers(0, 250)), ()
    if source == "mandelbrot":
        x, y = MANDEL_POINTS[rng.integers(0, len(MANDEL_POINTS))]
        scale = float(10 ** rng.uniform(-3, 0.5))
        spec = (f"mandelbrot=s={size}:r={rate}:maxiter=256:start_x={x!r}:start_y={y!r}"
                f":start_scale={scale:.6g}:end_scale={scale / 50:.6g}:end_pts=100"
                f":outer=normalized_iteration_count")
        return spec, 0, ()
    if source == "cellauto":
        c = rng.choice(len(SHAPE_PALETTE), size=2, replace=False)
        rules = (18, 22, 30, 45, 54, 57, 60, 73, 90, 105, 110, 126, 150, 182)
        rule = int(rules[rng.integers(0, 14)])
        spec = (f"cellauto=s={size}:r={rate}:rule={rule}"
                f":random_fill_ratio={rng.uniform(0.1, 0.9):.3f}"
                f":random_seed={int(rng.integers(0, 2**31))}:scroll=1:full=1")
        return spec, 0, (tuple(SHAPE_PALETTE[c[0]]), tuple(SHAPE_PALETTE[c[1]]))
    raise ConfigError(f"unknown synthetic source {source!r}; known: {', '.join(SOURCES)}")


def _run_ffmpeg(args: list[str], stdin: bytes | None = None) -> bytes:
    cmd = [ffmpeg_exe(), "-nostdin" if stdin is None else "-hide_banner", "-v", "error", *args]
    p = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if p.returncode != 0:
        msg = p.stderr.decode(errors="replace").strip().splitlines()
        raise EncodeError(f"ffmpeg failed: {msg[-1] if msg else p.returncode}")
    return p.stdout


def lavfi_frames(source: str, rng: np.random.Generator, geo: Geometry, n: int) -> np.ndarray:
    """``n`` frames (n, H, W, 3) uint8 from a seeded lavfi generator."""
    spec, skip, palette = lavfi_spec(source, rng, geo)
    graph = f"{spec},trim=start_frame={skip},format=rgb24"
    raw = _run_ffmpeg(["-f", "lavfi", "-i", graph, "-frames:v", str(n), "-fps_mode", "passthrough",
                       "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
    frame = geo.width * geo.height * 3
    if len(raw) < n * frame:
        raise EncodeError(f"ffmpeg {source}: got {len(raw) // frame} of {n} frames")
    frames = np.frombuffer(raw[: n * frame], np.uint8).reshape(n, geo.height, geo.width, 3)
    if palette:  # black/white automaton -> two random colours
        a, b = (np.asarray(c, np.float32) for c in palette)
        v = frames[..., :1].astype(np.float32) / 255.0
        frames = np.rint(a + (b - a) * v).astype(np.uint8)
    return frames


# --- writing files --------------------------------------------------------------------


def save_mp4(frames: np.ndarray, fps: float, path: Path) -> None:
    """Frames (T, H, W, 3) uint8 -> H.264 MP4 (yuv420p, CRF 18, one thread, bit-exact)."""
    _, h, w, _ = frames.shape
    with atomic_path(path) as tmp:
        _run_ffmpeg(["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                     "-r", f"{fps:g}", "-i", "-", "-c:v", "libx264", "-preset", "veryfast",
                     "-crf", "18",
                     "-pix_fmt", "yuv420p", "-threads", "1", "-x264-params", "threads=1",
                     "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
                     "-movflags", "+faststart", "-f", "mp4", str(tmp)],
                    stdin=np.ascontiguousarray(frames).tobytes())


def make_labelled_item(kind: str, source: str, geo: Geometry, rng: np.random.Generator,
                       split: str = "train", photos: Sequence[str] | None = None
                       ) -> tuple[np.ndarray, int | None]:
    """One item's frames, (1, H, W, 3) for an image, (frames, H, W, 3) for a video, and
    its digit (0-9) for a digits source (one digit per item), else None. ``split`` picks
    the photos of the photo sources and the digits of ``digits`` (other sources ignore
    it); ``photos``: only these photos of the split (:func:`check_photos`; None: all)."""
    n = 1 if kind == "image" else geo.frames
    if source in DIGIT_SOURCES:
        labels, frames = moving_digits(rng, geo.width, geo.height, n, split,
                                       **DIGIT_SOURCES[source])
        return frames, labels[0]
    if source in PHOTO_SOURCES:
        view = PHOTO_VIEW if source == "photo-views" else None
        if kind == "image":
            return photo_crop(rng, geo.width, geo.height, split, view, photos)[1][None], None
        return photo_pan(rng, geo.width, geo.height, n, split, view, photos)[1], None
    if source == "shapes":
        scene = random_scene(rng, geo.width, geo.height, moving=kind == "video")
        return np.stack([scene.render(t) for t in range(n)]), None
    if source == "pan":
        world, vx, vy = random_pan(rng, geo.width, geo.height, n)
        return pan_frames(world, vx, vy, geo.width, geo.height, n), None
    # images from lavfi: one frame, taken a few steps in so the generators have evolved
    if kind == "image":
        step = int(rng.integers(0, 8))
        return lavfi_frames(source, rng, geo, step + 1)[-1:], None
    return lavfi_frames(source, rng, geo, n), None


def check_digit_label_sources(sources: Sequence[str]) -> None:
    """Digit labels need every source to be a digits source (:class:`ConfigError`)."""
    if any(s not in DIGIT_SOURCES for s in sources):
        raise ConfigError(f"--digit-labels: digit sources only ({', '.join(DIGIT_SOURCES)}), "
                          f"not {', '.join(sources)}")


def write_digit_labels(out: Path, labelled: Sequence[tuple[Path, int]]) -> Path:
    """``out/labels.csv`` (:data:`DIGIT_LABELS_FILE`, written atomically): a ``path,label``
    header, then each item's file name and digit, the format ``data_tools images|videos
    --labels FILE`` reads (classes ``0``..``9``)."""
    import csv

    path = out / DIGIT_LABELS_FILE
    with atomic_write(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "label"])
        w.writerows((p.name, str(d)) for p, d in labelled)
    return path


def synth(out: str | os.PathLike, kind: str, profile, count: int, seed: int = 0,
          sources: Sequence[str] = DEFAULT_SOURCES, fps: float | None = None,
          seconds: float | None = None, size: tuple[int, int] | None = None,
          progress: bool = False, workers: int | None = None,
          split: str = "train", digit_labels: bool = False,
          photos: Sequence[str] | None = None) -> list[Path]:
    """Write ``count`` synthetic images (PNG) or videos (MP4) into ``out``; returns their paths.

    Item ``i`` is ``out/{i:05d}-{source}.png|mp4`` with its source picked from ``sources``
    by the item's own seeded generator, so it does not depend on ``count`` or ``workers``
    (threads; the ffmpeg subprocesses and numpy run outside the GIL; default: one per CPU).
    ``split`` (``train`` or ``heldout``) picks which photos the photo sources cut from and
    which digits ``digits`` draws. ``digit_labels`` (digit sources only): also write
    ``out/labels.csv`` naming each item's digit (:func:`write_digit_labels`; not in the
    returned paths). ``photos``: the photo sources draw from these photos of ``split``
    only (:func:`check_photos`); None: all of them, and item ``i`` is the same as before
    this option existed.
    Existing files are overwritten.
    """
    if kind not in ("image", "video"):
        raise ConfigError(f"kind must be image or video, not {kind!r}")
    if count < 1:
        raise ConfigError(f"count must be at least 1, not {count}")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise ConfigError(f"unknown synthetic source(s) {unknown}; known: {', '.join(SOURCES)}")
    if digit_labels:
        check_digit_label_sources(sources)
    photos_of(split)  # validates split
    if photos is not None:
        photos = check_photos(photos, split)
    geo = geometry_for(profile, kind, fps, seconds, size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> tuple[Path, int | None]:
        rng = np.random.default_rng((seed, i))
        source = sources[int(rng.integers(0, len(sources)))]
        frames, digit = make_labelled_item(kind, source, geo, rng, split, photos)
        path = out / f"{i:05d}-{source}.{'png' if kind == 'image' else 'mp4'}"
        if kind == "image":
            write_png(frames[0], path, compress_level=1)
        else:
            save_mp4(frames, geo.fps, path)
        return path, digit

    from concurrent.futures import ThreadPoolExecutor

    if not workers:
        workers = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count())
    with ThreadPoolExecutor(max(1, workers or 1)) as pool:
        results = pool.map(one, range(count))
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=count, desc=f"synth {kind}s", unit=kind)
        done = list(results)
    if digit_labels:
        write_digit_labels(out, done)
    return [p for p, _ in done]
