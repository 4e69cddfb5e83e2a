"""Train a byte-level BPE tokenizer on (a sample of) a media folder and save it.

Encodes up to --limit files with the profile's canonical codec, trains the tokenizer
and prints the tokens per sample it gives on them.
"""

from pathlib import Path

from codeclm.profile import get_profile

from ..bpe import train_bpe
from ..sources import infer_kind, list_files, modality_of_kind
from . import add_progress, add_workers, kind_arg, positive_int


def add_arguments(parser) -> None:
    parser.add_argument("src", type=Path, metavar="SRC",
                        help="folder of images or videos (recursive)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="TOKENIZER.json")
    parser.add_argument("--profile", required=True, help="codec profile name (e.g. paper, tiny)")
    parser.add_argument("--vocab-size", type=positive_int, required=True,
                        help="vocabulary entries incl. 11 special tokens and 256 bytes (paper: 320 "
                             "for images, 1024 for videos)")
    parser.add_argument("--kind", "--modality", dest="kind", type=kind_arg,
                        help="image|video (default: inferred from the file extensions)")
    parser.add_argument("--limit", type=positive_int, default=10_000,
                        help="train on a seeded random sample of at most N files "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing tokenizer file")
    add_workers(parser)
    add_progress(parser)


def run(args) -> int:
    from codeclm.outputs import check_output_file

    target = args.output / "tokenizer.json" if args.output.is_dir() or not args.output.suffix \
        else args.output
    check_output_file(target, args.overwrite)
    kind = args.kind or infer_kind(list_files(args.src), where=str(args.src))
    profile = get_profile(modality_of_kind(kind), args.profile)
    result = train_bpe(args.src, kind, profile, args.vocab_size, limit=args.limit,
                       workers=args.workers, seed=args.seed, show_progress=args.progress)
    path = result.tokenizer.save(args.output)
    print(result.summary(path))
    return 0
