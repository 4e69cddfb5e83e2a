"""The H.264 side of codeclm's Modality interface (see codeclm/modality.py).

Modeled bytes are the canonical Annex-B stream of a clip: SPS and PPS (the header,
kept in the modeled bytes as the paper does), then one NAL unit per macroblock. A unit
is one NAL unit *with its own start code* in front; the start code is the marker the
tokenizer never merges across.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

import numpy as np

from codeclm.modality import ModalityRecord

from .nal import START_CODE_PATTERN
from .profile import AvcProfile

RECORD = ModalityRecord(
    name="h264",
    command="avclm",
    media_kind="video",
    extensions=frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg",
                          ".ts", ".flv", ".wmv", ".3gp", ".ogv", ".h264", ".264"}),
    profiles="avclm.profile:PROFILES",
    profile_class="avclm.profile:AvcProfile",
    implementation="avclm.modality:AvcModality",
    # a 3- or 4-byte start code opens every NAL unit (the 4-byte form wins when present)
    unit_marker=START_CODE_PATTERN,
    marker_side="before",
    bundled_model="avclm/assets/model",
    description="AVC-LM (videos as H.264 bytes)",
    codec_versions="avclm.modality:codec_versions",
)


def codec_versions() -> dict[str, str]:
    """What makes the canonical bytes: PyAV, libavcodec, libavformat, libswscale and the
    x264 core build."""
    import av

    libs = {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}
    return {"pyav": av.__version__, "libavcodec": libs.get("libavcodec", "?"),
            "libavformat": libs.get("libavformat", "?"),
            "libswscale": libs.get("libswscale", "?"), "x264": x264_core()}


@functools.cache
def x264_core() -> str:
    """x264's core build and revision (``"164 r3108 31e19f9"``), read from the version
    SEI of a one-frame encode (PyAV does not expose it otherwise); "unknown" if absent."""
    import av

    try:
        ctx = av.CodecContext.create("libx264", "w")
    except Exception:  # noqa: BLE001 - no libx264 in this PyAV build
        return "unavailable"
    ctx.width = ctx.height = 16
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"threads": "1"}
    frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
    data = b"".join(bytes(p) for p in ctx.encode(frame.reformat(format="yuv420p")))
    data += b"".join(bytes(p) for p in ctx.encode(None))
    m = re.search(rb"x264 - core (\d+)(?: (r\d+ [0-9a-f]+))?", data)
    if not m:
        return "unknown"
    return " ".join(x.decode() for x in m.groups() if x)


class AvcModality:
    """The H.264 modality for one profile; light at import (codec modules load on use)."""

    name = RECORD.name

    def __init__(self, profile: AvcProfile):
        if getattr(profile, "modality", None) != RECORD.name:
            from codeclm.errors import ProfileError

            raise ProfileError(f"AvcModality needs an h264 profile, got {profile!r}")
        self.profile = profile

    def encode_path(self, path: str) -> bytes:
        """A video file -> canonical Annex-B bytes (raises InputError/EncodeError)."""
        from .codec import encode_video

        return encode_video(path, self.profile)

    def split_units(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """``(header, units)``: header = any bytes before the first start code plus the
        leading SPS/PPS NAL units with their start codes; units = every following NAL
        unit with its start code. ``header + b"".join(units) == data`` exactly."""
        from . import nal as nalmod

        lead, units = nalmod.split_annexb_units(data)
        n = 0
        while n < len(units) and (nalmod.nal_type(nalmod.strip_start_code(units[n]) or b"\x00")
                                  in nalmod.PARAMETER_SET_TYPES):
            n += 1
        return lead + b"".join(units[:n]), units[n:]

    def decode_tolerant(self, data: bytes) -> list[np.ndarray]:
        """Possibly damaged bytes -> RGB frames (H, W, 3) uint8, one per picture found
        (error concealment inside pictures); ``profile.frames`` mid-grey frames if
        there is no picture at all. Never raises on corrupt data."""
        from .stream import decode_annexb

        frames = decode_annexb(data, self.profile, strict=False)
        if not frames:
            p = self.profile
            frames = [np.full((p.height, p.width, 3), 128, np.uint8) for _ in range(p.frames)]
        return frames

    def pixels_per_sample(self) -> int:
        """Raw pixel values one clip stands for: H * W * 3 * frames (paper: 1,658,880)."""
        return self.profile.pixels_per_clip
