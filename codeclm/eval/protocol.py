"""What every evaluation protocol (``jpeglm.evaluation``, ``avclm.evaluation``,
:mod:`codeclm.eval.classes`) shares: the settings every protocol has (:class:`EvalConfig`,
and :class:`ScoredEvalConfig` for the ones that score against real media), the sampling
settings it records and the per-sample generator seeds."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass
class EvalConfig:
    """Settings every eval protocol has. ``seeds``: one full set of samples each;
    ``sampling``: a :class:`codeclm.generation.sampling.SamplingConfig` (its seed is
    replaced per sample; None: the defaults); ``batch``: samples generated together (never
    changes a sample); ``device``: for the model and features (None: CUDA if available);
    ``dtype``: the model's dtype name when the protocol loads it (``float32``,
    ``bfloat16``, ``float16``; None: the device's default); ``quiet``: no progress bars;
    ``overwrite``: remove an earlier run's samples and records in the output directory
    first (:mod:`codeclm.eval.run_record`; without it a directory holding another run is
    refused)."""

    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    sampling: object = None
    batch: int = 1
    device: str | None = None
    dtype: str | None = None
    quiet: bool = False
    overwrite: bool = False

    def check(self) -> None:
        """Range checks that need no model (typed one-line errors)."""
        from . import runner

        runner.check_common(self)


@dataclasses.dataclass
class ScoredEvalConfig(EvalConfig):
    """An eval that scores its samples against real media. ``extractor``: the FID
    feature net (``inception`` needs ``weights``); ``feature_batch``: images per feature
    forward; ``fid_backend``: ``torchmetrics`` or ``fast``; ``shards``: held-out shard
    directory for bits per byte (``bpb_blocks`` at most); ``cfg_scale``: the guidance scale
    whenever a sample is asked for a class (None: 1, plain conditional)."""

    extractor: str = "inception"
    weights: str | None = None
    feature_batch: int = 32
    fid_backend: str = "torchmetrics"
    shards: str | os.PathLike | None = None
    bpb_blocks: int | None = None
    cfg_scale: float | None = None

    def check(self) -> None:
        super().check()
        eval_scale(self.cfg_scale)


def eval_scale(cfg_scale: float | None) -> float:
    """The guidance scale the prompting evals use: ``--cfg-scale``, default 1 (plain
    conditional sampling: the model's own conditional distribution, no second row)."""
    from ..class_args import check_scale

    return 1.0 if cfg_scale is None else check_scale(cfg_scale)


def load_eval_model(model, modality: str, config: EvalConfig, threads: int | None = None):
    """``model`` (a ``LoadedModel``, a model directory, or None: the bundled one) loaded
    on ``config.device`` in ``config.dtype`` with ``threads`` CPU threads (None: chosen
    for its size; :func:`codeclm.generation.loading.load_model`; a ``LoadedModel`` is
    returned as it is)."""
    from ..generation.loading import load_model

    dtype = None
    if config.dtype is not None:
        import torch

        dtype = getattr(torch, config.dtype)
    return load_model(model, modality, config.device, dtype, threads=threads)


def sampling_or_default(sampling=None):
    """``sampling`` (a :class:`codeclm.generation.sampling.SamplingConfig`), or the defaults
    (temperature 1, top-k 50, top-p 0.9, the JPEG-LM public code's)."""
    if sampling is not None:
        return sampling
    from ..generation.sampling_config import SamplingConfig

    return SamplingConfig()


def sampling_record(sampling=None) -> dict:
    """The sampling settings as recorded in results.json and run.json (None: a filter
    that is off). ``mask_order`` is recorded unless it is ``"mask-first"``, the only
    order before the option existed: a run recorded then resumes with
    ``--mask-order mask-first``, and a run without it is not mistaken for one."""
    sampling = sampling_or_default(sampling)
    out = {"temperature": sampling.temperature, "top_k": sampling.top_k or None,
           "top_p": sampling.top_p if sampling.top_p is not None and sampling.top_p < 1.0
           else None}
    if sampling.mask_order != "mask-first":
        out["mask_order"] = sampling.mask_order
    return out


def sample_config(sampling, seed: int, index: int):
    """The sampling config of sample ``index`` under run seed ``seed``: ``sampling`` with
    the seed :func:`codeclm.eval.runner.sample_seed` gives it."""
    from .runner import sample_seed

    return dataclasses.replace(sampling_or_default(sampling), seed=sample_seed(seed, index))
