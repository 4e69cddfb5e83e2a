"""The codec library versions that canonical bytes depend on, recorded beside the bytes.

The same input and the same fixed encoder settings give the same bytes only with the same
libraries: another FFmpeg release scales a few pixels differently (a few H.264 slices
change), another Pillow / libjpeg build may round a DCT differently. So every shard set
and every model directory records, in its ``profile.json`` under ``"versions"``, what made
its canonical bytes:

- JPEG: Pillow and its libjpeg(-turbo);
- H.264: PyAV, libavcodec, libavformat, libswscale and the x264 core build

(each modality's record names its function: ``codec_versions`` in :mod:`codeclm.modality`).

``data_tools`` refuses to add to a shard set made with other versions (the set would mix
two encoders' bytes); generation and evaluation say once when a model's versions differ
from the running ones (its samples are still decodable; only the byte statistics it
learned may be slightly off).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("codeclm")
_WARNED: set[str] = set()


def current(modality: str) -> dict[str, str]:
    """``{library: version}`` of the running process for a modality ("jpeg" / "h264"): its
    record's ``codec_versions`` (:mod:`codeclm.modality`); ``{}`` if it names none."""
    from .modality import find

    rec = find(modality)
    return rec.load_codec_versions()() if rec is not None and rec.codec_versions else {}


def read(directory: str | os.PathLike) -> dict[str, str] | None:
    """The versions recorded in a directory's ``profile.json`` (None: not recorded, as in
    directories made before versions were recorded)."""
    p = Path(directory) / "profile.json"
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    v = d.get("versions") if isinstance(d, dict) else None
    return v if isinstance(v, dict) else None


def differences(recorded: dict[str, str], running: dict[str, str]) -> list[str]:
    """``["libavcodec 61.3.100 here 62.1.100", ...]`` for every library that differs."""
    return [f"{k} {recorded[k]} (here {running.get(k, 'absent')})"
            for k in sorted(recorded) if recorded[k] != running.get(k)]


def warn_if_different(directory: str | os.PathLike, modality: str) -> list[str]:
    """Log once per directory when a model's recorded versions differ from the running
    ones; returns the differences (empty when equal or not recorded)."""
    recorded = read(directory)
    if not recorded:
        return []
    diff = differences(recorded, current(modality))
    key = str(Path(directory).resolve())
    if diff and key not in _WARNED:
        _WARNED.add(key)
        log.warning(f"{directory}: its canonical bytes were made with other codec libraries "
                    f"({'; '.join(diff)}); samples still decode, but a few bytes of the "
                    f"training data would differ here")
    return diff
