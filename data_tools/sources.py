"""Finding media in a folder: which files are images or videos, in a stable order.

Inputs are listed recursively and sorted by their path relative to the source folder
(POSIX form), so every run over the same folder sees the same order. Hidden files and
folders (a name starting with ``.``) are ignored; so is an output folder that lies
inside the source. Anything else that is not of the requested kind is still listed,
so the pipeline can record it as skipped instead of silently dropping it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from codeclm import modality as registry
from codeclm.errors import InputError


def kind_of(path: str | os.PathLike) -> str | None:
    """"image", "video" (a registered media kind) or None, from the file name's extension
    (the registry's lists, :func:`codeclm.modality.extensions`)."""
    ext = Path(path).suffix.lower()
    for kind in registry.media_kinds():
        if ext in registry.extensions(kind):
            return kind
    return None


def modality_of_kind(kind: str) -> str | None:
    """Media kind -> the modality that models it ("image" -> "jpeg"), or None."""
    return registry.modality_of_kind(kind)


def kind_of_modality(modality: str) -> str:
    """Modality -> its media kind ("jpeg" -> "image")."""
    return registry.record(modality).media_kind


def list_files(src: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Every regular, non-hidden file under ``src``, as paths relative to ``src``, sorted.

    ``src`` may also be a single file (then the list is just that file's name).
    Dangling and looping symbolic links are listed too, so that the pipeline records
    them as skipped instead of dropping them silently.
    Folders in ``exclude`` (e.g. the output folder) are not descended into, and files in
    it (e.g. a labels CSV kept beside the media) are not listed.
    Raises :class:`InputError` if ``src`` does not exist.
    """
    src = Path(src)
    if not src.exists():
        raise InputError(f"{src}: no such file or directory")
    if src.is_file():
        return [Path(src.name)]
    if not src.is_dir():
        raise InputError(f"{src}: not a file or directory")
    skip = {os.path.realpath(e) for e in exclude}
    found: list[Path] = []
    for root, dirs, files in os.walk(src, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and os.path.realpath(os.path.join(root, d)) not in skip]
        for name in files:
            if name.startswith("."):
                continue
            full = Path(root) / name
            if os.path.realpath(full) in skip:
                continue
            if full.is_file() or (full.is_symlink() and not full.exists()):
                found.append(full.relative_to(src))  # a broken link is listed: it is skipped
    found.sort(key=lambda p: p.as_posix())
    return found


def source_root(src: str | os.PathLike) -> Path:
    """The folder that :func:`list_files`' relative paths are relative to."""
    src = Path(src)
    return src.parent if src.is_file() else src


def infer_kind(paths: Iterable[str | os.PathLike], where: str = "input") -> str:
    """The media kind most files have; :class:`InputError` if none is media or both are common."""
    counts = Counter(k for k in map(kind_of, paths) if k)
    if not counts:
        raise InputError(f"{where}: no {' or '.join(registry.media_kinds())} files found "
                         f"(by extension); pass --kind {'|'.join(registry.media_kinds())}")
    (top, n), *rest = counts.most_common()
    if rest and rest[0][1] * 4 > n:  # a real mix: ask instead of guessing
        kinds = registry.media_kinds()
        found = " and ".join(f"{counts[k]} {k}s" for k in kinds if counts[k])
        raise InputError(f"{where}: {found}; "
                         f"pass --kind {'|'.join(kinds)}")
    return top


def probe_video(path: str | os.PathLike) -> dict:
    """Frame count, average frame rate (frames/s) and duration (s) of a video file.

    Reads the container index with decord; falls back to PyAV where decord cannot
    open the file. Used for reporting only: the canonical encoding reads frames through
    the codec (``avclm``), never through this function. Raises :class:`InputError`.
    """
    path = str(path)
    try:
        import decord
    except ImportError:
        decord = None
    if decord is not None:
        try:
            vr = decord.VideoReader(path, num_threads=1)
            frames, fps = len(vr), float(vr.get_avg_fps())
            return {"frames": frames, "fps": fps, "duration": frames / fps if fps else 0.0,
                    "reader": "decord"}
        except (RuntimeError, decord.DECORDError):
            pass  # decord could not open it: PyAV below gives the error message
    import av

    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise InputError(f"{path}: no video stream")
            s = c.streams.video[0]
            fps = float(s.average_rate or 0)
            duration = float(s.duration * s.time_base) if s.duration else (
                c.duration / 1e6 if c.duration else 0.0)
            frames = s.frames or round(duration * fps)
            return {"frames": frames, "fps": fps, "duration": duration, "reader": "pyav"}
    except av.FFmpegError as e:
        raise InputError(f"{path}: not a readable video ({e})") from e
