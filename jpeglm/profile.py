"""The canonical JPEG profile: every parameter that turns an image into JPEG-LM bytes.

A :class:`JpegProfile` is frozen (hashable, so codec caches key on it) and is saved
as ``profile.json`` beside every model and shard set (``codeclm.profile``). Two
named profiles exist: ``paper`` (256x256, the JPEG-LM setting) and ``tiny``
(64x64, identical settings, for tests and CPU demos).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from codeclm.errors import ProfileError

#: subsampling name -> (Pillow's integer code, MCU width, MCU height) in pixels
SUBSAMPLING = {
    "4:4:4": (0, 8, 8),
    "4:2:2": (1, 16, 8),
    "4:2:0": (2, 16, 16),
}

#: Pillow resampling filters a profile may name
RESAMPLE = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")

#: how an input whose aspect ratio differs from the profile's is fitted
FIT = ("cover-center-crop",)


@dataclass(frozen=True)
class JpegProfile:
    """Fixed JPEG encoder settings; images are ``width`` x ``height`` RGB pixels.

    Encoding (see :mod:`jpeglm.codec`): the input is converted to 8-bit RGB (alpha
    composited over ``alpha_background``), fitted by ``fit`` = ``"cover-center-crop"``
    (scale so the short side matches, center-crop the long side; done in one resampling
    step with ``resample``), then saved by Pillow/libjpeg as a baseline JPEG with
    ``quality``, ``subsampling``, a restart marker every ``restart_interval`` MCUs and
    the standard (Annex K) Huffman tables (``optimize_huffman=False``). The modeled
    bytes are the abbreviated stream: DQT/DHT tables stripped (``strip_tables``).
    """

    #: "jpeg" for every JPEG profile; a class attribute, not a dataclass field
    modality: ClassVar[str] = "jpeg"

    name: str
    width: int = 256
    height: int = 256
    quality: int = 25
    subsampling: str = "4:2:0"
    #: MCUs between restart markers; 1 makes every MCU its own byte-aligned unit
    restart_interval: int = 1
    #: baseline sequential DCT (SOF0), 8-bit quantization tables
    baseline: bool = True
    #: False: libjpeg's standard Huffman tables (Pillow ``optimize=False``)
    optimize_huffman: bool = False
    #: modeled bytes omit DQT/DHT (Pillow ``streamtype=2``); ``to_jpeg`` re-attaches them
    strip_tables: bool = True
    fit: str = "cover-center-crop"
    resample: str = "bicubic"
    #: RGB colour that transparent pixels are composited over (0..255 each)
    alpha_background: tuple[int, int, int] = (255, 255, 255)
    #: rotate/flip by the EXIF orientation tag before fitting
    exif_transpose: bool = True

    def __post_init__(self) -> None:
        if self.subsampling not in SUBSAMPLING:
            raise ProfileError(f"profile {self.name!r}: subsampling {self.subsampling!r} "
                               f"is not one of {sorted(SUBSAMPLING)}")
        _, mw, mh = SUBSAMPLING[self.subsampling]
        if not (isinstance(self.width, int) and isinstance(self.height, int)
                and self.width > 0 and self.height > 0
                and self.width % mw == 0 and self.height % mh == 0):
            raise ProfileError(f"profile {self.name!r}: {self.width}x{self.height} is not a "
                               f"positive multiple of the {mw}x{mh} MCU")
        if not 1 <= self.quality <= 100:
            raise ProfileError(f"profile {self.name!r}: quality {self.quality} not in 1..100")
        if self.restart_interval != 1:
            raise ProfileError(f"profile {self.name!r}: restart_interval must be 1 "
                               "(units are single MCUs)")
        if not self.baseline or self.optimize_huffman or not self.strip_tables:
            raise ProfileError(f"profile {self.name!r}: only baseline JPEG with standard "
                               "Huffman tables and stripped tables is supported")
        if self.fit not in FIT:
            raise ProfileError(f"profile {self.name!r}: fit {self.fit!r} not in {FIT}")
        if self.resample not in RESAMPLE:
            raise ProfileError(f"profile {self.name!r}: resample {self.resample!r} "
                               f"not in {RESAMPLE}")
        bg = tuple(self.alpha_background)
        if len(bg) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in bg):
            raise ProfileError(f"profile {self.name!r}: alpha_background must be 3 ints 0..255")

    # -- derived geometry -------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, Pillow's order."""
        return (self.width, self.height)

    @property
    def mcu_width(self) -> int:
        """MCU width in pixels (16 for 4:2:0)."""
        return SUBSAMPLING[self.subsampling][1]

    @property
    def mcu_height(self) -> int:
        """MCU height in pixels (16 for 4:2:0)."""
        return SUBSAMPLING[self.subsampling][2]

    @property
    def mcus_per_row(self) -> int:
        """MCUs across the image (paper: 16)."""
        return self.width // self.mcu_width

    @property
    def mcus_per_column(self) -> int:
        """MCU rows down the image (paper: 16)."""
        return self.height // self.mcu_height

    @property
    def mcu_count(self) -> int:
        """MCUs per image = units per sample (paper: 256, tiny: 16)."""
        return self.mcus_per_row * self.mcus_per_column

    @property
    def pixels(self) -> int:
        """Pixels per image (width * height)."""
        return self.width * self.height

    @property
    def pixel_values(self) -> int:
        """Raw 8-bit values one image stands for (width * height * 3)."""
        return self.pixels * 3

    def pillow_save_kwargs(self, streamtype: int = 2) -> dict:
        """Keyword arguments for ``PIL.Image.save(..., "JPEG", **kw)``.

        ``streamtype``: 0 full stream, 1 tables only, 2 abbreviated image (no tables).
        ``comment=b""`` stops Pillow copying an input JPEG's COM segment.
        """
        return {"quality": self.quality, "subsampling": SUBSAMPLING[self.subsampling][0],
                "restart_marker_blocks": self.restart_interval, "optimize": False,
                "progressive": False, "streamtype": streamtype, "comment": b"", "exif": b"",
                "icc_profile": None, "keep_rgb": False}


PROFILES: dict[str, JpegProfile] = {
    "paper": JpegProfile(name="paper"),
    "tiny": JpegProfile(name="tiny", width=64, height=64),
}


def get(name: str) -> JpegProfile:
    """The named JPEG profile; :class:`ProfileError` lists the known names."""
    if isinstance(name, JpegProfile):
        return name
    if name not in PROFILES:
        raise ProfileError(f"unknown jpeg profile {name!r}; known: {', '.join(sorted(PROFILES))}")
    return PROFILES[name]
