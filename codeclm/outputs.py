"""Output paths: the one overwrite rule every command follows, checked before any work.

* ``-o FILE``: a new file is written (temp file + rename). An existing file is refused
  unless ``--overwrite``; a directory there is always refused.
* ``-o DIR`` (``jpeglm generate`` / ``complete``, ``data_tools synth``): a new or empty
  directory is used as is. A non-empty one is refused unless ``--overwrite``; with it,
  the earlier run of ours that the directory holds (the files named in its marker,
  :data:`MARKER`) is removed and files of the new run's names are replaced. Nothing else
  in the directory is touched.
* Named outputs in a shared directory (``make demo``: ``demo_out/demo.mp4``,
  ``demo_out/images``...): :func:`claim_outputs` lets a tool replace only the names its
  own earlier runs recorded in the directory's marker; any other existing one is refused.
* Model directories (``export``) and shard sets (``data_tools images|videos``) have their
  own checks (:mod:`codeclm.model_dir`, :mod:`data_tools.outdir`) built on the same rule.

Every check here only looks; nothing is created until :meth:`OutputDir.create`, which
a command calls after its arguments are validated and its model is loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path

from .errors import OutputError
from .io import atomic_write, describe_os_error

#: the file that marks a directory run as ours: {"tool": ..., "files": [names]}
MARKER = ".codeclm-run.json"


def check_parent(path: str | os.PathLike) -> None:
    """The nearest existing ancestor of ``path`` must be a writable directory.

    Missing folders in between are fine (they are created when the output is written).
    Raises :class:`OutputError`.
    """
    p = Path(os.path.abspath(path))
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        if anc.is_symlink():
            raise OutputError(f"{path}: {anc} is a dangling symbolic link")
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"{path}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: {anc} is not writable")


def check_output_file(path: str | os.PathLike, overwrite: bool, flag: str = "--overwrite") -> None:
    """Refuse an output file that exists (unless ``overwrite``), is a directory, or
    cannot be created. ``-`` (stdout) always passes."""
    if str(path) == "-":
        return
    p = Path(path)
    if str(path).endswith(os.sep) or p.is_dir():
        raise OutputError(f"{path}: is a directory (give a file name)")
    if p.is_symlink() and not p.exists():
        raise OutputError(f"{path}: is a dangling symbolic link")
    if p.exists():
        if not p.is_file():
            raise OutputError(f"{path}: exists and is not a regular file")
        if not overwrite:
            raise OutputError(f"{path}: already exists (pass {flag} to replace it)")
    check_parent(p)


def read_marker(directory: Path) -> dict | None:
    """The run marker of ``directory`` (``{"tool", "files"}``) or None."""
    try:
        data = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    return data


@dataclasses.dataclass
class OutputDir:
    """A checked output directory; :meth:`create` makes it and claims it for this run."""

    path: Path
    tool: str
    previous: list[str]   #: files of an earlier run of ours, removed by create()

    def create(self, names: Iterable[str] = ()) -> Path:
        """Make the directory, remove the earlier run's files, and write the marker naming
        ``names`` (the files this run writes; more can be added with :meth:`record`)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for name in self.previous:
                if _plain_name(name):
                    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                        (self.path / name).unlink()
            self.previous = []
            with atomic_write(self.path / MARKER, "w") as f:
                json.dump({"tool": self.tool, "files": sorted(set(names))}, f)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write ({describe_os_error(e)})") from e
        return self.path

    def record(self, names: Iterable[str]) -> None:
        """Add ``names`` to the marker (files written whose names were not known up front)."""
        old = read_marker(self.path) or {"tool": self.tool, "files": []}
        try:
            with atomic_write(self.path / MARKER, "w") as f:
                json.dump({"tool": self.tool, "files": sorted(set(old["files"]) | set(names))}, f)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write ({describe_os_error(e)})") from e


def _plain_name(name: object) -> bool:
    """A marker entry we may delete: a bare file name, never a path or a hidden name."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and os.sep not in name and not name.startswith("."))


def check_dir_path(p: Path, shown: str | os.PathLike | None = None) -> bool:
    """The checks every directory output starts with: not a dangling link, not a file, and
    (when absent) a parent it can be made in. Returns whether ``p`` exists already.
    Messages name ``shown`` (the path as the user typed it), else ``p``."""
    shown = p if shown is None else shown
    if p.is_symlink() and not p.exists():
        raise OutputError(f"{shown}: is a dangling symbolic link")
    if p.exists() and not p.is_dir():
        raise OutputError(f"{shown}: exists and is not a directory")
    if not p.exists():
        check_parent(p)
        return False
    return True


def existing_entries(path: str | os.PathLike) -> list[str] | None:
    """The names in an output directory ``path`` that must be writable, or None when it
    does not exist yet (:func:`check_dir_path`: then its parent is checked)."""
    p = Path(path)
    if not check_dir_path(p, path):
        return None
    try:
        entries = os.listdir(p)
    except OSError as e:
        raise OutputError(f"{path}: cannot list ({describe_os_error(e)})") from e
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: is not writable")
    return entries


def check_output_dir(path: str | os.PathLike, tool: str, overwrite: bool) -> OutputDir:
    """Check a ``-o DIR`` output by the rule in the module docstring; creates nothing."""
    p = Path(path)
    entries = existing_entries(path)
    if not entries:
        return OutputDir(p, tool, [])
    marker = read_marker(p)
    if not overwrite:
        if marker is not None:
            raise OutputError(f"{path}: holds an earlier run of {marker.get('tool', tool)} "
                              f"(pass --overwrite to replace it, or choose another directory)")
        raise OutputError(f"{path}: is not empty (pass --overwrite to write into it: files "
                          f"of the same names are replaced, nothing else is touched)")
    previous = [n for n in (marker or {}).get("files", []) if _plain_name(n)]
    return OutputDir(p, tool, previous)


def claim_outputs(directory: str | os.PathLike, tool: str, names: Iterable[str]) -> Path:
    """Claim the outputs ``names`` (files or folders directly in ``directory``) for ``tool``
    before any of them is written; returns the directory, created if absent.

    An existing name is refused (:class:`OutputError`, naming it) unless the directory's
    marker says ``tool`` made it in an earlier run; a marker of another tool is refused
    whole. Then the marker records ``names`` (plus what it held), so a later run of
    ``tool`` may replace them. Other entries of the directory are never touched."""
    p = Path(directory)
    names = list(names)
    ours: set[str] = set()
    if check_dir_path(p, directory):
        marker = read_marker(p)
        if marker is None and (p / MARKER).exists():
            raise OutputError(f"{p / MARKER}: not a run marker of codeclm; choose another "
                              "directory")
        if marker is not None:
            if marker.get("tool") != tool:
                raise OutputError(f"{directory}: holds a run of {marker.get('tool')}, not of "
                                  f"{tool}; choose another directory")
            ours = {n for n in marker["files"] if _plain_name(n)}
        for name in names:
            q = p / name
            if (q.exists() or q.is_symlink()) and name not in ours:
                raise OutputError(f"{q}: exists and was not made by {tool}; refusing to "
                                  "replace it (move it away or choose another directory)")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with atomic_write(p / MARKER, "w") as f:
            json.dump({"tool": tool, "files": sorted(ours | set(names))}, f)
    except OSError as e:
        raise OutputError(f"{directory}: cannot write ({describe_os_error(e)})") from e
    return p
