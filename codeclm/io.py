"""Output that is never half-written: write to a temporary file, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import InputError, OutputError


def _umask_mode() -> int:
    """The mode an ordinary ``open(path, "w")`` would give a new file (0o666 minus umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed
    and ``path`` is left untouched. A failing write (disk full, file size limit,
    unwritable place) raises :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    fd, tmp = _make_temp(path, f".{path.name}.", ".part")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and _is_write_error(e):
            raise OutputError(f"{path}: cannot write ({describe_os_error(e)})") from e
        raise


#: write errors that mean "no room" (EFBIG: a file size limit, e.g. ``ulimit -f``)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def describe_os_error(e: OSError) -> str:
    """A short human reason for an ``OSError`` ("disk full" for ENOSPC/EDQUOT/EFBIG)."""
    if e.errno in DISK_FULL:
        return f"disk full ({e.strerror})"
    return e.strerror or str(e)


def _is_write_error(e: OSError) -> bool:
    """Errors of the output itself (no room, no permission, read-only), not of an input."""
    import errno

    return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                       errno.EPERM, errno.EIO, errno.EISDIR, errno.ENOTDIR)


def _make_temp(path: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """mkstemp beside ``path`` (its folders created), with ordinary file permissions."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({describe_os_error(e)})") from e
    os.chmod(tmp, _umask_mode())  # mkstemp makes 0600; outputs should look like any other file
    return fd, tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for tools that write by name (PyAV, ffmpeg).

    The temporary keeps ``path``'s suffix (or ``suffix``) so format detection works.
    It is renamed onto ``path`` on success and removed on failure.
    """
    path = Path(path)
    fd, tmp = _make_temp(path, f".{path.stem}.", suffix or path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and _is_write_error(e):
            raise OutputError(f"{path}: cannot write ({describe_os_error(e)})") from e
        raise


def write_png(image, path: str | os.PathLike, compress_level: int = 6) -> None:
    """Write ``image`` (a PIL image, or a uint8 array [H, W, 3] / [H, W]) to ``path`` as
    PNG, atomically (``compress_level`` 0-9: zlib effort; the pixels are the same)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    with atomic_path(path, ".png") as tmp:
        image.save(tmp, format="PNG", compress_level=compress_level)


def read_input_bytes(path: str | os.PathLike, max_bytes: int = 1 << 30) -> bytes:
    """Read a whole input file, or ``-`` for stdin, with clear typed errors."""
    import sys

    if str(path) == "-":
        data = sys.stdin.buffer.read(max_bytes + 1)
    else:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: no such file")
        if not p.is_file():
            raise InputError(f"{p}: not a regular file")
        size = p.stat().st_size
        if size > max_bytes:
            raise InputError(f"{p}: {size} bytes is larger than the limit of {max_bytes}")
        data = p.read_bytes()
    if len(data) > max_bytes:
        raise InputError(f"{path}: input is larger than the limit of {max_bytes} bytes")
    if not data:
        raise InputError(f"{path}: empty input")
    return data
