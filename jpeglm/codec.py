"""The canonical JPEG codec: image <-> JPEG-LM modeled bytes, MCU units, strict and tolerant decode.

Byte forms (for a profile ``p``):

* **modeled bytes** (what the language model reads and writes): the abbreviated
  stream Pillow writes with ``streamtype=2``: ``header(p)`` (SOI, APP0, SOF0, DRI,
  SOS; 59 bytes, identical for every image of a profile), then the scan: one
  entropy-coded segment per MCU, MCU ``i`` followed by ``RST(i mod 8)``, the last by EOI.
* **standalone JPEG**: the same with the quantization and Huffman tables
  (``tables(p)``) put back (:func:`to_jpeg`); byte-identical to Pillow's ordinary
  ``streamtype=0`` output and readable by any decoder.

Units (:func:`split_mcus`): unit ``i`` = the entropy-coded bytes of MCU ``i`` *plus
the restart marker that follows it*; the last unit has no marker (its EOI is the
trailer). So ``header + units[0] + ... + units[k-1]`` is exactly the stream cut
after MCU ``k-1``'s restart marker: a valid prompt, and what :func:`prompt_prefix` returns.

Decoding: :func:`decode` (strict) raises :class:`DecodeError` unless the stream is a
complete, well-formed stream of the profile: canonical header, every MCU Huffman-
decodes cleanly, RST0..RST7 in order, EOI, nothing after (checked in pure Python by
:mod:`jpeglm.scancheck`, because libjpeg/Pillow and FFmpeg only warn about, or
silently repair, corrupt entropy data). A prefix code cannot reveal every change:
an edit that leaves the bitstream grammatical (e.g. a flipped magnitude bit) decodes
silently in every decoder and passes here too. :func:`decode_tolerant` keeps the
intact leading MCUs, fills the rest with mid-grey and never raises on damaged data.
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
from functools import cache

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from codeclm.errors import DecodeError, EncodeError, InputError

from . import scancheck
from .profile import PROFILES, JpegProfile

#: default pixel limit for inputs (Pillow's own decompression-bomb warning threshold)
MAX_INPUT_PIXELS = 89_478_485

#: regex over bytes: a restart marker (it closes a unit)
RST_MARKER = rb"\xff[\xd0-\xd7]"
EOI = b"\xff\xd9"

#: Pillow resampling filter of each ``JpegProfile.resample`` name
RESAMPLE_FILTERS = {
    "nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING,
}
# Errors Pillow's plugins raise on malformed or truncated files.
_PIL_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error,
                    Image.DecompressionBombError)

ImageSource = Image.Image | str | os.PathLike | bytes | bytearray | memoryview


# ---------------------------------------------------------------------------- input
def load_image(src: ImageSource, max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """Open and fully decode an image (first frame) from a path, ``"-"`` (stdin), file
    bytes or a ``PIL.Image``. Raises :class:`InputError` for missing, empty, non-image,
    truncated or corrupt input and for more than ``max_pixels`` pixels (checked from
    the header, before decoding)."""
    from codeclm.io import read_input_bytes

    if isinstance(src, Image.Image):
        name, im = "image", src
    else:
        if isinstance(src, (bytes, bytearray, memoryview)):
            name, data = "image bytes", bytes(src)
            if not data:
                raise InputError("image bytes: empty input")
        else:
            name, data = str(src), read_input_bytes(src)
        try:
            with warnings.catch_warnings():
                # our own limit below replaces Pillow's warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as e:
            raise InputError(f"{name}: not an image file Pillow can read") from e
        except Image.DecompressionBombError as e:
            raise InputError(f"{name}: too many pixels ({e})") from e
        except _PIL_READ_ERRORS as e:
            raise InputError(f"{name}: unreadable image ({e})") from e
    w, h = im.size
    if w < 1 or h < 1:
        raise InputError(f"{name}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise InputError(f"{name}: {w}x{h} = {w * h} pixels is more than the limit of "
                         f"{max_pixels} (decompression bomb?)")
    try:
        im.load()
    except _PIL_READ_ERRORS as e:
        raise InputError(f"{name}: truncated or corrupt image ({e})") from e
    return im


def to_rgb(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """8-bit RGB; alpha/transparency composited over ``background``; 16-bit and
    float greyscale scaled to 0..255 (I;16: /257; I: /257 if any value > 255;
    F: x255 if all values <= 1)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0
        elif im.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if "transparency" in im.info and im.mode in ("P", "L", "RGB"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        out = Image.new("RGB", im.size, tuple(background))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def prepare(src: ImageSource, profile: JpegProfile = PROFILES["paper"],
            max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """The RGB ``profile.width x profile.height`` image that gets JPEG-encoded.

    EXIF orientation applied (if ``profile.exif_transpose``), converted to RGB, then
    fitted: scaled so the short side fills the target, long side center-cropped;
    one resampling step (``profile.resample``) over the crop box, so extreme
    aspect ratios never build a huge intermediate image.
    """
    im = load_image(src, max_pixels)
    try:
        if profile.exif_transpose and im.getexif().get(0x0112, 1) != 1:
            im = ImageOps.exif_transpose(im)
        im = to_rgb(im, profile.alpha_background)
    except (ValueError, OSError) as e:  # e.g. a mode Pillow cannot convert
        raise InputError(f"cannot convert {im.mode} image to RGB: {e}") from e
    w, h = im.size
    tw, th = profile.size
    if (w, h) != (tw, th):
        scale = max(tw / w, th / h)
        cw, ch = tw / scale, th / scale
        left, top = (w - cw) / 2, (h - ch) / 2
        im = im.resize((tw, th), RESAMPLE_FILTERS[profile.resample],
                       box=(left, top, left + cw, top + ch))
    return im


# ---------------------------------------------------------------------------- encode
def _save(im: Image.Image, profile: JpegProfile, streamtype: int) -> bytes:
    if getattr(im, "encoderinfo", None):
        # Pillow lets an image's own ``encoderinfo`` override save() arguments
        im = im.copy()
    buf = io.BytesIO()
    try:
        im.save(buf, "JPEG", **profile.pillow_save_kwargs(streamtype))
    except (OSError, ValueError) as e:
        raise EncodeError(f"Pillow could not encode the image: {e}") from e
    return buf.getvalue()


def encode_image(src: ImageSource, profile: JpegProfile = PROFILES["paper"],
                 max_pixels: int = MAX_INPUT_PIXELS) -> bytes:
    """An image (path, file bytes or PIL image) -> its modeled bytes (abbreviated
    JPEG, no tables) under ``profile``. Raises InputError / EncodeError."""
    data = _save(prepare(src, profile, max_pixels), profile, 2)
    if not data.startswith(header(profile)):
        raise EncodeError("Pillow wrote a header that differs from the profile's canonical "
                          "header (unexpected Pillow/libjpeg behaviour)")
    return data


encode_path = encode_image


@cache
def _reference(profile: JpegProfile) -> tuple[bytes, bytes, bytes]:
    """(modeled header, tables segments, standalone header) for ``profile``."""
    grey = Image.new("RGB", profile.size, (128, 128, 128))
    modeled = _save(grey, profile, 2)
    full = _save(grey, profile, 0)
    tstream = _save(grey, profile, 1)
    _, start = scancheck.segments(modeled)
    hdr = modeled[:start]
    tsegs, _ = scancheck.segments(tstream)
    tab = b"".join(tstream[s:e] for _, s, e in tsegs)
    _, fstart = scancheck.segments(full)
    if full[fstart:] != modeled[start:]:
        raise EncodeError("Pillow's full and abbreviated streams differ in scan data")
    return hdr, tab, full[:fstart]


def header(profile: JpegProfile = PROFILES["paper"]) -> bytes:
    """The constant start of every modeled stream of ``profile``: SOI, APP0 (JFIF),
    SOF0, DRI, SOS (59 bytes at 256x256 with Pillow 13 / libjpeg-turbo)."""
    return _reference(profile)[0]


def tables(profile: JpegProfile = PROFILES["paper"]) -> bytes:
    """The DQT and DHT marker segments Pillow writes for ``profile`` (no SOI/EOI),
    in Pillow's order: 2 DQT (luma, chroma) then 4 DHT (standard Annex K tables)."""
    return _reference(profile)[1]


def full_header(profile: JpegProfile = PROFILES["paper"]) -> bytes:
    """The constant start of every standalone JPEG of ``profile`` (tables included)."""
    return _reference(profile)[2]


@cache
def _layout(profile: JpegProfile) -> scancheck.Layout:
    lay = scancheck.layout(header(profile), tables(profile))
    if lay.n_mcus != profile.mcu_count:
        raise DecodeError(f"header has {lay.n_mcus} MCUs, profile {profile.mcu_count}")
    return lay


@cache
def blank_unit(profile: JpegProfile = PROFILES["paper"]) -> bytes:
    """Entropy-coded bytes of a mid-grey MCU (all DC differences 0, EOB), no marker."""
    return scancheck.blank_mcu(_layout(profile))


def to_jpeg(data: bytes, profile: JpegProfile = PROFILES["paper"]) -> bytes:
    """Modeled bytes -> a standalone JPEG: DQT segments inserted before SOF0, DHT
    segments after it (Pillow's layout). Works on damaged or truncated scans too (the
    scan is copied as is). Data that already carries DQT/DHT is returned unchanged.
    Raises DecodeError if the header cannot be parsed."""
    data = bytes(data)
    segs, start = scancheck.segments(data)
    if start < 0:
        raise DecodeError("no SOS segment: not an image stream")
    if any(m in (0xDB, 0xC4) for m, _, _ in segs):
        return data
    tab = tables(profile)
    tsegs, _ = scancheck.segments(b"\xff\xd8" + tab + EOI)
    dqt = b"".join(tab[s - 2:e - 2] for m, s, e in tsegs if m == 0xDB)
    dht = b"".join(tab[s - 2:e - 2] for m, s, e in tsegs if m == 0xC4)
    out = [data[:2]]
    for m, s, e in segs:
        if m == scancheck.SOF0:
            out += [dqt, data[s:e], dht]
        else:
            out.append(data[s:e])
    out.append(data[start:])
    return b"".join(out)


def to_modeled(data: bytes, profile: JpegProfile = PROFILES["paper"]) -> bytes:
    """Standalone (canonical) JPEG or modeled bytes -> modeled bytes. Raises
    DecodeError unless ``data`` starts with the profile's canonical header."""
    data = bytes(data)
    if data.startswith(header(profile)):
        return data
    fh = full_header(profile)
    if data.startswith(fh):
        return header(profile) + data[len(fh):]
    raise DecodeError(f"stream does not start with the canonical header of jpeg profile "
                      f"{profile.name!r} ({profile.width}x{profile.height}, q{profile.quality})")


# ---------------------------------------------------------------------------- units
def split_mcus(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    """Modeled (or standalone) bytes -> ``(header, units, trailer)``.

    ``header`` runs through the SOS segment. Unit ``i`` is MCU ``i``'s entropy-coded
    bytes *including the restart marker that closes it*; the final piece of the scan
    (after the last restart marker) is the last unit, without a marker, unless it is
    empty. ``trailer`` starts at the first marker that is not a restart marker (EOI,
    or whatever a damaged stream holds there) and is ``b""`` for a cut stream.
    ``header + b"".join(units) + trailer == data`` always.
    """
    data = bytes(data)
    _, start = scancheck.segments(data)
    if start < 0:
        raise DecodeError("no SOS segment: not an image stream")
    hdr, scan = data[:start], data[start:]
    units = []
    pos = 0
    trailer = b""
    for m in scancheck.MARKER.finditer(scan):
        e = m.start()
        if e + 1 < len(scan) and 0xD0 <= scan[e + 1] <= 0xD7:
            units.append(scan[pos:e + 2])
            pos = e + 2
        else:
            trailer = scan[e:]
            scan = scan[:e]
            break
    if pos < len(scan):
        units.append(scan[pos:])
    return hdr, units, trailer


def prompt_prefix(data: bytes, ratio: float, profile: JpegProfile = PROFILES["paper"]) -> bytes:
    """The completion prompt: header + the first ``floor(ratio * mcu_count)`` units
    (each closed by its restart marker), i.e. the top rows of MCUs in raster order.
    The paper's r = 0.25 / 0.5 / 0.75 give 64 / 128 / 192 of 256 MCUs. ``ratio`` in
    [0, 1]; a tiny epsilon absorbs float error (0.29 * 100 -> 29). ``ratio=1`` gives
    every unit but not the EOI; ``ratio=0`` gives the header alone."""
    if not 0.0 <= ratio <= 1.0:
        raise InputError(f"prompt ratio {ratio} is not in [0, 1]")
    hdr, units, _ = split_mcus(to_modeled(data, profile))
    k = math.floor(ratio * profile.mcu_count + 1e-9)
    if len(units) < k:
        raise DecodeError(f"stream has {len(units)} MCUs, the prompt needs {k}")
    return hdr + b"".join(units[:k])


# ---------------------------------------------------------------------------- decode
def _pillow_decode(jpeg: bytes, profile: JpegProfile) -> Image.Image:
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            im.load()
            im = im.convert("RGB") if im.mode != "RGB" else im.copy()
    except _PIL_READ_ERRORS as e:
        raise DecodeError(f"Pillow could not decode the stream: {e}") from e
    if im.size != profile.size:
        raise DecodeError(f"decoded {im.size}, profile {profile.name!r} is {profile.size}")
    return im


def check(data: bytes, profile: JpegProfile = PROFILES["paper"]) -> None:
    """Raise DecodeError unless ``data`` is a complete, valid canonical stream of
    ``profile`` (modeled or standalone): canonical header, ``mcu_count`` MCUs each
    Huffman-decoding cleanly, restart markers RST0..RST7 in order, EOI, nothing after."""
    modeled = to_modeled(data, profile)
    rep = scancheck.walk(modeled[len(header(profile)):], _layout(profile))
    if rep.error:
        raise DecodeError(rep.error)


def decode(data: bytes, profile: JpegProfile = PROFILES["paper"],
           strict: bool = True) -> Image.Image:
    """Modeled or standalone bytes -> RGB image of the profile's size.

    ``strict=True``: any corruption raises DecodeError (see :func:`check`).
    ``strict=False``: same as ``decode_tolerant(data, profile)[0]``.
    """
    if not strict:
        return decode_tolerant(data, profile)[0]
    check(data, profile)
    modeled = to_modeled(data, profile)
    return _pillow_decode(full_header(profile) + modeled[len(header(profile)):], profile)


def intact_units(data: bytes, profile: JpegProfile = PROFILES["paper"]) -> int:
    """How many MCUs from the start of ``data`` are valid and in place (0 if the
    header is not the profile's). Never raises on damaged data."""
    return _tolerant_walk(data, profile).n_intact


def _tolerant_walk(data: bytes, profile: JpegProfile) -> scancheck.Report:
    data = bytes(data)
    for hdr in (header(profile), full_header(profile)):
        if data.startswith(hdr):
            return scancheck.walk(data[len(hdr):], _layout(profile))
    return scancheck.Report(0, "header does not match the profile")


def decode_tolerant(data: bytes, profile: JpegProfile = PROFILES["paper"]
                    ) -> tuple[Image.Image, int]:
    """Possibly damaged or truncated bytes -> ``(RGB image of the profile's size,
    n_intact)``. The leading ``n_intact`` MCUs (see :func:`intact_units`) are kept;
    every later MCU is mid-grey (128, 128, 128). A stream whose header is not the
    profile's gives an all-grey image and 0. Never raises on damaged data."""
    rep = _tolerant_walk(data, profile)
    n = profile.mcu_count
    units = rep.units[:rep.n_intact] + [blank_unit(profile)] * (n - rep.n_intact)
    scan = b"".join(u + bytes((0xFF, 0xD0 + i % 8)) for i, u in enumerate(units[:-1]))
    jpeg = full_header(profile) + scan + units[-1] + EOI
    return _pillow_decode(jpeg, profile), rep.n_intact
