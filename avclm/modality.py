"""The H.264 side of codeclm's Modality interface (see codeclm/modality.py).

Modeled bytes are the canonical Annex-B stream of a clip: SPS and PPS (the header,
kept in the modeled bytes as the paper does), then one NAL unit per macroblock. A unit
is one NAL unit *with its own start code* in front; the start code is the marker the
tokenizer never merges across.
"""

from __future__ import annotations

import numpy as np

from . import nal as nalmod
from .codec import encode_video
from .profile import AvcProfile
from .stream import decode_annexb


class AvcModality:
    name = "h264"
    #: a 3- or 4-byte start code opens every unit
    unit_marker = nalmod.START_CODE_RE.pattern
    marker_side = "before"

    def __init__(self, profile: AvcProfile):
        if getattr(profile, "modality", None) != "h264":
            from codeclm.errors import ProfileError

            raise ProfileError(f"AvcModality needs an h264 profile, got {profile!r}")
        self.profile = profile

    def encode_path(self, path: str) -> bytes:
        """A video file -> canonical Annex-B bytes (raises InputError/EncodeError)."""
        return encode_video(path, self.profile)

    def split_units(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """``(header, units)``: header = any bytes before the first start code plus the
        leading SPS/PPS NAL units with their start codes; units = every following NAL
        unit with its start code. ``header + b"".join(units) == data`` exactly."""
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
        frames = decode_annexb(data, self.profile, strict=False)
        if not frames:
            p = self.profile
            frames = [np.full((p.height, p.width, 3), 128, np.uint8) for _ in range(p.frames)]
        return frames

    def pixels_per_sample(self) -> int:
        """Raw pixel values one clip stands for: H * W * 3 * frames (paper: 1,658,880)."""
        return self.profile.pixels_per_clip
