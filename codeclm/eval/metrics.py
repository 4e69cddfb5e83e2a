"""Image/video quality metrics and bits per byte.

- FID: :func:`fid_from_features` (torchmetrics' ``FrechetInceptionDistance`` state and
  distance, fed precomputed features through an identity module, so features are
  extracted once and reused for every subset), :func:`fast_fid` (the same number from
  symmetric linear algebra only; used for per-class FID, where thousands of small sets
  would each cost torchmetrics a D x D ``eigvals``) and :func:`frechet_distance` (the
  pytorch-fid formula with ``scipy.linalg.sqrtm``; the tests compare all three).
- :func:`psnr` and :func:`ssim` on uint8 RGB or grey arrays.
- :func:`bits_per_byte`: a causal LM's cross-entropy over token blocks, in bits per byte
  of codec data covered (the training module's ``val/bpb``, computed outside Lightning).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..errors import InputError

LN2 = math.log(2.0)
#: PSNR reported for identical images (an infinite value cannot be averaged or put in JSON)
PSNR_CAP = 100.0


# ---------------------------------------------------------------------------- FID
def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` features -> (mean ``(D,)``, unbiased covariance ``(D, D)``), float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise InputError(f"feature statistics need an (N >= 2, D) array, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))`` (pytorch-fid's
    computation: ``scipy.linalg.sqrtm``, ``eps`` added to the diagonals when the product
    is singular, imaginary rounding residue dropped)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise InputError(f"mismatched statistics: {mu1.shape} {s1.shape} vs {mu2.shape} {s2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def _identity_extractor(dim: int):
    """An identity "feature extractor" of width ``dim``: torchmetrics' FID runs its module
    on what update() gets, so this lets it accumulate precomputed features."""
    import torch

    class Precomputed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.num_features = dim

        def forward(self, x):
            return x

    return Precomputed()


def fid_from_features(real: np.ndarray, fake: np.ndarray, device: str = "cpu",
                      chunk: int = 4096) -> float:
    """FID between two feature sets ``(N1, D)`` and ``(N2, D)`` (N >= 2 each), computed by
    ``torchmetrics.image.fid.FrechetInceptionDistance`` in float64 on ``device`` (its
    ``eigvals`` of a D x D product takes ~10-40 s on a CPU at D = 2048; use
    :func:`fast_fid` where many small sets are compared)."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _check_sets(real, fake)
    metric = FrechetInceptionDistance(feature=_identity_extractor(real.shape[1]),
                                      normalize=True).to(device)
    for feats, is_real in ((real, True), (fake, False)):
        for i in range(0, len(feats), chunk):
            metric.update(torch.from_numpy(feats[i:i + chunk]).to(device), real=is_real)
    return float(metric.compute())


def _check_sets(real, fake) -> tuple[np.ndarray, np.ndarray]:
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise InputError(f"FID needs two (N, D) feature arrays of the same D, got "
                         f"{real.shape} and {fake.shape}")
    if len(real) < 2 or len(fake) < 2:
        raise InputError(f"FID needs at least 2 images in each set (got {len(real)} real, "
                         f"{len(fake)} generated)")
    return real, fake


def fast_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """The same FID as :func:`fid_from_features`, with symmetric linear algebra only.

    ``tr sqrt(S1 S2)`` is computed exactly, without the non-symmetric ``sqrtm``/``eigvals``:
    with centred features ``A`` (N1 x D), ``B`` (N2 x D) and ``S1 = A'A/(N1-1)``,
    ``S2 = B'B/(N2-1)``, the non-zero eigenvalues of ``S1 S2`` are the squared singular
    values of ``A B' / sqrt((N1-1)(N2-1))``, so the trace is that matrix's nuclear norm
    (an N1 x N2 SVD: milliseconds for per-class sets); when both sets are larger than D,
    ``tr sqrt(S1^1/2 S2 S1^1/2)`` from two D x D ``eigh`` instead."""
    real, fake = _check_sets(real, fake)
    n1, n2, d = len(real), len(fake), real.shape[1]
    mu1, mu2 = real.mean(0), fake.mean(0)
    a, b = real - mu1, fake - mu2
    tr1, tr2 = float((a * a).sum()) / (n1 - 1), float((b * b).sum()) / (n2 - 1)
    if min(n1, n2) <= d:
        m = (a @ b.T) / math.sqrt((n1 - 1) * (n2 - 1))
        tr_sqrt = float(np.linalg.svd(m, compute_uv=False).sum())
    else:
        s1, s2 = a.T @ a / (n1 - 1), b.T @ b / (n2 - 1)
        w, v = np.linalg.eigh(s1)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + tr1 + tr2 - 2.0 * tr_sqrt)


