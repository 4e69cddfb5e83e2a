"""The README's demo pictures, from the outputs of a real ``make demo`` run.

``python -m codeclm_apps.demo_pictures [DEMO_OUT] [DOCS]`` (defaults ``demo_out``,
``docs``) writes, every picture at 2x with nearest-neighbour scaling:

- ``demo_frames.png``: the frames of ``demo.mp4`` in one row;
- ``demo_continued.png``: ``continued.mp4``'s prompt frames, a white bar, the frames the
  model wrote (the demo gives 4 and asks for 4);
- ``demo_images.png`` and ``demo_complete.png``: ``images/grid.png`` and
  ``complete/grid.png``.

``python -m codeclm_apps.demo_pictures clips OUT.png CLIP [CLIP ...] [--overwrite]``
writes one picture of several clips instead (the README's ``demo_clips.png``): each
clip's frames in a row, rows one under the other with a white bar between them; an
existing OUT is replaced only with ``--overwrite``.

The four demo pictures are replaced (they are this tool's own outputs); each picture is
written to a temporary file first. A file that cannot be read is a one-line error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

#: the demo's continuation: frames given, then written (codeclm_apps.demo)
PROMPT_FRAMES = 4
#: width of the bar between the prompt and the continuation, in pixels (at 2x)
BAR = 8
SCALE = 2


def video_frames(path: Path) -> list[np.ndarray]:
    """The RGB frames ``(H, W, 3)`` uint8 of a video file (opened with the checks every
    reader shares, :func:`avclm.codec.open_video`: a missing, empty, text or still-image
    file raises :class:`~codeclm.errors.InputError`, as does one with no frame)."""
    from avclm.codec import open_video
    from codeclm.errors import InputError

    container, stream = open_video(path)
    with container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise InputError(f"{path}: no video frames")
    return frames


def _scaled(image: Image.Image) -> Image.Image:
    return image.resize((image.width * SCALE, image.height * SCALE), Image.NEAREST)


def strip(frames: list[np.ndarray], bar_after: int | None = None) -> Image.Image:
    """The frames side by side at :data:`SCALE`, a white bar after ``bar_after`` of them."""
    parts = [np.asarray(_scaled(Image.fromarray(f))) for f in frames]
    if bar_after is not None:
        h = parts[0].shape[0]
        parts.insert(bar_after, np.full((h, BAR, 3), 255, np.uint8))
    return Image.fromarray(np.concatenate(parts, axis=1))


def rows(strips: list[Image.Image]) -> Image.Image:
    """Strips one under the other, a white bar of :data:`BAR` pixels between them, as
    wide as the widest (narrower ones padded with white on the right)."""
    width = max(s.width for s in strips)
    height = sum(s.height for s in strips) + BAR * (len(strips) - 1)
    out = Image.new("RGB", (width, height), (255, 255, 255))
    y = 0
    for s in strips:
        out.paste(s, (0, y))
        y += s.height + BAR
    return out


def _save(image: Image.Image, path: Path) -> None:
    from codeclm.io import atomic_path

    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


PROG = "python -m codeclm_apps.demo_pictures"


def clips_main(argv: list[str]) -> int:
    """``clips OUT.png CLIP [CLIP ...] [--overwrite]``: :func:`rows` of the clips' strips."""
    from codeclm.cli import OneLineParser
    from codeclm.outputs import check_output_file

    p = OneLineParser(prog=f"{PROG} clips", description="several clips as rows of one picture")
    p.add_argument("out", help="the picture to write (PNG)")
    p.add_argument("clips", nargs="+", help="video files, one row each")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = p.parse_args(argv)
    check_output_file(args.out, args.overwrite)
    _save(rows([strip(video_frames(Path(c))) for c in args.clips]), Path(args.out))
    print(f"wrote {len(args.clips)} clips to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import av

    from codeclm.errors import CodecLMError

    argv = sys.argv[1:] if argv is None else argv
    clips = argv[:1] == ["clips"]
    prog = f"{PROG} clips" if clips else PROG
    try:
        if clips:
            return clips_main(argv[1:])
        out = Path(argv[0] if argv else "demo_out")
        docs = Path(argv[1] if len(argv) > 1 else "docs")
        _save(strip(video_frames(out / "demo.mp4")), docs / "demo_frames.png")
        _save(strip(video_frames(out / "continued.mp4"), PROMPT_FRAMES),
              docs / "demo_continued.png")
        for grid, name in ((out / "images" / "grid.png", "demo_images.png"),
                           (out / "complete" / "grid.png", "demo_complete.png")):
            with Image.open(grid) as im:
                _save(_scaled(im.convert("RGB")), docs / name)
    except (CodecLMError, OSError, av.FFmpegError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote demo_frames, demo_continued, demo_images, demo_complete .png to {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
