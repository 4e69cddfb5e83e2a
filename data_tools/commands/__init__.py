"""One module per `python -m data_tools` verb (see data_tools/__main__.py)."""

import argparse
import os

from codeclm import modality as registry


def kind_arg(value: str) -> str:
    """--kind / --modality: a media kind, image|video (a modality name, jpeg|h264, too)."""
    kinds = registry.media_kinds()
    if value in kinds:
        return value
    rec = registry.find(value)
    if rec is None:
        raise argparse.ArgumentTypeError(f"expected {' or '.join(kinds)}, not {value!r}")
    return rec.media_kind


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value!r}")
    return n


def default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def add_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=positive_int, default=default_workers(),
                        help="encoding processes (default: one per CPU, here %(default)s)")


def add_progress(parser: argparse.ArgumentParser) -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show the progress bar (default: only on a terminal)")
    g.add_argument("-q", "--quiet", "--no-progress", dest="progress", action="store_false",
                   help="no progress bar (the same -q/--quiet as jpeglm and avclm)")
