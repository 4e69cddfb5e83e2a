"""Moving handwritten digits (the Moving-MNIST idea) from scikit-learn's bundled digit set,
and a recogniser that says whether a frame shows a digit.

Data: ``sklearn.datasets.load_digits()`` ships 1,797 handwritten digits in its wheel (no
download) as 8x8 images with 17 grey levels (0..16). They are split once and for all by
index: every fifth digit (index % 5 == 4, 359 digits) is *held out*: never drawn for
training media, used to fit the recogniser. The other 1,438 are the *train* split.

A clip (:func:`moving_digits`) shows one or two digits, white on black, each an 8x8 digit
scaled up to a square sprite (Pillow bicubic) whose side is drawn from ``scale`` (a
fraction of the frame's short side; 0.30..0.55 by default), moving at a constant
whole-pixel velocity (``speed``: 1..3 pixels per frame on each axis by default, either
sign) and bouncing off the frame edges; overlapping digits add up (clipped to white). An
image is the clip's first frame. The synth sources are styles of it
(:data:`DIGIT_SOURCES`): ``digits`` the defaults; ``digits-on-grey`` (``background=128``)
the digits over mid grey instead, from grey to white: with one macroblock per slice an
intra macroblock is predicted from nothing, i.e. from mid grey (128), so a grey background
costs a model no residual to write, and an empty macroblock is background rather than a
grey square on black; ``digits-large`` one digit over black at 65..85% of the short side,
moving exactly 1 pixel per frame on each axis (a diagonal drift), so each stroke is a few
pixels wide and spans more macroblocks with less detail in each.

Recognition (:class:`DigitRecogniser`): a small MLP fitted on the held-out digits (8x8,
0..16). A frame's luma above the clips' background level (0 for black, 128 for
``digits-on-grey``; :func:`background_level` reads it from the training clips), rescaled
so that background..white spans 0..255, is split into connected bright blobs (above half
its maximum, scipy.ndimage); each blob's bounding box, padded to a square, is scaled
to 8x8 and classified; the frame's score is the highest class probability over its blobs.
A frame *shows a digit* when that score is at least ``threshold`` (issue 17: 0.8).
"""

from __future__ import annotations

import functools

import numpy as np

from codeclm.errors import ConfigError

#: splits of the digit set: ``train`` for media, ``heldout`` for the recogniser
SPLITS = ("train", "heldout")
#: luma fraction of the frame's brightest pixel above which a pixel belongs to a blob
BLOB_LEVEL = 0.5
#: blobs smaller than this many pixels are noise, not a digit
MIN_BLOB_PIXELS = 12
#: the probability from which a frame *shows a digit* (issue 17)
DIGIT_THRESHOLD = 0.8
#: RGB -> luma (BT.601), for blobs and the background level
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
#: the synth sources drawn by :func:`moving_digits`: name -> its keyword arguments
#: (``background`` grey level; ``scale`` sprite side as (min, max) fractions of the frame's
#: short side; ``speed`` (min, max) pixels per frame on each axis)
DIGIT_SOURCES = {
    "digits": {"background": 0, "scale": (0.3, 0.55), "speed": (1, 3)},
    "digits-on-grey": {"background": 128, "scale": (0.3, 0.55), "speed": (1, 3)},
    "digits-large": {"background": 0, "scale": (0.65, 0.85), "speed": (1, 1)},
}


@functools.cache
def _digit_set() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ConfigError("the digits source needs scikit-learn (pip install scikit-learn)") from e
    data = load_digits()
    images = np.asarray(data.images, np.float32)
    labels = np.asarray(data.target, np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def digits_of(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 8, 8) float32 in 0..16, labels (N,) int64)`` of ``split``."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    images, labels = _digit_set()
    held = np.arange(len(labels)) % 5 == 4
    keep = held if split == "heldout" else ~held
    return images[keep], labels[keep]


def sprite_of(digit: np.ndarray, size: int) -> np.ndarray:
    """An 8x8 digit (0..16) scaled to ``(size, size)`` float32 intensities in 0..1."""
    from PIL import Image

    im = Image.fromarray(np.clip(digit * (255 / 16), 0, 255).astype(np.uint8))
    big = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC), np.float32)
    return big / 255.0


def _bounce(pos: int, vel: int, span: int) -> tuple[int, int]:
    """Next (position, velocity) of a sprite corner moving in ``0..span``."""
    pos += vel
    if pos < 0:
        return -pos, -vel
    if pos > span:
        return 2 * span - pos, -vel
    return pos, vel


