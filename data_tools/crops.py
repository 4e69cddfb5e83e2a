"""Seeded random crops of an image at the profile's size (``images --crops N``).

The paper makes one sample per image: the whole image scaled so its short side fills
the profile's size, center-cropped (``jpeglm.codec.prepare``). A small collection can
add random crops: windows of exactly ``profile.width x profile.height`` pixels of the
image at its own resolution (an image smaller than that on a side is first scaled up,
as the fit crop would), placed by a generator seeded with (seed, file, crop index), so
the same command always cuts the same windows.
"""

from __future__ import annotations

import random

from PIL import Image

from codeclm.errors import InputError


def crop_box(width: int, height: int, size: tuple[int, int], rng: random.Random
             ) -> tuple[float, int, int]:
    """``(scale, left, top)``: scale the ``width x height`` image by ``scale`` (>= 1; 1
    unless a side is smaller than ``size``) and cut ``size`` (w, h) pixels at
    (left, top) of the scaled image."""
    tw, th = size
    scale = max(1.0, tw / width, th / height)
    sw, sh = max(tw, round(width * scale)), max(th, round(height * scale))
    return scale, rng.randint(0, sw - tw), rng.randint(0, sh - th)


def crop_image(path: str, profile, seed: int, rel: str, index: int) -> Image.Image:
    """Random crop ``index`` of the image at ``path`` (``rel``: its name in the folder,
    part of the seed): RGB, ``profile.size``. Raises InputError."""
    from jpeglm.codec import RESAMPLE_FILTERS, load_image, to_rgb

    im = load_image(path)
    try:
        if profile.exif_transpose and im.getexif().get(0x0112, 1) != 1:
            from PIL import ImageOps

            im = ImageOps.exif_transpose(im)
        im = to_rgb(im, profile.alpha_background)
    except (ValueError, OSError) as e:
        raise InputError(f"cannot convert {im.mode} image to RGB: {e}") from e
    rng = random.Random(f"{seed}\0{rel}\0{index}")
    scale, left, top = crop_box(im.width, im.height, profile.size, rng)
    if scale != 1.0:
        im = im.resize((max(profile.size[0], round(im.width * scale)),
                        max(profile.size[1], round(im.height * scale))),
                       RESAMPLE_FILTERS[profile.resample])
    return im.crop((left, top, left + profile.size[0], top + profile.size[1]))


def encode_crop(path: str, profile, seed: int, rel: str, index: int) -> bytes:
    """The canonical JPEG bytes of random crop ``index`` (see :func:`crop_image`)."""
    from jpeglm.codec import encode_image

    return encode_image(crop_image(path, profile, seed, rel, index), profile)
