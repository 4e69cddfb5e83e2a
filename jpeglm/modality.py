"""JPEG's modality: its registry record and its :class:`codeclm.modality.Modality`.

Light at import time (the codec is imported on first use): shared code reads
:data:`RECORD` to learn what "jpeg" is without loading Pillow.
"""

from __future__ import annotations

import numpy as np

from codeclm.modality import ModalityRecord

from .profile import JpegProfile, get

RECORD = ModalityRecord(
    name="jpeg",
    command="jpeglm",
    media_kind="image",
    extensions=frozenset({".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".gif", ".webp", ".tif",
                          ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga"}),
    profiles="jpeglm.profile:PROFILES",
    profile_class="jpeglm.profile:JpegProfile",
    implementation="jpeglm.modality:JpegModality",
    # a restart marker FF D0..FF D7 closes an MCU; EOI FF D9 closes the last one
    unit_marker=rb"\xff[\xd0-\xd7]",
    marker_side="after",
    end_marker=rb"\xff\xd9",
    bundled_model="jpeglm/assets/model",
    description="JPEG-LM (images as JPEG bytes)",
    codec_versions="jpeglm.modality:codec_versions",
)


def codec_versions() -> dict[str, str]:
    """What makes the canonical bytes: Pillow and its libjpeg(-turbo) build."""
    import PIL
    from PIL import features

    jpeg = features.version("libjpeg_turbo")
    return {"pillow": PIL.__version__,
            "libjpeg": f"libjpeg-turbo {jpeg}" if jpeg else (features.version("jpg") or "unknown")}


class JpegModality:
    """The JPEG modality for one profile. Units are MCUs; a restart marker
    (:data:`RECORD` ``.unit_marker``) closes a unit, so the tokenizer never merges across it.
    """

    name = RECORD.name

    def __init__(self, profile: JpegProfile | str = "paper") -> None:
        self.profile = get(profile) if isinstance(profile, str) else profile

    def encode_path(self, path: str) -> bytes:
        """Image file -> modeled bytes (abbreviated JPEG). Raises InputError/EncodeError."""
        from . import codec

        return codec.encode_image(path, self.profile)

    def split_units(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """Modeled bytes -> (header, MCU units); ``header + b"".join(units)`` is ``data``
        without its trailer (EOI). Raises DecodeError if there is no SOS header."""
        from . import codec

        hdr, units, _ = codec.split_mcus(data)
        return hdr, units

    def decode_tolerant(self, data: bytes) -> list[np.ndarray]:
        """Possibly damaged modeled bytes -> ``[frame]``, one (H, W, 3) uint8 RGB array;
        MCUs after the first damaged one are mid-grey. Never raises on corrupt data."""
        from . import codec

        img, _ = codec.decode_tolerant(data, self.profile)
        return [np.asarray(img, dtype=np.uint8)]

    def pixels_per_sample(self) -> int:
        """H * W * 3 raw values per image (paper: 196608)."""
        return self.profile.pixel_values