def moving_digits(rng: np.random.Generator, width: int, height: int, frames: int,
                  split: str = "train", count: int = 1, background: int = 0,
                  scale: tuple[float, float] = (0.3, 0.55),
                  speed: tuple[int, int] = (1, 3)) -> tuple[list[int], np.ndarray]:
    """``(labels, frames (frames, height, width, 3) uint8)``: ``count`` digits of ``split``
    bouncing over a plain background of grey level ``background`` (0 black; the digits
    span it to white), each a square sprite of side ``scale`` (min, max fractions of the
    short side, one side drawn per clip) moving ``speed`` (min, max whole pixels per frame,
    drawn per axis, random sign); see the module docstring."""
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"digit scale must satisfy 0 < min <= max <= 1, got {scale}")
    if not 0 <= speed[0] <= speed[1]:
        raise ConfigError(f"digit speed must satisfy 0 <= min <= max, got {speed}")
    images, labels = digits_of(split)
    short = min(width, height)
    size = int(rng.integers(max(1, round(short * lo)), max(1, round(short * hi)) + 1))
    picks = [int(rng.integers(0, len(labels))) for _ in range(count)]
    sprites = [sprite_of(images[i], size) for i in picks]
    state = []
    for _ in picks:
        x = int(rng.integers(0, width - size + 1))
        y = int(rng.integers(0, height - size + 1))
        vx, vy = (int(v) * (1 if rng.random() < 0.5 else -1)
                  for v in rng.integers(speed[0], speed[1] + 1, 2))
        state.append([x, y, vx, vy])
    out = np.zeros((frames, height, width), np.float32)
    for t in range(frames):
        for sprite, s in zip(sprites, state):
            out[t, s[1]:s[1] + size, s[0]:s[0] + size] += sprite
            s[0], s[2] = _bounce(s[0], s[2], width - size)
            s[1], s[3] = _bounce(s[1], s[3], height - size)
    grey = np.clip(background + out * (255 - background) + 0.5, 0, 255).astype(np.uint8)
    return [int(labels[i]) for i in picks], np.repeat(grey[..., None], 3, axis=3)


#: the recogniser's eleventh class: a blob that is no digit
NOT_A_DIGIT = 10


