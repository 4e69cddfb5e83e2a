"""The per-input cache that makes shard building resumable.

Every input's result is one small file, written atomically, named by a key over
everything that determines it: the input's path relative to the source folder, its
size and modification time (ns), the profile and the tokenizer (sha256 of each). So a
re-run after a kill redoes only the inputs whose file is missing, and a changed input,
profile or tokenizer never reuses a stale result.

* ``<key>.npy``: the sample's token ids, int32, shape (n,), ``[<s>] + tokens + [</s>]``;
* ``<key>.skip.json``: ``{"path": relpath, "reason": one line}`` for a bad input.

Files are fanned out over 256 sub-folders by the key's first two hex digits.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from codeclm.io import atomic_write

TOKENS_SUFFIX = ".npy"
SKIP_SUFFIX = ".skip.json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_key(relpath: str, size: int, mtime_ns: int, profile_sha: str, tokenizer_sha: str) -> str:
    """The cache key (sha256 hex) of one input under one profile and tokenizer."""
    text = "\0".join([relpath, str(size), str(mtime_ns), profile_sha, tokenizer_sha])
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class InputCache:
    """A folder of per-input results (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _base(self, key: str) -> Path:
        return self.root / key[:2] / key

    def tokens_path(self, key: str) -> Path:
        return self._base(key).with_suffix(TOKENS_SUFFIX)

    def skip_path(self, key: str) -> Path:
        return self.root / key[:2] / (key + SKIP_SUFFIX)

    def has(self, key: str) -> bool:
        return self.tokens_path(key).is_file() or self.skip_path(key).is_file()

    def put_tokens(self, key: str, ids) -> None:
        arr = np.ascontiguousarray(ids, dtype=np.int32)
        with atomic_write(self.tokens_path(key)) as f:
            np.save(f, arr, allow_pickle=False)

    def put_skip(self, key: str, relpath: str, reason: str) -> None:
        with atomic_write(self.skip_path(key), "w") as f:
            json.dump({"path": relpath, "reason": reason}, f)

    def get(self, key: str) -> np.ndarray | str | None:
        """The cached tokens (int32 array), the skip reason (str), or None if absent."""
        p = self.tokens_path(key)
        if p.is_file():
            return np.load(p, allow_pickle=False)
        s = self.skip_path(key)
        if s.is_file():
            return json.loads(s.read_text())["reason"]
        return None

    def prune(self, keep: set[str]) -> int:
        """Delete every entry whose key is not in ``keep``; returns how many were removed."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                key = f.name.split(".", 1)[0]
                if key not in keep:
                    f.unlink()
                    removed += 1
        return removed
