"""Shared fixtures for the JPEG codec tests: bundled samples and a zoo of odd images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from jpeglm.assets import sample_paths
from jpeglm.profile import PROFILES


@pytest.fixture(scope="session")
def paper():
    return PROFILES["paper"]


@pytest.fixture(scope="session")
def tiny():
    return PROFILES["tiny"]


@pytest.fixture(scope="session")
def samples():
    """Paths of the bundled sample images (8 files, JPEG and PNG)."""
    paths = sample_paths()
    assert len(paths) >= 6
    return paths


@pytest.fixture(scope="session")
def encoded_paper(samples, paper):
    """{path: modeled bytes} for every sample at the paper profile."""
    from jpeglm import codec

    return {p: codec.encode_image(p, paper) for p in samples}


@pytest.fixture(scope="session")
def encoded_tiny(samples, tiny):
    from jpeglm import codec

    return {p: codec.encode_image(p, tiny) for p in samples}


def _noise(rng, h, w, c=3):
    base = rng.integers(0, 256, (1, 1, c))
    grad = np.linspace(0, 1, w)[None, :, None] * rng.integers(-120, 120, (1, 1, c))
    return np.clip(base + grad + rng.normal(0, 25, (h, w, c)), 0, 255).astype(np.uint8)


def _jpeg_bytes(im, **kw):
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def varied_images(samples):
    """At least 30 (name, source) pairs: PIL images of every common mode, tiny and huge
    aspect ratios, plus file bytes carrying EXIF orientation, an ICC profile and a
    JPEG comment (things that must not leak into the canonical header)."""
    rng = np.random.default_rng(1234)
    out = []
    for i, (w, h) in enumerate([(256, 256), (64, 64), (1, 1), (2, 3), (7, 9), (17, 16),
                                (300, 200), (200, 300), (640, 480), (4000, 3), (3, 4000),
                                (1000, 10), (513, 257), (255, 255)]):
        out.append((f"rgb{w}x{h}", Image.fromarray(_noise(rng, h, w), "RGB")))
    rgb = Image.fromarray(_noise(rng, 120, 160), "RGB")
    out += [
        ("L", rgb.convert("L")),
        ("LA", rgb.convert("LA")),
        ("1", rgb.convert("1")),
        ("P", rgb.convert("P")),
        ("CMYK", rgb.convert("CMYK")),
        ("YCbCr", rgb.convert("YCbCr")),
        ("HSV", rgb.convert("HSV")),
        ("I;16", Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)),
        ("I", rgb.convert("I")),
        ("F", rgb.convert("F")),
    ]
    a = np.dstack([_noise(rng, 90, 150), rng.integers(0, 256, (90, 150, 1), dtype=np.uint8)])
    out.append(("RGBA", Image.fromarray(a, "RGBA")))
    clear = Image.fromarray(np.zeros((50, 80, 4), np.uint8), "RGBA")
    out.append(("RGBA-transparent", clear))
    ptr = rgb.convert("P")
    ptr.info["transparency"] = 0
    out.append(("P-transparency", ptr))
    # file bytes with metadata
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    out.append(("jpeg-exif-orient", _jpeg_bytes(rgb, exif=exif.tobytes(), quality=90)))
    out.append(("jpeg-comment", _jpeg_bytes(rgb, comment=b"hello comment", quality=90)))
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out.append(("jpeg-icc", _jpeg_bytes(rgb, icc_profile=icc, quality=90)))
    out.append(("jpeg-progressive", _jpeg_bytes(rgb, progressive=True)))
    out.append(("jpeg-cmyk", _jpeg_bytes(rgb.convert("CMYK"))))
    buf = io.BytesIO()
    Image.fromarray(_noise(rng, 40, 60), "RGB").save(buf, "GIF")
    out.append(("gif", buf.getvalue()))
    buf = io.BytesIO()
    Image.fromarray(_noise(rng, 40, 60), "RGB").save(buf, "WEBP")
    out.append(("webp", buf.getvalue()))
    out += [(p.name, p) for p in samples]
    assert len(out) >= 30
    return out
