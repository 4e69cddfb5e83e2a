"""JPEG's implementation of :class:`codeclm.modality.Modality` (units are MCUs)."""

from __future__ import annotations

import numpy as np

from . import codec
from .profile import JpegProfile, get


class JpegModality:
    """The JPEG modality for one profile.

    Units are MCUs; a restart marker (``FF D0``..``FF D7``) *closes* a unit
    (``marker_side = "after"``), so the tokenizer never merges across it.
    """

    name = "jpeg"
    unit_marker = codec.RST_MARKER
    marker_side = "after"

    def __init__(self, profile: JpegProfile | str = "paper") -> None:
        self.profile = get(profile) if isinstance(profile, str) else profile

    def encode_path(self, path: str) -> bytes:
        """Image file -> modeled bytes (abbreviated JPEG). Raises InputError/EncodeError."""
        return codec.encode_image(path, self.profile)

    def split_units(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """Modeled bytes -> (header, MCU units); ``header + b"".join(units)`` is ``data``
        without its trailer (EOI). Raises DecodeError if there is no SOS header."""
        hdr, units, _ = codec.split_mcus(data)
        return hdr, units

    def decode_tolerant(self, data: bytes) -> list[np.ndarray]:
        """Possibly damaged modeled bytes -> ``[frame]``, one (H, W, 3) uint8 RGB array;
        MCUs after the first damaged one are mid-grey. Never raises on corrupt data."""
        img, _ = codec.decode_tolerant(data, self.profile)
        return [np.asarray(img, dtype=np.uint8)]

    def pixels_per_sample(self) -> int:
        """H * W * 3 raw values per image (paper: 196608)."""
        return self.profile.pixel_values