def not_digit_frames(rng: np.random.Generator, n: int, size: int = 64) -> np.ndarray:
    """``n`` (size, size) uint8 frames that show no digit, for the recogniser's eleventh
    class: uniform noise, and random blocks of 2..16 pixels (what an untrained or
    barely trained model draws)."""
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cell = int(rng.choice([1, 2, 4, 8, 16]))
        out[i] = np.kron(rng.integers(0, 256, (size // cell, size // cell)),
                         np.ones((cell, cell), np.int64))
    return out


def rendered_digits(rng: np.random.Generator, split: str, copies: int = 3,
                    size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(frames (N, size, size) uint8, labels (N,))``: each digit of ``split`` drawn
    ``copies`` times alone on black, at a random place and a sprite side of 30..55% of
    the frame, exactly as :func:`moving_digits` draws them."""
    images, labels = digits_of(split)
    frames = np.zeros((len(images) * copies, size, size), np.uint8)
    for k in range(len(frames)):
        side = int(rng.integers(round(size * 0.3), round(size * 0.55) + 1))
        x, y = (int(v) for v in rng.integers(0, size - side + 1, 2))
        sprite = sprite_of(images[k // copies], side)
        frames[k, y:y + side, x:x + side] = np.clip(sprite * 255 + 0.5, 0, 255).astype(np.uint8)
    return frames, np.repeat(labels, copies)


class DigitRecogniser:
    """Says which digit a frame shows, fitted on the held-out digits (module docstring)."""

    def __init__(self, seed: int = 0):
        from sklearn.neural_network import MLPClassifier

        rng = np.random.default_rng(seed)
        frames, labels = rendered_digits(rng, "heldout")
        crops, targets = [], []
        for frame, label in zip(frames, labels):
            found = self.blobs(frame)[:1]
            crops += found
            targets += [int(label)] * len(found)
        for frame in not_digit_frames(rng, 1000):
            found = self.blobs(frame)[:3]
            crops += found
            targets += [NOT_A_DIGIT] * len(found)
        self.model = MLPClassifier((256, 64), max_iter=1000, random_state=seed)
        self.model.fit(np.stack(crops).reshape(len(crops), 64) / 16, np.array(targets))

    def blobs(self, frame: np.ndarray, background: float = 0.0) -> list[np.ndarray]:
        """The 8x8 (0..16) crops of the bright blobs of ``frame`` ((H, W, 3) or (H, W)
        uint8) over a plain ``background`` (grey level, 0..254), largest first."""
        from PIL import Image
        from scipy import ndimage

        luma = frame.astype(np.float32)
        if luma.ndim == 3:
            luma = luma @ LUMA_WEIGHTS
        if background:  # background..white -> 0..255
            luma = np.maximum(luma - background, 0) * (255 / (255 - background))
        top = float(luma.max())
        if top <= 0:
            return []
        regions, n = ndimage.label(luma > BLOB_LEVEL * top)
        boxes = [b for b, size in zip(ndimage.find_objects(regions),
                                      ndimage.sum_labels(np.ones_like(luma), regions,
                                                         range(1, n + 1)))
                 if size >= MIN_BLOB_PIXELS]
        crops = []
        for ys, xs in sorted(boxes, key=lambda b: -(b[0].stop - b[0].start)
                             * (b[1].stop - b[1].start)):
            side = max(ys.stop - ys.start, xs.stop - xs.start)
            square = np.zeros((side, side), np.float32)
            oy, ox = (side - (ys.stop - ys.start)) // 2, (side - (xs.stop - xs.start)) // 2
            square[oy:oy + ys.stop - ys.start, ox:ox + xs.stop - xs.start] = luma[ys, xs]
            # the digit set's 8x8 images span the digit's height and centre its width
            small = Image.fromarray(np.clip(square, 0, 255).astype(np.uint8)).resize(
                (8, 8), Image.Resampling.BOX)
            crop = np.asarray(small, np.float32) * (16 / 255)
            crops.append(crop)
        return crops

    def score(self, frame: np.ndarray, background: float = 0.0) -> tuple[int, float]:
        """``(digit, probability)`` of the most confidently recognised blob of ``frame``
        (over ``background``, see :meth:`blobs`); ``(-1, 0.0)`` when it has no blob."""
        crops = self.blobs(frame, background)
        if not crops:
            return -1, 0.0
        probs = self.model.predict_proba(np.stack(crops).reshape(len(crops), 64) / 16)
        probs = probs[:, self.model.classes_ != NOT_A_DIGIT]
        row, digit = np.unravel_index(int(np.argmax(probs)), probs.shape)
        return int(digit), float(probs[row, digit])

    def shows_digit_share(self, frames: np.ndarray, threshold: float = DIGIT_THRESHOLD,
                          background: float = 0.0) -> float:
        """Share of ``frames`` ((T, H, W, 3) uint8) whose best blob (over ``background``)
        scores >= ``threshold``."""
        if len(frames) == 0:
            return 0.0
        return sum(self.score(f, background)[1] >= threshold for f in frames) / len(frames)


def background_level(clips: list[np.ndarray]) -> float:
    """The plain background's grey level of digit clips ((T, H, W, 3) uint8 each): the
    median luma over all their pixels (digits cover well under half a frame), rounded
    down to 0 when under 8 (black)."""
    luma = np.concatenate([c.reshape(-1, 3) for c in clips]).astype(np.float32)
    level = float(np.median(luma @ LUMA_WEIGHTS))
    return 0.0 if level < 8 else min(level, 254.0)


@functools.cache
def default_recogniser() -> DigitRecogniser:
    """One :class:`DigitRecogniser` (seed 0) per process: fitting takes seconds."""
    return DigitRecogniser(seed=0)


def clip_frames(path) -> np.ndarray:
    """The RGB frames ``(T, H, W, 3)`` uint8 of a video file (MP4, H.264 Annex-B, ...),
    after :func:`avclm.codec.open_video`'s checks (a text or still-image file is no
    clip); :class:`InputError` naming the file otherwise."""
    import av

    from avclm.codec import open_video
    from codeclm.errors import InputError

    container, _ = open_video(path)
    try:
        with container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, OSError) as e:
        raise InputError(f"{path}: cannot decode video: {e}") from e
    if not frames:
        raise InputError(f"{path}: no video frames")
    return np.stack(frames)


def main(argv=None) -> int:
    """``python -m data_tools.digits CLIP [CLIP ...] [--threshold P]``: the share of frames
    in which :class:`DigitRecogniser` sees a digit, per clip and overall, printed as JSON
    (issue 17's measure for a digits video model)."""
    import json
    import sys

    from codeclm.cli import OneLineParser
    from codeclm.errors import CodecLMError

    parser = OneLineParser(prog="python -m data_tools.digits",
                           description=main.__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="+", help="video files (e.g. avclm generate -o DIR)")
    parser.add_argument("--threshold", type=float, default=DIGIT_THRESHOLD,
                        help="probability a frame's best blob needs (default: %(default)s)")
    parser.add_argument("--background", type=float, default=0.0,
                        help="grey level of the digits' plain background: 0 (black, "
                        "source digits) or 128 (digits-on-grey) (default: 0)")
    args = parser.parse_args(argv)
    try:
        if not 0 <= args.background < 255:
            raise ConfigError(f"--background must be in [0, 255), got {args.background}")
        recogniser = default_recogniser()
        shares = {str(p): recogniser.shows_digit_share(clip_frames(p), args.threshold,
                                                       args.background)
                  for p in args.clips}
    except CodecLMError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    report = {"threshold": args.threshold, "background": args.background, "clips": len(shares),
              "share_of_frames_with_digit": float(np.mean(list(shares.values()))),
              "per_clip": shares}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
