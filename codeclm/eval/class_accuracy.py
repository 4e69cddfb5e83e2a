"""Class accuracy of generated media: a nearest-centroid classifier on simple features.

The classifier is fitted on the training media of a labelled set (``SRC/<class>/...``,
the ``--labels folder`` layout) and then names the class of each generated image (or
video frame); the class accuracy of a set of samples asked for class ``c`` is the
fraction the classifier puts in ``c``. numpy only, no learned extractor: features are
the mean colour of a 4x4 grid of cells (48 values, RGB in [0, 1]) plus the fraction of
"foreground" pixels (far from the image's median colour) in each cell (16 values), so
colour and coarse shape both count. Features are standardised with the training set's
mean and standard deviation; a sample goes to the class of the nearest centroid
(Euclidean distance).

Video clips (:func:`clip_features`): the features of the clip's first frame and of
its frame ``n - 1`` side by side (128 values), so the class's colour and its motion
(where the shape went) both count.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

GRID = 4


def features(image) -> np.ndarray:
    """A PIL image or ``(H, W, 3)`` uint8 array -> ``(64,)`` float64 features."""
    a = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image,
                   dtype=np.float64) / 255.0
    h, w = a.shape[:2]
    dist = np.abs(a - np.median(a.reshape(-1, 3), axis=0)).sum(-1)
    fg = dist > 0.3
    colour, fore = [], []
    for i in range(GRID):
        for j in range(GRID):
            ys = slice(i * h // GRID, (i + 1) * h // GRID)
            xs = slice(j * w // GRID, (j + 1) * w // GRID)
            colour.append(a[ys, xs].reshape(-1, 3).mean(0))
            fore.append(fg[ys, xs].mean())
    return np.concatenate([np.ravel(colour), fore])


def clip_features(frames: Sequence, n: int) -> np.ndarray:
    """Frames of a clip (``(H, W, 3)`` uint8 each) -> ``(128,)``: :func:`features` of
    frame 0 and of frame ``n - 1`` (the last one there is, for a shorter clip)."""
    if not len(frames):
        raise ValueError("a clip without frames has no features")
    return np.concatenate([features(frames[0]), features(frames[min(n, len(frames)) - 1])])


@dataclasses.dataclass
class CentroidClassifier:
    classes: list[str]
    centroids: np.ndarray  #: ``(classes, features)``, standardised
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, samples: Mapping[str, Sequence]) -> CentroidClassifier:
        """``{class: [images]}`` -> the fitted classifier."""
        return cls.fit_vectors({c: [features(x) for x in xs] for c, xs in samples.items()})

    @classmethod
    def fit_vectors(cls, vectors: Mapping[str, Sequence[np.ndarray]]) -> CentroidClassifier:
        """``{class: [feature vectors]}`` -> the fitted classifier."""
        classes = sorted(vectors)
        feats = {c: np.stack(vectors[c]) for c in classes}
        every = np.concatenate(list(feats.values()))
        mean, std = every.mean(0), every.std(0) + 1e-6
        cents = np.stack([((feats[c] - mean) / std).mean(0) for c in classes])
        return cls(classes, cents, mean, std)

    @classmethod
    def fit_folder(cls, root: str | os.PathLike, limit: int | None = None) -> CentroidClassifier:
        """Fit on ``root/<class>/*`` images (the first ``limit`` of each class, sorted)."""
        from PIL import Image

        out = {}
        for d in sorted(p for p in Path(root).iterdir() if p.is_dir()):
            files = sorted(f for f in d.iterdir() if f.is_file())[:limit]
            out[d.name] = [Image.open(f).convert("RGB") for f in files]
        return cls.fit(out)

    def predict(self, images: Iterable) -> list[str]:
        return self.predict_vectors([features(i) for i in images])

    def predict_vectors(self, vectors: Sequence[np.ndarray]) -> list[str]:
        """The class of each feature vector (as :meth:`fit_vectors` was given)."""
        x = (np.stack(vectors) - self.mean) / self.std
        d = ((x[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        return [self.classes[k] for k in d.argmin(1)]

    def accuracy(self, images: Sequence, wanted: str) -> float:
        """Fraction of ``images`` classified as ``wanted``."""
        got = self.predict(images)
        return sum(g == wanted for g in got) / len(got)
