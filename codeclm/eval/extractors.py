"""FID feature extractors: RGB images -> feature vectors.

Every extractor is a ``torch.nn.Module`` with an int ``num_features`` (what
``torchmetrics.image.fid.FrechetInceptionDistance(feature=...)`` asks of a custom
module) that maps uint8 ``(N, 3, H, W)`` to float ``(N, num_features)``:

- ``inception``: the FID InceptionV3 (:mod:`.inception`), 2048-d, weights from a local
  file (``--weights PATH`` or ``$CODECLM_INCEPTION_WEIGHTS``; never downloaded). Scores
  are on the published scale only with the standard weights file.
- ``pixels``: weight-free, 240-d: the image box-downsampled to 8x8 RGB (192 values) plus
  a 16-bin histogram per channel (48 values), all in [0, 1]. For smoke tests and CI:
  its "FID" is a distance between pixel statistics, not comparable to published FID.

:func:`extract` runs an extractor over a list of ``(H, W, 3)`` uint8 arrays in batches.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from . import inception

EXTRACTORS = ("inception", "pixels")
WEIGHTS_ENV = "CODECLM_INCEPTION_WEIGHTS"


class PixelFeatures(nn.Module):
    """Weight-free features: ``grid`` x ``grid`` box-averaged RGB + ``bins``-bin histograms
    per channel (fractions of pixels); ``(N, 3, H, W)`` uint8 -> ``(N, 3*grid^2 + 3*bins)``."""

    def __init__(self, grid: int = 8, bins: int = 16):
        super().__init__()
        self.grid, self.bins = grid, bins
        self.num_features = 3 * grid * grid + 3 * bins

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        low = nn.functional.adaptive_avg_pool2d(x, self.grid).flatten(1)
        idx = (x.clamp(0, 1) * self.bins).long().clamp(max=self.bins - 1).flatten(2)  # (N,3,HW)
        hist = torch.zeros(x.shape[0], 3, self.bins, device=x.device)
        hist.scatter_add_(2, idx, torch.ones_like(idx, dtype=hist.dtype))
        hist = hist / idx.shape[2]
        return torch.cat([low, hist.flatten(1)], 1)


def missing_weights_message() -> str:
    """The one line a run without Inception weights fails with."""
    return (f"FID with --extractor inception needs the pytorch-fid weights file "
            f"{inception.WEIGHTS_FILE} (an asset of the mseitzer/pytorch-fid GitHub release "
            f"'fid_weights': {inception.WEIGHTS_URL}); download it where there is network and pass "
            f"--weights PATH or set {WEIGHTS_ENV}=PATH (or use --extractor pixels for a "
            f"weight-free smoke test)")


def resolve_weights(path: str | os.PathLike | None) -> Path:
    """``--weights`` or ``$CODECLM_INCEPTION_WEIGHTS``; ConfigError (one line) if neither
    names an existing file."""
    chosen = path or os.environ.get(WEIGHTS_ENV)
    if not chosen:
        raise ConfigError(missing_weights_message())
    p = Path(chosen).expanduser()
    if not p.is_file():
        raise ConfigError(f"{p}: no such file; " + missing_weights_message())
    return p


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_extractor(name: str, weights: str | os.PathLike | None = None,
                    device: str = "cpu") -> tuple[nn.Module, dict]:
    """(extractor module, info) for ``name`` in :data:`EXTRACTORS`.

    ``info`` goes into results.json: ``name``, ``num_features``, ``comparable_to_published``
    (True only for the inception extractor with the standard weights file, checked by
    the SHA-256 prefix in its name), and for inception ``weights`` and ``weights_sha256``.
    """
    if name == "pixels":
        net = PixelFeatures()
        info = {"name": "pixels", "num_features": net.num_features,
                "comparable_to_published": False}
    elif name == "inception":
        p = resolve_weights(weights)
        digest = sha256_of(p)
        net = inception.load_fid_inception(p)
        info = {"name": "inception", "num_features": net.num_features, "weights": str(p),
                "weights_sha256": digest,
                "comparable_to_published": digest.startswith(inception.WEIGHTS_SHA256_PREFIX)}
    else:
        raise ConfigError(f"unknown feature extractor {name!r}; choose one of "
                          f"{', '.join(EXTRACTORS)}")
    return net.to(device).eval(), info


def extract(net: nn.Module, images: Sequence[np.ndarray], batch: int = 32,
            device: str = "cpu") -> np.ndarray:
    """``(H, W, 3)`` uint8 images (same size within a batch) -> ``(N, D)`` float64 features."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            chunk = np.stack([np.asarray(im, np.uint8) for im in images[i:i + batch]])
            x = torch.from_numpy(chunk).permute(0, 3, 1, 2).contiguous().to(device)
            out.append(net(x).double().cpu().numpy())
    if not out:
        return np.zeros((0, getattr(net, "num_features", 0)), np.float64)
    return np.concatenate(out)


class FeatureCollector:
    """Feed images one at a time; they are run through ``net`` ``batch`` at a time, so only
    features (not images) are kept. :meth:`features` -> ``(N, D)`` float64."""

    def __init__(self, net: nn.Module, batch: int = 32, device: str = "cpu"):
        self.net, self.batch, self.device = net, max(1, batch), device
        self._pending: list[np.ndarray] = []
        self._done: list[np.ndarray] = []

    def add(self, image: np.ndarray) -> None:
        """One ``(H, W, 3)`` uint8 image (all images of a collector share one size)."""
        self._pending.append(np.asarray(image, np.uint8))
        if len(self._pending) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._done.append(extract(self.net, self._pending, self.batch, self.device))
            self._pending = []

    def features(self) -> np.ndarray:
        self._flush()
        if not self._done:
            return np.zeros((0, getattr(self.net, "num_features", 0)), np.float64)
        return np.concatenate(self._done)
