"""Regenerate the bundled sample images (deterministic; run once, output is committed).

    .venv/bin/python -m jpeglm.assets._make

Procedural "natural-looking" scenes (numpy: fractal noise skies, ridges, textures)
plus a few frames from FFmpeg's lavfi sources (the imageio-ffmpeg binary). Sizes
and aspect ratios vary on purpose so that fitting (resize + center crop) is exercised;
one greyscale PNG and one RGBA PNG cover mode conversion. Total stays < 300 KB.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent


def fbm(shape: tuple[int, int], rng: np.random.Generator, beta: float = 2.0) -> np.ndarray:
    """Fractal (1/f^beta spectrum) noise, float in [0, 1], shape (H, W)."""
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    spec[0, 0] = 0
    a = np.fft.irfft2(spec, s=(h, w))
    return (a - a.min()) / (a.max() - a.min())


def landscape(rng, w=400, h=300) -> np.ndarray:
    """Sky with clouds, two mountain ridges, a grassy foreground; (H, W, 3) uint8."""
    y = np.linspace(0, 1, h)[:, None, None]
    sky = (1 - y) * np.array([70, 120, 200]) + y * np.array([190, 215, 240])
    clouds = fbm((h, w), rng, 3.0)[..., None]
    img = sky + np.clip(clouds - 0.55, 0, 1)[...] * 400 * np.array([1, 1, 1])
    for base, amp, col, beta in ((0.45, 0.18, (95, 105, 130), 2.0), (0.6, 0.12, (60, 85, 60), 1.8)):
        ridge = base * h + amp * h * (fbm((1, w), rng, beta)[0] - 0.5) * 2
        tex = fbm((h, w), rng, 1.2)[..., None]
        mask = (np.arange(h)[:, None] > ridge[None, :])[..., None]
        img = np.where(mask, np.array(col) * (0.75 + 0.5 * tex), img)
    grass = fbm((h, w), rng, 1.0)[..., None]
    fg = (np.arange(h)[:, None] > 0.8 * h)[..., None]
    img = np.where(fg, np.array([70, 120, 40]) * (0.6 + 0.8 * grass), img)
    return np.clip(img, 0, 255).astype(np.uint8)


def blobs(rng, w=300, h=300) -> np.ndarray:
    """Soft lit spheres (fruit-like) on a textured table; (H, W, 3) uint8."""
    yy, xx = np.mgrid[0:h, 0:w]
    wood = 0.5 + 0.5 * np.sin(xx / 7.0 + 6 * fbm((h, w), rng, 2.5))
    img = np.stack([140 + 60 * wood, 95 + 40 * wood, 60 + 20 * wood], -1)
    for _ in range(7):
        cx, cy, r = rng.uniform(40, w - 40), rng.uniform(40, h - 40), rng.uniform(25, 60)
        col = rng.uniform(40, 230, 3)
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / r ** 2
        inside = d2 < 1
        shade = np.sqrt(np.clip(1 - d2, 0, 1))
        light = np.exp(-(((xx - cx + r / 3) ** 2 + (yy - cy + r / 3) ** 2) / (r / 3) ** 2))
        sphere = col * (0.35 + 0.65 * shade[..., None]) + 120 * light[..., None]
        img = np.where(inside[..., None], sphere, img)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def marble(rng, w=240, h=320) -> np.ndarray:
    """Veined stone texture, portrait orientation; (H, W, 3) uint8."""
    yy, xx = np.mgrid[0:h, 0:w]
    t = np.sin((xx + yy) / 18.0 + 5 * fbm((h, w), rng, 3.2))
    v = 0.5 + 0.5 * t
    img = np.stack([200 * v + 40, 190 * v + 40, 175 * v + 50], -1)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def grey_gradient(rng, w=192, h=144) -> np.ndarray:
    """Greyscale shaded gradient with mild grain; (H, W) uint8 (an 'L' image)."""
    yy, xx = np.mgrid[0:h, 0:w]
    a = 40 + 150 * (xx / w) * (0.6 + 0.4 * np.cos(yy / h * np.pi)) + 40 * fbm((h, w), rng, 2.5)
    return np.clip(a + rng.normal(0, 2, a.shape), 0, 255).astype(np.uint8)


def rgba_badge(rng, w=128, h=128) -> np.ndarray:
    """Coloured discs on a transparent background; (H, W, 4) uint8."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w, 4), np.uint8)
    for cx, cy, r, col in ((48, 48, 36, (220, 60, 60)), (80, 72, 30, (60, 120, 220)),
                           (60, 96, 22, (240, 200, 40))):
        m = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        out[m, :3] = col
        out[m, 3] = 255
    return out


def lavfi(src: str, path: Path) -> None:
    """Render one frame of an FFmpeg lavfi source to ``path``."""
    import imageio_ffmpeg

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as d:
        png = Path(d) / "f.png"
        subprocess.run([ff, "-v", "error", "-f", "lavfi", "-i", src, "-frames:v", "1", "-y",
                        str(png)], check=True)
        im = Image.open(png).convert("RGB")
        im.save(path, quality=88)


def main() -> None:
    rng = np.random.default_rng(20240816)
    Image.fromarray(landscape(rng)).save(HERE / "landscape.jpg", quality=88)
    Image.fromarray(blobs(rng)).save(HERE / "still_life.jpg", quality=88)
    Image.fromarray(marble(rng)).save(HERE / "marble.jpg", quality=88)
    Image.fromarray(grey_gradient(rng), "L").save(HERE / "grey_gradient.png", optimize=True)
    Image.fromarray(rgba_badge(rng), "RGBA").save(HERE / "badge_rgba.png", optimize=True)
    lavfi("mandelbrot=size=320x240:maxiter=200:start_scale=1.5", HERE / "mandelbrot.jpg")
    lavfi("testsrc2=size=320x240", HERE / "testsrc2.jpg")
    lavfi("perlin=size=256x192:octaves=4:persistence=0.6:xscale=4:yscale=4:"
          "random_mode=seed:seed=7,format=gray,"
          "lutrgb=r=val*0.9:g=val*0.7+30:b=255-val*0.6", HERE / "perlin.jpg")
    total = sum(p.stat().st_size for p in HERE.iterdir() if p.suffix in (".jpg", ".png"))
    print(f"{total / 1024:.1f} KB")


if __name__ == "__main__":
    main()