# ---------------------------------------------------------------------------- PSNR / SSIM
def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise InputError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise InputError(f"expected an (H, W) or (H, W, C) image, got shape {a.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels:
    ``10 log10(data_range^2 / MSE)``; :data:`PSNR_CAP` for identical images."""
    x, y = _pair(a, b)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(data_range ** 2 / mse))


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of ``(C, H, W)`` with the 1-D window ``g``."""
    from numpy.lib.stride_tricks import sliding_window_view

    k = len(g)
    rows = sliding_window_view(img, k, axis=2) @ g           # (C, H, W-k+1)
    return sliding_window_view(rows, k, axis=1) @ g          # (C, H-k+1, W-k+1)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> float:
    """Structural similarity (Wang et al. 2004) with an ``win_size`` x ``win_size``
    Gaussian window (``sigma``), computed per channel and averaged over pixels and
    channels. Borders are reflect-padded by ``win_size // 2`` (``dcb|abcd|cba``, as
    torchmetrics does), so the SSIM map has the image's size. ``a``, ``b``: (H, W) or
    (H, W, C) arrays with values in ``[0, data_range]``. 1.0 for identical images."""
    x, y = _pair(a, b)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    x, y = x.transpose(2, 0, 1), y.transpose(2, 0, 1)
    pad = win_size // 2
    if min(x.shape[1:]) <= pad:
        raise InputError(f"SSIM needs images larger than {pad} pixels per side, got {x.shape[1:]}")
    padw = ((0, 0), (pad, pad), (pad, pad))
    x, y = np.pad(x, padw, mode="reflect"), np.pad(y, padw, mode="reflect")
    g = _gaussian_window(win_size, sigma)
    mx, my = _filter(x, g), _filter(y, g)
    sxx = np.maximum(_filter(x * x, g) - mx * mx, 0.0)
    syy = np.maximum(_filter(y * y, g) - my * my, 0.0)
    sxy = _filter(x * y, g) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(smap.mean())


# ---------------------------------------------------------------------------- bits per byte
def bits_per_byte(model, blocks: Iterable, token_nbytes, device: str = "cpu") -> dict:
    """Cross-entropy of ``model`` over token blocks, per token and per byte.

    ``blocks``: iterable of ``(B, T+1)`` int64 tensors (the model reads ``[:, :-1]`` and is
    scored on ``[:, 1:]``, as in training); ``token_nbytes``: ``(vocab,)`` int64 tensor of
    the bytes each token covers (0 for special tokens;
    ``codeclm.lightning_module.token_byte_lengths``). Returns ``{"loss": nats per target
    token, "bpb": bits per byte covered, "tokens", "bytes", "blocks"}`` (sums over all
    blocks, so blocks of any batch size weigh by their tokens).
    """
    import torch
    import torch.nn.functional as F

    nbytes_of = token_nbytes.to(device)
    nats = 0.0
    tokens = nbytes = nblocks = 0
    with torch.inference_mode():
        for batch in blocks:
            batch = batch.to(device)
            inp, tgt = batch[:, :-1], batch[:, 1:]
            logits = model(input_ids=inp, use_cache=False).logits
            nats += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                          tgt.reshape(-1), reduction="sum"))
            tokens += tgt.numel()
            nbytes += int(nbytes_of[tgt].sum())
            nblocks += batch.shape[0]
    if tokens == 0:
        raise InputError("no token blocks to score")
    return {"loss": nats / tokens, "bpb": nats / max(nbytes, 1) / LN2, "tokens": tokens,
            "bytes": nbytes, "blocks": nblocks}


FID_BACKENDS = ("torchmetrics", "fast")


def fid(real: np.ndarray, fake: np.ndarray, backend: str = "torchmetrics",
        device: str = "cpu") -> float:
    """FID of two feature sets by ``backend``: "torchmetrics" (:func:`fid_from_features`,
    on ``device``) or "fast" (:func:`fast_fid`, CPU, symmetric algebra only)."""
    if backend == "torchmetrics":
        return fid_from_features(real, fake, device=device)
    if backend == "fast":
        return fast_fid(real, fake)
    raise InputError(f"unknown FID backend {backend!r}; choose one of {', '.join(FID_BACKENDS)}")


def grouped_fid(real: np.ndarray, fake: np.ndarray, groups: list) -> dict:
    """Per-group FID for aligned feature sets (row ``i`` of ``real`` and of ``fake`` belong
    to item ``i``, whose group, e.g. its class, is ``groups[i]``; None = no group).
    Returns ``{group: {"n": items, "fid": float or None (fewer than 2 items)}}``, computed
    with :func:`fast_fid` (thousands of classes stay cheap)."""
    real, fake = np.asarray(real), np.asarray(fake)
    if not (len(real) == len(fake) == len(groups)):
        raise InputError(f"grouped FID needs aligned sets: {len(real)} real, {len(fake)} "
                         f"generated, {len(groups)} labels")
    out = {}
    for g in sorted({g for g in groups if g is not None}, key=str):
        idx = [i for i, x in enumerate(groups) if x == g]
        out[g] = {"n": len(idx), "fid": fast_fid(real[idx], fake[idx]) if len(idx) >= 2 else None}
    return out
