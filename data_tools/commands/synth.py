"""Write procedural training media (PNG images or MP4 videos) at a profile's size.

Sources: `shapes` (moving circles and rectangles on plain or gradient backgrounds),
`pan` (a camera panning over still shapes), `photo-crops` (random crops of
scikit-image's bundled photographs, `--split train|heldout`; pans over them as video),
`photo-views` (the same photos seen whole: crops and pan views spanning 60-80% of a
photo's short side; `--photos` keeps to some of them),
`digits` (scikit-learn's bundled handwritten digits bouncing over black, `--split` as for
photos), `digits-on-grey` (the same over mid grey), `digits-large` (one digit at 65-85% of
the frame drifting 1 pixel per frame) and the ffmpeg generators `life`,
`testsrc2`, `mandelbrot`, `cellauto`. Deterministic given --seed.
"""

import time
from pathlib import Path

from codeclm.errors import ConfigError
from codeclm.profile import get_profile

from ..sources import modality_of_kind
from ..synth import (
    DEFAULT_SOURCES,
    DIGIT_LABELS_FILE,
    DIGIT_SOURCES,
    PHOTO_SOURCES,
    SOURCES,
    SPLITS,
    check_digit_label_sources,
    check_photos,
    synth,
)
from . import add_progress, kind_arg, positive_int


def _size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must look like 256x144, not {value!r}") from None
    return w, h


def add_arguments(parser) -> None:
    parser.add_argument("out", type=Path, metavar="OUT", help="folder to write into")
    parser.add_argument("--kind", "--modality", dest="kind", type=kind_arg, required=True,
                        help="image (PNG) or video (MP4)")
    parser.add_argument("--profile", default="tiny",
                        help="codec profile whose size to use (default: tiny)")
    parser.add_argument("--count", type=positive_int, required=True, help="how many files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                        help=f"comma list from {','.join(SOURCES)} or 'all' (default: %(default)s)")
    parser.add_argument("--split", choices=SPLITS, default="train",
                        help="which photos photo-crops and photo-views cut from and which "
                             "digits digits draws: "
                             "the training ones or the held-out ones kept for evaluation "
                             "(default: %(default)s)")
    parser.add_argument("--photos", metavar="NAMES",
                        help="photo-crops and photo-views draw from these photos of --split "
                             "only (comma list, e.g. astronaut,chelsea,rocket,camera; "
                             "default: all of them)")
    parser.add_argument("--fps", type=float, help="video frame rate (default: the profile's)")
    parser.add_argument("--seconds", type=float, help="video length (default: the profile's)")
    parser.add_argument("--size", help="WxH instead of the profile's size")
    parser.add_argument("--workers", type=positive_int, help="threads (default: one per CPU)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty OUT (an earlier synth run there is replaced; "
                             "other files are left alone)")
    parser.add_argument("--labelled", action="store_true",
                        help="--count of each of three classes (red circles, green squares, "
                             "blue triangles; in videos moving right, down, not at all) in "
                             "OUT/<class>/, for --labels folder")
    parser.add_argument("--digit-labels", action="store_true",
                        help=f"digit sources only: also write OUT/{DIGIT_LABELS_FILE} naming "
                             "each item's digit (path,label rows), for data_tools "
                             f"images|videos --labels OUT/{DIGIT_LABELS_FILE} (classes 0-9)")
    add_progress(parser)


def run(args) -> int:
    from codeclm.outputs import check_output_dir

    profile = get_profile(modality_of_kind(args.kind), args.profile)
    sources = SOURCES if args.sources == "all" else tuple(
        s.strip() for s in args.sources.split(",") if s.strip())
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise ConfigError(f"--sources: unknown source(s) {', '.join(unknown) or '(none)'}; "
                          f"known: {', '.join(SOURCES)}")
    if args.labelled and args.digit_labels:
        raise ConfigError("--labelled and --digit-labels are two kinds of labels: give one")
    if args.digit_labels:  # (before OUT is made)
        check_digit_label_sources(sources)
    for flag, value in (("--fps", args.fps), ("--seconds", args.seconds)):
        if value is not None and not (0 < value < 1e6):
            raise ConfigError(f"{flag} must be > 0, got {value}")
    photos = None
    if args.photos is not None:
        if not set(sources) & set(PHOTO_SOURCES):
            raise ConfigError(f"--photos goes with a photo source ({', '.join(PHOTO_SOURCES)})")
        photos = check_photos([n.strip() for n in args.photos.split(",") if n.strip()],
                              args.split)
    size = _size(args.size) if args.size else None
    if size is not None and not (1 <= size[0] <= 8192 and 1 <= size[1] <= 8192):
        raise ConfigError(f"--size must be between 1x1 and 8192x8192, not {args.size!r}")
    if args.labelled:
        return _labelled(args, profile, size)
    target = check_output_dir(args.out, "data_tools synth", args.overwrite)
    target.create()
    started = time.time_ns()
    try:
        paths = synth(args.out, args.kind, profile, args.count, args.seed, sources, fps=args.fps,
                      seconds=args.seconds, size=size, progress=bool(args.progress),
                      workers=args.workers, split=args.split, digit_labels=args.digit_labels,
                      photos=photos)
    except BaseException:  # record what this run wrote: it is ours to replace later
        target.record(p.name for p in args.out.glob("[0-9][0-9][0-9][0-9][0-9]-*.*")
                      if p.stat().st_mtime_ns >= started)
        raise
    target.record([p.name for p in paths]
                  + ([DIGIT_LABELS_FILE] if args.digit_labels else []))
    split = "".join(f", {args.split} {what}" for what, names in
                    (("photos", set(PHOTO_SOURCES)), ("digits", set(DIGIT_SOURCES)))
                    if names & set(sources))
    if photos is not None:
        split += f" ({', '.join(photos)})"
    labels = f" and their digits in {DIGIT_LABELS_FILE}" if args.digit_labels else ""
    print(f"wrote {len(paths)} synthetic {args.kind}s ({', '.join(sources)}{split}){labels} "
          f"to {args.out}")
    return 0


def _labelled(args, profile, size) -> int:
    """``--labelled``: the class folders of :mod:`data_tools.labelled_synth` (a new or empty
    OUT only: files in subfolders are not tracked for a later --overwrite)."""
    import os

    from ..labelled_synth import CLASS_COLOURS, write_labelled_clips, write_labelled_shapes

    if args.overwrite:
        raise ConfigError("--labelled writes into a new or empty OUT (no --overwrite)")
    if args.out.exists() and (not args.out.is_dir() or os.listdir(args.out)):
        raise ConfigError(f"{args.out}: --labelled writes into a new or empty folder only")
    size = size or (profile.width, profile.height)
    if args.kind == "image":
        paths = write_labelled_shapes(args.out, args.count, args.seed, size)
    else:
        fps = args.fps or profile.fps
        frames = max(1, round(fps * (args.seconds or profile.seconds)))
        paths = write_labelled_clips(args.out, args.count, args.seed, size, frames, fps)
    print(f"wrote {len(paths)} labelled synthetic {args.kind}s ({', '.join(CLASS_COLOURS)}) "
          f"to {args.out}/<class>")
    return 0
