"""The sampling settings (:class:`SamplingConfig`) and fresh seeds, without torch: a
command checks and records them (``eval -o DIR``'s run record) before torch loads."""

from __future__ import annotations

import dataclasses
import math
import os

from ..errors import ConfigError

#: how a constrained draw combines the mask with top-k / top-p (the first is the default)
MASK_ORDERS = ("filters-first", "mask-first")


def draw_seed() -> int:
    """A fresh random seed (32 bits) for a run given no ``seed``; reported in the stats."""
    return int.from_bytes(os.urandom(4), "little")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn. ``temperature`` 0 means greedy; ``top_k`` 0/None and
    ``top_p`` 1.0/None switch those filters off. Defaults are the JPEG-LM public code's
    (T=1.0, top-k 50, top-p 0.9); the paper also reports top-k 40/80, top-p 0.9/1.0.
    ``seed`` None draws a fresh seed (reported in the stats). ``mask_order``: how a
    constrained row combines its mask with the filters, ``"filters-first"`` (the
    model's own draw whenever it is allowed) or ``"mask-first"`` (Hugging Face's
    order); see :mod:`codeclm.generation.filters_first`."""

    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 0.9
    seed: int | None = None
    mask_order: str = "filters-first"

    def __post_init__(self):
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise ConfigError(f"top-k must be >= 0, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.mask_order not in MASK_ORDERS:
            raise ConfigError(f"mask order must be one of {', '.join(MASK_ORDERS)}, "
                              f"got {self.mask_order!r}")
