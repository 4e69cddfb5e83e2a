"""What every evaluation protocol (``jpeglm.evaluation``, ``avclm.evaluation``) shares:
the sampling settings it records and the per-sample generator seeds."""

from __future__ import annotations

import dataclasses

from .runner import sample_seed


def sampling_or_default(sampling=None):
    """``sampling`` (a :class:`codeclm.generation.sampling.SamplingConfig`), or the defaults
    (temperature 1, top-k 50, top-p 0.9, the JPEG-LM public code's)."""
    if sampling is not None:
        return sampling
    from ..generation.sampling import SamplingConfig

    return SamplingConfig()


def sampling_record(sampling=None) -> dict:
    """The sampling settings as recorded in results.json (None: a filter that is off)."""
    sampling = sampling_or_default(sampling)
    return {"temperature": sampling.temperature, "top_k": sampling.top_k or None,
            "top_p": sampling.top_p if sampling.top_p is not None and sampling.top_p < 1.0
            else None}


def sample_config(sampling, seed: int, index: int):
    """The sampling config of sample ``index`` under run seed ``seed``: ``sampling`` with
    the seed :func:`codeclm.eval.runner.sample_seed` gives it."""
    return dataclasses.replace(sampling_or_default(sampling), seed=sample_seed(seed, index))
