"""What a modality contributes to the shared stages, as one small interface.

Shared code (data tools, training-time previews, the sampler's unit counting,
evaluation) talks to a modality only through :class:`Modality`. ``jpeglm`` and
``avclm`` each provide one implementation (``jpeglm.modality.JpegModality``,
``avclm.modality.AvcModality``); :func:`modality_for` builds it from a profile.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

IMPLEMENTATIONS = {
    "jpeg": "jpeglm.modality:JpegModality",
    "h264": "avclm.modality:AvcModality",
}


class Modality(Protocol):
    #: "jpeg" or "h264"
    name: str
    #: the codec profile (frozen dataclass) this instance encodes with
    profile: object
    #: regex (over bytes) of the marker that ends/starts a unit; the tokenizer never
    #: merges across it (JPEG: a restart marker; H.264: a start code)
    unit_marker: bytes
    #: "after" if the marker closes a unit (JPEG RST), "before" if it opens one (H.264 start code)
    marker_side: str

    def encode_path(self, path: str) -> bytes:
        """A media file on disk -> the canonical modeled bytes (raises typed errors)."""

    def split_units(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """Modeled bytes -> (header, units). ``header + b"".join(units)`` == ``data``
        up to a trailer; units are MCUs (JPEG) or NAL units (H.264)."""

    def decode_tolerant(self, data: bytes) -> list[np.ndarray]:
        """Possibly damaged modeled bytes -> RGB frames (H, W, 3) uint8 at the profile's
        size; never raises on corrupt data (an undecodable stream gives grey frames)."""

    def pixels_per_sample(self) -> int:
        """Raw pixel values (H * W * 3 * frames) one sample stands for."""


def modality_for(profile) -> Modality:
    """Build the Modality implementation that matches ``profile.modality``."""
    mod, cls = IMPLEMENTATIONS[profile.modality].split(":")
    return getattr(importlib.import_module(mod), cls)(profile)


def units_of(modality: Modality, data: bytes) -> Sequence[bytes]:
    return modality.split_units(data)[1]
