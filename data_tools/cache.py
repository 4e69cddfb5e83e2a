"""The per-input result log that makes shard building resumable.

Every input's result is one record, keyed by everything that determines it: the
input's path relative to the source folder, its size and modification time (ns), the
profile (sha256) and the tokenizer (``ByteTokenizer.fingerprint()``). A re-run after a
kill redoes only the inputs without a record, and a changed input, profile or tokenizer
never reuses a stale result.

Records are appended to log files in ``root`` (``*.log``, one per writing process,
never shared), each record in one ``write`` call::

    magic b"CLMR" | key (32 bytes) | kind (1 byte) | payload length (uint32) | crc32 | payload

kind 0: the sample's token ids, int32 little-endian, ``[<s>] + tokens + [</s>]``;
kind 1: UTF-8 JSON ``{"path": relpath, "reason": one line}`` for a bad input.
A record that a kill or a power loss cut short fails its length or CRC check; it and
anything after it in that file are ignored (and redone). One small append per input
keeps the cost per input to one system call, whatever the filesystem.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import uuid
import zlib
from pathlib import Path

import numpy as np

MAGIC = b"CLMR"
HEADER = struct.Struct("<4s32sBII")  # magic, key, kind, payload length, crc32
TOKENS, SKIP = 0, 1


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_key(relpath: str, size: int, mtime_ns: int, profile_sha: str,
              tokenizer_fingerprint: str) -> str:
    """The cache key (sha256 hex) of one input under one profile and tokenizer."""
    text = "\0".join([relpath, str(size), str(mtime_ns), profile_sha, tokenizer_fingerprint])
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _record(key: str, kind: int, payload: bytes) -> bytes:
    k = bytes.fromhex(key)
    return HEADER.pack(MAGIC, k, kind, len(payload), zlib.crc32(payload, zlib.crc32(k))) + payload


class LogWriter:
    """Appends records to a log file of its own (one per process)."""

    def __init__(self, root: str | os.PathLike):
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.log"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # a regular file takes it in one call; loop for completeness
            n = os.write(self._fd, view)
            view = view[n:]

    def put_tokens(self, key: str, ids) -> None:
        arr = np.ascontiguousarray(ids, dtype="<i4")
        self._append(_record(key, TOKENS, arr.tobytes()))

    def put_skip(self, key: str, relpath: str, reason: str) -> None:
        payload = json.dumps({"path": relpath, "reason": reason}).encode()
        self._append(_record(key, SKIP, payload))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        self.close()


class InputCache:
    """The records in ``root`` (see the module docstring), indexed by key."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        #: key -> (log file, payload offset, payload length, kind); first valid record wins
        self.index: dict[str, tuple[Path, int, int, int]] = {}
        self._files: dict[Path, int] = {}

    def scan(self) -> InputCache:
        """(Re)read every log's record headers; returns self."""
        self.close()
        self.index = {}
        if not self.root.is_dir():
            return self
        for log in sorted(self.root.glob("*.log")):
            with open(log, "rb") as f:
                data = f.read()
            pos = 0
            while pos + HEADER.size <= len(data):
                magic, k, kind, n, crc = HEADER.unpack_from(data, pos)
                start, end = pos + HEADER.size, pos + HEADER.size + n
                if (magic != MAGIC or kind not in (TOKENS, SKIP) or end > len(data)
                        or zlib.crc32(data[start:end], zlib.crc32(k)) != crc):
                    break  # a torn tail: ignore the rest of this file
                self.index.setdefault(k.hex(), (log, start, n, kind))
                pos = end
        return self

    def has(self, key: str) -> bool:
        return key in self.index

    def _read(self, path: Path, offset: int, n: int) -> bytes:
        fd = self._files.get(path)
        if fd is None:
            fd = self._files[path] = os.open(path, os.O_RDONLY)
        return os.pread(fd, n, offset)

    def get(self, key: str) -> np.ndarray | str | None:
        """The cached tokens (int32 array), the skip reason (str), or None if absent."""
        entry = self.index.get(key)
        if entry is None:
            return None
        path, offset, n, kind = entry
        payload = self._read(path, offset, n)
        if kind == TOKENS:
            return np.frombuffer(payload, "<i4").astype(np.int32)
        return json.loads(payload)["reason"]

    def compact(self, keys: list[str]) -> None:
        """Rewrite the logs as one file holding only ``keys`` (in that order)."""
        if not self.index:
            return
        tmp = self.root / ".compact.part"
        with open(tmp, "wb") as f:
            for key in keys:
                entry = self.index.get(key)
                if entry is not None:
                    path, offset, n, kind = entry
                    f.write(_record(key, kind, self._read(path, offset, n)))
        self.close()
        final = self.root / "compact.log"
        os.replace(tmp, final)  # first, so a kill here loses nothing
        for log in self.root.glob("*.log"):
            if log != final:
                log.unlink()
        self.scan()

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files = {}
