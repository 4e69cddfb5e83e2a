"""Shared arguments and body of the `images` and `videos` verbs."""

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
    add_progress(parser)


def run(args, kind: str) -> int:
    profile = get_profile(MODALITY_OF_KIND[kind], args.profile)
    result = build_dataset(args.src, args.out, kind, profile, args.tokenizer, workers=args.workers,
                           chunk_bytes=max(1, int(args.chunk_mb * 2**20)), keep_cache=args.keep_cache,
                           show_progress=args.progress, strict=args.strict, limit=args.limit,
                           overwrite=args.overwrite)
    print(result.summary(kind))
    return 0
