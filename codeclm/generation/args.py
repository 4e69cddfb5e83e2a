"""The sampling flags every generating verb shares, and their range checks.

Kept free of torch so that a command checks its arguments (and exits on a bad one) in a
fraction of a second, before the model and torch are loaded. The generating verbs and the
eval verbs (:mod:`codeclm.eval.runner`) declare the flags here, once, and map them to a
:class:`~codeclm.generation.sampling.SamplingConfig` with :func:`sampling_config`.
"""

from __future__ import annotations

import argparse
import math

from ..errors import ConfigError
from ..threads import add_threads_argument
from .sampling_config import MASK_ORDERS


def add_model_arguments(parser, batch: bool = True) -> None:
    """The flags of every verb that runs a model: ``--model``, ``--device``, ``--dtype``,
    ``--batch`` (unless the verb defines its own) and ``--threads``."""
    parser.add_argument("--model", metavar="DIR", default=None,
                        help="model directory (made by `export`); default: the bundled model")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if "
                        "available, in bf16; else cpu, in fp32)")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="model dtype (default: float32 on CPU, bfloat16 on CUDA)")
    if batch:
        parser.add_argument("--batch", type=int, default=1, metavar="B",
                            help="samples generated together (default 1)")
    add_threads_argument(parser)


def add_sampling_flags(parser) -> None:
    """``--temperature``, ``--top-k``, ``--top-p``, ``--mask-order`` (a parser or an
    argument group); map
    them with :func:`sampling_config`, check them with :func:`check_sampling_flags`."""
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="softmax temperature; 0 = greedy (default 1.0)")
    parser.add_argument("--top-k", type=int, default=50, metavar="K",
                        help="keep the K most likely tokens; 0 = off (default 50)")
    parser.add_argument("--top-p", type=float, default=0.9, metavar="P",
                        help="keep the smallest set of tokens with probability >= P; "
                        "1 = off (default 0.9)")
    parser.add_argument("--mask-order", choices=MASK_ORDERS, default=MASK_ORDERS[0],
                        help="constrained sampling: filters-first keeps the model's own "
                        "top-k/top-p draw whenever it is valid, else the next valid candidate; "
                        "mask-first masks before the filters, as Hugging Face's "
                        "prefix_allowed_tokens_fn (default filters-first)")


def add_sampling_arguments(parser, batch: bool = True) -> None:
    """The flags every generating verb shares: model, device, dtype, batch (unless the
    verb defines its own), threads, seed, sampling, quiet, overwrite."""
    from ..cli import add_quiet_argument

    add_model_arguments(parser, batch)
    g = parser.add_argument_group("sampling")
    g.add_argument("--seed", type=int, default=None,
                   help="random seed; row r of a batch uses seed + r (default: random)")
    add_sampling_flags(g)
    add_quiet_argument(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (default: refuse them); see README")


def model_dtype(args):
    """The ``torch.dtype`` named by ``--dtype``, or None (the device's default)."""
    import torch

    return getattr(torch, args.dtype) if getattr(args, "dtype", None) else None


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """Each named option, when set, must be an integer >= 1 (``--max-tokens 0`` is an
    error, not "unlimited"). Raises :class:`ConfigError` naming the flag."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be >= 1, got {value}")


def check_sampling_flags(args: argparse.Namespace) -> None:
    """Range checks of :func:`add_sampling_flags`' flags (typed one-line errors)."""
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}")
    if args.top_k < 0:
        raise ConfigError(f"--top-k must be >= 0 (0 = off), got {args.top_k}")
    if not (math.isfinite(args.top_p) and 0.0 < args.top_p <= 1.0):
        raise ConfigError(f"--top-p must be in (0, 1], got {args.top_p}")


def check_sampling_args(args: argparse.Namespace) -> None:
    """Range checks of the shared flags, before any model is loaded."""
    check_sampling_flags(args)
    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    if getattr(args, "threads", None) is not None and args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise ConfigError(f"--seed must be in [0, 2**63), got {args.seed}")
    device = args.device
    if device is not None and not (device == "cpu" or device == "cuda" or device == "mps"
                                   or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {device!r}")


def sampling_config(args, seed: int | None = None):
    """:class:`codeclm.generation.sampling.SamplingConfig` from parsed sampling flags:
    ``--top-k 0`` and ``--top-p 1`` switch those filters off (None). ``seed``: the
    draw's seed (default ``args.seed`` where the verb has ``--seed``, else None; the eval
    protocols set each sample's own). Checks
    the flags first (:func:`check_sampling_flags`: errors name the flag)."""
    from .sampling_config import SamplingConfig

    check_sampling_flags(args)
    return SamplingConfig(temperature=args.temperature, top_k=args.top_k or None,
                          top_p=args.top_p if args.top_p < 1.0 else None,
                          mask_order=getattr(args, "mask_order", MASK_ORDERS[0]),
                          seed=getattr(args, "seed", None) if seed is None else seed)


def sampling_settings(args) -> dict:
    """The sampling flags as results record them (filters switched off are None)."""
    c = sampling_config(args, seed=0)
    return {"temperature": c.temperature, "top_k": c.top_k, "top_p": c.top_p,
            "mask_order": c.mask_order}
