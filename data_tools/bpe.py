"""Training a tokenizer on a folder of media (the ``bpe`` command).

A seeded random sample of at most ``limit`` files is encoded to canonical bytes (in
worker processes; bad files are skipped and counted), a
:class:`codeclm.tokenizer.ByteTokenizer` with ``vocab_size`` entries is trained on the
bytes, and the tokens per sample it gives on that sample are measured.
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import numpy as np

from codeclm.errors import InputError, ProfileError
from codeclm.tokenizer import ByteTokenizer

from .sources import kind_of, list_files, modality_of_kind, source_root
from .workers import progress, run_parallel


@dataclasses.dataclass
class BpeResult:
    tokenizer: ByteTokenizer
    samples: int                 #: files the tokenizer was trained on
    skipped: list[tuple[str, str]]  #: (relative path, reason) of unusable files
    tokens_per_sample: float     #: mean, including <s> and </s>
    bytes_per_sample: float      #: mean modeled bytes
    pixels_per_sample: int

    def summary(self, path) -> str:
        t = self.tokenizer
        line = (f"trained a {t.vocab_size}-entry {t.modality} tokenizer on {self.samples} samples: "
                f"{self.tokens_per_sample:.1f} tokens/sample (incl. <s> </s>), "
                f"{self.bytes_per_sample:.1f} bytes/sample, "
                f"{self.pixels_per_sample / self.tokens_per_sample:.1f}x fewer than pixel values "
                f"-> {path}")
        if self.skipped:
            path, reason = self.skipped[0][0], self.skipped[0][1]
            line += f"; {len(self.skipped)} files skipped (first: {path}: {reason})"
        return line


_W: dict = {}


def _init_worker(profile) -> None:
    from codeclm.modality import modality_for

    _W["modality"] = modality_for(profile)


def _encode(path: str) -> bytes:
    return _W["modality"].encode_path(path)


def sample_files(src: str | os.PathLike, kind: str, limit: int | None, seed: int = 0) -> list[Path]:
    """Up to ``limit`` ``kind`` files under ``src`` (relative paths): a seeded random
    sample of the sorted list, returned sorted."""
    rels = [r for r in list_files(src) if kind_of(r) == kind]
    if not rels:
        raise InputError(f"{src}: no {kind} files found")
    if limit is not None and limit < len(rels):
        rels = sorted(random.Random(seed).sample(rels, limit), key=lambda p: p.as_posix())
    return rels


def train_bpe(src: str | os.PathLike, kind: str, profile, vocab_size: int,
              limit: int | None = 10_000, workers: int = 1, seed: int = 0,
              show_progress: bool | None = None) -> BpeResult:
    """Train a tokenizer on (a sample of) the ``kind`` files under ``src``."""
    from codeclm.modality import modality_for

    if modality_of_kind(kind) != profile.modality:
        raise ProfileError(f"profile {profile.name!r} is a {profile.modality} profile, "
                           f"not for {kind}s")
    root = source_root(src)
    rels = sample_files(src, kind, limit, seed)
    jobs = [str((root / r).resolve()) for r in rels]
    rel_of = dict(zip(jobs, (r.as_posix() for r in rels)))
    data: dict[str, bytes] = {}
    skipped: list[tuple[str, str]] = []
    results = run_parallel(_encode, jobs, workers, _init_worker, (profile,))
    for job, outcome in progress(results, total=len(jobs), enabled=show_progress,
                                 desc=f"encoding {kind}s", unit=kind):
        if outcome.status == "ok":
            data[rel_of[job]] = outcome.value
        else:
            skipped.append((rel_of[job], outcome.reason))
    if not data:
        raise InputError(f"{src}: none of the {len(jobs)} sampled {kind} files could be encoded "
                         f"(e.g. {skipped[0][0]}: {skipped[0][1]})")
    samples = [data[k] for k in sorted(data)]  # deterministic training order
    tok = ByteTokenizer.train(samples, vocab_size, profile.modality)
    lengths = np.array([len(ids) for ids in tok.encode_batch(samples)])
    return BpeResult(tok, len(samples), sorted(skipped), float(lengths.mean()),
                     float(np.mean([len(s) for s in samples])),
                     int(modality_for(profile).pixels_per_sample()))
