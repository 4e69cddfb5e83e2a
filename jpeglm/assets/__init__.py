"""Bundled sample images (procedural scenes and FFmpeg lavfi frames, ~125 KB in all).

They are real files in ordinary formats (JPEG, greyscale PNG, RGBA PNG) of varied
sizes and aspect ratios; tests and ``make demo`` encode them. Regenerate with
``python -m jpeglm.assets._make`` (deterministic).
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).parent


def sample_paths() -> list[Path]:
    """The bundled sample images, sorted by name."""
    return sorted(p for p in ASSETS_DIR.iterdir() if p.suffix in (".jpg", ".png"))
