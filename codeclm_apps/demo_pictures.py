"""The README's demo pictures, from the outputs of a real ``make demo`` run.

``python -m codeclm_apps.demo_pictures [DEMO_OUT] [DOCS]`` (defaults ``demo_out``,
``docs``) writes, every picture at 2x with nearest-neighbour scaling:

- ``demo_frames.png``: the frames of ``demo.mp4`` in one row;
- ``demo_continued.png``: ``continued.mp4``'s prompt frames, a white bar, the frames the
  model wrote (the demo gives 4 and asks for 4);
- ``demo_images.png`` and ``demo_complete.png``: ``images/grid.png`` and
  ``complete/grid.png``.

``python -m codeclm_apps.demo_pictures clips OUT.png CLIP [CLIP ...]`` writes one picture
of several clips instead (the README's ``demo_clips.png``): each clip's frames in a row,
rows one under the other with a white bar between them.

Existing pictures are replaced (they are this tool's own outputs); each is written to a
temporary file first.
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
    """The RGB frames ``(H, W, 3)`` uint8 of a video file."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["clips"]:
        if len(argv) < 3:
            print("usage: python -m codeclm_apps.demo_pictures clips OUT.png CLIP [CLIP ...]",
                  file=sys.stderr)
            return 2
        _save(rows([strip(video_frames(Path(c))) for c in argv[2:]]), Path(argv[1]))
        print(f"wrote {len(argv) - 2} clips to {argv[1]}")
        return 0
    out = Path(argv[0] if argv else "demo_out")
    docs = Path(argv[1] if len(argv) > 1 else "docs")
    _save(strip(video_frames(out / "demo.mp4")), docs / "demo_frames.png")
    _save(strip(video_frames(out / "continued.mp4"), PROMPT_FRAMES), docs / "demo_continued.png")
    for grid, name in ((out / "images" / "grid.png", "demo_images.png"),
                       (out / "complete" / "grid.png", "demo_complete.png")):
        with Image.open(grid) as im:
            _save(_scaled(im.convert("RGB")), docs / name)
    print(f"wrote demo_frames, demo_continued, demo_images, demo_complete .png to {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
