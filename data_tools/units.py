"""Work units: what one sample is made from, and the plan of units for a folder.

A unit is a whole file as the modality encodes it (an image's fit crop, a video's
first clip), one clip of a video (``clip``: its start in seconds, see
:mod:`avclm.clips`) or one seeded random crop of an image (``crop``: its index, see
:mod:`data_tools.crops`). Units are the pipeline's work items: each is encoded,
cached, skipped and written on its own, in the order of :meth:`Unit.sort_key`.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

from codeclm.errors import CodecLMError


@dataclasses.dataclass(frozen=True)
class Unit:
    rel: str                              #: the file, relative to the source root (POSIX)
    clip: Fraction | None = None          #: video clip start, seconds (None: whole file)
    crop: int | None = None               #: image random-crop index (None: the fit crop)
    #: the start of the next clip of the same file, if any (a decoding hint, not identity)
    next_clip: Fraction | None = dataclasses.field(default=None, compare=False)

    def sort_key(self) -> tuple:
        return (self.rel, -1 if self.clip is None else self.clip,
                -1 if self.crop is None else self.crop)

    def cache_name(self, crop_seed: int = 0) -> str:
        """The text that names this unit in its cache key (the bare path for a whole
        file, so that ``--clips 1`` reuses what earlier versions cached)."""
        name = self.rel
        if self.clip is not None:
            name += f"#t={self.clip}"
        if self.crop is not None:
            name += f"#crop={self.crop}@{crop_seed}"
        return name

    def describe(self) -> dict:
        """``{"path": ...}`` plus ``"clip_start"`` (seconds) or ``"crop"`` (index)."""
        row: dict = {"path": self.rel}
        if self.clip is not None:
            row["clip_start"] = float(self.clip)
        if self.crop is not None:
            row["crop"] = self.crop
        return row


def video_units(rel: str, path: Path, profile, clips: int | None, stride) -> list[Unit]:
    """The clip units of one video: ``clips`` clips (None: all) every ``stride`` seconds
    (None: the clip length). ``clips == 1`` with no stride is the whole-file unit
    (``encode_video``'s first clip, no probing). Raises typed errors when the file
    cannot be probed."""
    from avclm.clips import clip_starts, video_duration

    if clips == 1 and stride is None:
        return [Unit(rel)]
    starts = clip_starts(video_duration(path), profile, clips, stride)
    return [Unit(rel, clip=s, next_clip=starts[i + 1] if i + 1 < len(starts) else None)
            for i, s in enumerate(starts)]


def image_units(rel: str, crops: int) -> list[Unit]:
    """The fit crop, then ``crops`` random crops."""
    return [Unit(rel)] + [Unit(rel, crop=k) for k in range(crops)]


def plan(rels: list[str], root: Path, kind: str, profile, clips: int | None = None,
         stride=None, crops: int = 0) -> tuple[list[Unit], dict[Unit, str]]:
    """(units, skipped): every unit of the given media files, in sorted order, and the
    files that could not be planned (a video whose length cannot be read), with why."""
    units: list[Unit] = []
    skipped: dict[Unit, str] = {}
    for rel in rels:
        if kind == "video":
            try:
                units += video_units(rel, root / rel, profile, clips, stride)
            except CodecLMError as e:
                skipped[Unit(rel)] = " ".join(str(e).split())[:500]
        else:
            units += image_units(rel, crops)
    units.sort(key=Unit.sort_key)
    return units, skipped
