"""How many CPU threads torch uses when a command runs a model.

A tiny model's decode step is a few hundred microseconds of small matmuls: one thread
is fastest, and on a busy 2-core machine torch's default (every core, OpenMP threads
spinning between ops) made a bundled-model generation 40x slower than one thread.
Large models want the cores. The rule:

- ``--threads N`` (``requested``) wins;
- else an ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set in the environment is respected
  (torch has already applied it);
- else models under :data:`SMALL_MODEL_PARAMS` parameters get one thread, bigger ones
  every core this process may run on.
"""

from __future__ import annotations

import os

from .errors import ConfigError

#: models with fewer parameters than this decode fastest on one thread (measured on the
#: bundled 0.9M models and the 20M ``small`` preset; per-op overhead dominates there)
SMALL_MODEL_PARAMS = 50_000_000


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def choose_threads(n_params: int, requested: int | None = None,
                   env: bool = True) -> int | None:
    """The thread count for a model of ``n_params`` parameters, or None to leave torch's
    setting alone (the environment chose). See the module docstring for the rule;
    ``env=False`` skips its second step (what the rule gives with no thread variable
    set)."""
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"--threads must be >= 1, got {requested}")
        return requested
    if env and (os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS")):
        return None
    return 1 if n_params < SMALL_MODEL_PARAMS else usable_cores()


def apply_threads(n_params: int, requested: int | None = None) -> int:
    """Set torch's intra-op threads by :func:`choose_threads`; returns the count in use."""
    import torch

    n = choose_threads(n_params, requested)
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return torch.get_num_threads()


def add_threads_argument(parser) -> None:
    """``--threads N`` on a command that runs a model."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for the model (default: 1 for models under 50M "
                        "parameters, else all cores; OMP_NUM_THREADS is respected)")
