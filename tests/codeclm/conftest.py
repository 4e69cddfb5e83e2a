"""Fixtures for the training tests: small litdata token shard sets made on the spot.

``build_shards(out, samples, modality, ...)`` tokenizes byte strings with a real
:class:`ByteTokenizer` and writes a shard directory in the layout ``data_tools`` makes
(``index.json`` + chunks, ``tokenizer.json``, ``profile.json``, ``stats.json``), either
through ``data_tools.shards.write_shards`` (int16 torch tensors, the production writer)
or ``litdata.optimize`` (int32 numpy arrays), so both token formats are exercised.

Sample bytes come from the real codecs where they exist (tiny profiles: synthetic
images -> JPEG, synthetic clips -> H.264); the golden-loss data set is plain seeded
synthetic bytes through a byte-only tokenizer, so it never changes with a codec.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from codeclm import versions
from codeclm.profile import get_profile, save_profile
from codeclm.tokenizer import MIN_VOCAB, ByteTokenizer

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_shards(out: Path, samples: list[bytes], modality: str, vocab_size: int = 320,
                 tokenizer: ByteTokenizer | None = None, profile_name: str = "tiny",
                 writer: str = "data_tools", chunk_tokens: int = 4096) -> Path:
    """Write a shard directory for ``samples`` (modeled byte strings); returns ``out``."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    tok = tokenizer or ByteTokenizer.train(samples, vocab_size, modality)
    ids = [np.asarray(x, np.int64) for x in tok.encode_batch(samples)]
    if writer == "data_tools":
        from data_tools.shards import write_shards

        write_shards(ids, out, tok.vocab_size, chunk_bytes=chunk_tokens * 2)
    elif writer == "optimize":
        import litdata
        from litdata.streaming.item_loader import TokensLoader

        litdata.optimize(
            fn=functools.partial(np.asarray, dtype=np.int32),
            inputs=[x.tolist() for x in ids],
            output_dir=str(out),
            chunk_size=chunk_tokens,
            item_loader=TokensLoader(),
            num_workers=1,
            reorder_files=False,
            start_method="fork",
        )
    else:
        raise ValueError(writer)
    tok.save(out / "tokenizer.json")
    save_profile(get_profile(modality, profile_name), out, versions=versions.current(modality))
    lengths = np.array([len(x) for x in ids])
    (out / "stats.json").write_text(json.dumps({
        "samples": len(ids), "total_tokens": int(lengths.sum()),
        "tokens_per_sample": {"mean": float(lengths.mean())},
        "bytes_per_sample": {"mean": float(np.mean([len(s) for s in samples]))}}))
    return out


def synthetic_bytes(n: int, seed: int, lo: int = 60, hi: int = 160) -> list[bytes]:
    """Seeded byte strings with structure a tiny model can pick up (runs, a repeated motif)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        motif = rng.integers(0, 256, 6, dtype=np.uint8).tobytes()
        parts, size = [b"\xff\xd8"], int(rng.integers(lo, hi))
        while sum(map(len, parts)) < size:
            r = rng.random()
            if r < 0.4:
                parts.append(motif)
            elif r < 0.7:
                parts.append(bytes([int(rng.integers(0, 256))]) * int(rng.integers(2, 6)))
            else:
                parts.append(rng.integers(0, 256, 3, dtype=np.uint8).tobytes())
        out.append(b"".join(parts)[:size])
    return out


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def jpeg_samples(tmp: Path, n: int) -> list[bytes]:
    """Real canonical JPEG bytes (tiny profile) of ``n`` synthetic images."""
    from codeclm.modality import modality_for

    modality = modality_for(get_profile("jpeg", "tiny"))
    if has_module("data_tools.synth"):
        from data_tools.synth import synth

        paths = synth(tmp / "img", "image", modality.profile, n, seed=0)
    else:
        from PIL import Image

        rng = np.random.default_rng(0)
        (tmp / "img").mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(n):
            img = np.zeros((64, 64, 3), np.uint8)
            img[:] = rng.integers(0, 256, 3)
            x, y = rng.integers(0, 40, 2)
            img[y:y + 20, x:x + 20] = rng.integers(0, 256, 3)
            paths.append(tmp / "img" / f"{i}.png")
            Image.fromarray(img).save(paths[-1])
    return [modality.encode_path(str(p)) for p in paths]


def h264_samples(tmp: Path, n: int) -> list[bytes]:
    """Real canonical H.264 bytes (tiny profile) when the AVC codec exists, else random bytes
    with start codes (the tokenizer still splits them into NAL-like units)."""
    if has_module("avclm.modality") and has_module("data_tools.synth"):
        from codeclm.modality import modality_for
        from data_tools.synth import synth

        modality = modality_for(get_profile("h264", "tiny"))
        paths = synth(tmp / "vid", "video", modality.profile, n, seed=0)
        return [modality.encode_path(str(p)) for p in paths]
    rng = np.random.default_rng(1)
    return [b"".join(b"\x00\x00\x01" + rng.integers(0, 256, int(rng.integers(5, 20)),
                                                     dtype=np.uint8).tobytes() for _ in range(12))
            for _ in range(n)]


@pytest.fixture(scope="session")
def shard_factory():
    return build_shards


@pytest.fixture(scope="session")
def jpeg_shards(tmp_path_factory) -> Path:
    """Real tiny-profile JPEG samples -> BPE (384) -> shards (int16, data_tools writer)."""
    tmp = tmp_path_factory.mktemp("jpeg")
    return build_shards(tmp / "shards", jpeg_samples(tmp, 48), "jpeg", vocab_size=384)


@pytest.fixture(scope="session")
def h264_shards(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("h264")
    return build_shards(tmp / "shards", h264_samples(tmp, 6), "h264", vocab_size=384,
                        chunk_tokens=8192)


@pytest.fixture(scope="session")
def golden_shards(tmp_path_factory) -> Path:
    """Deterministic synthetic bytes through a byte-only tokenizer (no merges), written by
    ``litdata.optimize``: the same token ids on every machine and library version."""
    tmp = tmp_path_factory.mktemp("golden")
    samples = synthetic_bytes(160, seed=1234, lo=30, hi=60)
    tok = ByteTokenizer.train(samples, MIN_VOCAB, "jpeg")
    return build_shards(tmp / "shards", samples, "jpeg", tokenizer=tok, writer="optimize",
                        chunk_tokens=2048)
