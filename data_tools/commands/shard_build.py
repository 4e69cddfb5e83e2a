"""Shared arguments and body of the `images` and `videos` verbs."""

import argparse
from pathlib import Path

from codeclm.profile import get_profile

from ..pipeline import build_dataset
from ..shards import DEFAULT_CHUNK_BYTES
from ..sources import MODALITY_OF_KIND
from . import add_progress, add_workers, positive_int


def add_arguments(parser, kind: str) -> None:
    parser.add_argument("src", type=Path, metavar="SRC", help=f"folder of {kind}s (recursive)")
    parser.add_argument("out", type=Path, metavar="OUT",
                        help="output folder for the shard set: new, empty, or one made by an "
                             "earlier run (resumed)")
    parser.add_argument("--profile", required=True, help="codec profile name (e.g. paper, tiny)")
    parser.add_argument("--tokenizer", type=Path, required=True, metavar="TOKENIZER.json",
                        help="a tokenizer made by `python -m data_tools bpe`")
    add_workers(parser)
    parser.add_argument("--chunk-mb", type=float, default=DEFAULT_CHUNK_BYTES / 2**20,
                        help="target litdata chunk size in MiB (default: %(default)g)")
    parser.add_argument("--limit", type=positive_int, help="use only the first N files (sorted)")
    parser.add_argument("--keep-cache", action="store_true",
                        help="keep OUT/.cache (per-input tokens) after success for later re-runs")
    parser.add_argument("--strict", action="store_true",
                        help="stop on an unexpected (non-input) error instead of recording it")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty OUT not made by data_tools (its other files "
                             "are left alone)")
    if kind == "video":
        parser.add_argument("--clips", type=_clips_arg, default=None, metavar="all|N",
                            help="clips per video: every one that fits (default: all) or the "
                                 "first N; 1 is the first clip only, as the paper does")
        parser.add_argument("--stride", type=_seconds_arg, default=None, metavar="SECONDS",
                            help="seconds from one clip's start to the next (default: the "
                                 "clip length, i.e. clips that do not overlap)")
    else:
        parser.add_argument("--crops", type=_count_arg, default=0, metavar="N",
                            help="also N seeded random crops at the profile's size per image "
                                 "(default: 0, the fit crop only)")
        parser.add_argument("--seed", type=int, default=0, help="crop seed (default: 0)")
    add_progress(parser)


def _clips_arg(value: str) -> int | None:
    return None if value == "all" else positive_int(value)


def _count_arg(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, not {value!r}")
    return n


def _seconds_arg(value: str) -> str:
    try:
        ok = float(value) > 0
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {value!r}")
    return value


def run(args, kind: str) -> int:
    profile = get_profile(MODALITY_OF_KIND[kind], args.profile)
    result = build_dataset(args.src, args.out, kind, profile, args.tokenizer, workers=args.workers,
                           chunk_bytes=max(1, int(args.chunk_mb * 2**20)), keep_cache=args.keep_cache,
                           show_progress=args.progress, strict=args.strict, limit=args.limit,
                           overwrite=args.overwrite, **_unit_options(args, kind))
    print(result.summary(kind))
    return 0


def _unit_options(args, kind: str) -> dict:
    if kind == "video":
        return {"clips": args.clips, "stride": args.stride}
    return {"crops": args.crops, "crop_seed": args.seed}
