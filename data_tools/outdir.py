"""The shard set's output folder: whose it is, and one run at a time.

``data_tools images|videos SRC OUT`` deletes and replaces things inside OUT (its
``.cache`` and ``.staging`` folders, old ``chunk-*.bin``), so it must know that OUT is its
own. A folder it creates or adopts gets a marker file (:data:`MARKER`):

* OUT missing or empty: it becomes ours.
* OUT holding our marker (or a complete shard set from before markers): ours; the run
  resumes or rebuilds the shard set there.
* any other non-empty OUT: refused, unless ``--overwrite``; even then, an existing
  ``.cache``, ``.staging`` or ``chunk-*.bin`` that is not ours is refused by name
  (the run would delete it). Files of the shard set's names (``index.json``,
  ``stats.json``...) are replaced; nothing else is touched.
* OUT equal to SRC, or SRC inside OUT: refused. An OUT inside SRC is fine: listing
  never descends into it (:func:`data_tools.sources.list_files`' ``exclude``).

While a run works it holds an exclusive ``flock`` on ``OUT/.data_tools.lock`` (which
records its pid); a second run into the same OUT refuses at once, naming that pid.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from codeclm.errors import OutputError

MARKER = ".data_tools.json"
LOCK = ".data_tools.lock"
#: entries the run deletes wholesale: never touched unless OUT is ours
DELETED = (".cache", ".staging")
DELETED_GLOB = "chunk-*.bin"


def _describe(e: OSError) -> str:
    from codeclm.io import describe_os_error

    return describe_os_error(e)


#: the metadata every finished shard set holds: a folder with all of them (and no marker)
#: is a shard set written before markers existed, and is adopted
SHARD_SET_FILES = ("index.json", "stats.json", "profile.json", "tokenizer.json", "skipped.jsonl")


def is_owned(out: Path) -> bool:
    """True if ``out`` carries our marker (or our lock file: a run that is starting), or
    is a complete shard set from before markers."""
    return ((out / MARKER).is_file() or (out / LOCK).is_file()
            or all((out / name).is_file() for name in SHARD_SET_FILES))


def check_out(src: Path, out: Path, overwrite: bool) -> None:
    """Refuse an OUT that is not ours to write (see the module docstring); creates nothing."""
    from codeclm.outputs import check_parent

    if out.is_symlink() and not out.exists():
        raise OutputError(f"{out}: is a dangling symbolic link")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory")
    real_src, real_out = os.path.realpath(src), os.path.realpath(out)
    if real_out == real_src:
        raise OutputError(f"{out}: OUT is SRC; write the shard set to another folder")
    if _inside(real_src, real_out):
        raise OutputError(f"{out}: SRC ({src}) lies inside OUT; choose another OUT")
    if not out.exists():
        check_parent(out)
        return
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: is not writable")
    entries = os.listdir(out)
    if not entries or is_owned(out):
        return
    if not overwrite:
        raise OutputError(f"{out}: is not empty and was not made by data_tools (pass "
                          f"--overwrite to write the shard set into it; nothing else in it is "
                          f"touched)")
    clash = sorted(e for e in entries if e in DELETED or Path(e).match(DELETED_GLOB))
    if clash:
        raise OutputError(f"{out}: holds {', '.join(clash[:3])}{' ...' if len(clash) > 3 else ''}"
                          f", not made by data_tools, which a run would delete; move "
                          f"{'it' if len(clash) == 1 else 'them'} away or choose another OUT")


def _inside(path: str, folder: str) -> bool:
    """``path`` is strictly below ``folder`` (both real paths)."""
    return path != folder and path.startswith(folder.rstrip(os.sep) + os.sep)


@contextlib.contextmanager
def claimed(out: Path, tool: str) -> Iterator[Path]:
    """Create ``out`` if needed, hold its run lock, and mark it ours; the lock is released
    on exit. A second holder gets :class:`OutputError` naming the first one's pid."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f"{out}: cannot write ({_describe(e)})") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"{out}: cannot lock ({_describe(e)})") from e
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise OutputError(f"{out}: another data_tools run (pid {other}) is writing here; "
                              f"wait for it to finish or choose another OUT") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            if not (out / MARKER).is_file():
                from codeclm.io import atomic_write

                with atomic_write(out / MARKER, "w") as f:
                    json.dump({"tool": tool}, f)
        except OSError as e:
            raise OutputError(f"{out}: cannot write ({_describe(e)})") from e
        yield out
    finally:
        os.close(fd)  # closing releases the flock
