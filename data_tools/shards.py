"""litdata token shards: writing them deterministically, reading them back.

A shard set is what ``litdata.optimize(fn, inputs, out, item_loader=TokensLoader(),
chunk_bytes=...)`` writes when ``fn`` yields one 1-D token tensor per sample:
``chunk-0-<i>.bin`` files (litdata's chunk format: uint32 item count, uint32 offsets,
then the items' raw token bytes back to back) and an ``index.json`` whose config says
``data_format: ["no_header_tensor:<dtype>"]`` and ``item_loader: "TokensLoader"``.
Training reads it with::

    from litdata.streaming.item_loader import TokensLoader
    litdata.StreamingDataset(DIR, item_loader=TokensLoader(block_size=B))

which concatenates the samples of each chunk and cuts them into blocks of ``B`` tokens
(a chunk's last ``dim % B`` tokens are not used; with the default 64 MB chunks that is
well under 0.1%).

The files are written here, from one process and in input order, byte for byte as
litdata's own ``BinaryWriter`` (the writer ``optimize`` uses) writes them (a test checks
this against litdata 0.2.44), so the same samples give byte-identical chunks and the
command does not need to import torch. ``index.json`` leaves out the wall-clock
``updated_at`` that ``optimize`` writes and puts a hash of the chunk list there instead
(litdata uses it only to name its download cache).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from codeclm.errors import InputError, TokenizerError
from codeclm.io import atomic_write
from codeclm.litdata_offline import offline_litdata

INDEX_FILE = "index.json"
DEFAULT_CHUNK_BYTES = 64 << 20


#: litdata's dtype codes for ``no_header_tensor`` (``{v: k for k, v in _TORCH_DTYPES_MAPPING}``
#: keeps the last alias: torch.short = 14, torch.int = 16); checked against litdata in tests
TENSOR_DTYPE_CODES = {"int16": 14, "int32": 16}
NUMPY_DTYPES = {"int16": np.int16, "int32": np.int32}
#: ``treespec_dumps`` of a single tensor leaf (litdata.utilities._pytree)
LEAF_SPEC = '[1, {"type": null, "context": null, "children_spec": []}]'


def token_dtype(vocab_size: int) -> str:
    """"int16" when every id fits (vocab <= 32768), else "int32"."""
    return "int16" if vocab_size <= 1 << 15 else "int32"


def _chunk_bytes(items: list[bytes]) -> bytes:
    """litdata's chunk layout: uint32 count, uint32 offsets[count + 1], item bytes."""
    sizes = [len(b) for b in items]
    header = 4 * (len(items) + 2)
    offsets = (np.cumsum([0] + sizes) + header).astype(np.uint32)
    return np.uint32(len(items)).tobytes() + offsets.tobytes() + b"".join(items)


def write_shards(samples: Iterable[np.ndarray], out_dir: str | os.PathLike, vocab_size: int,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> dict:
    """Write 1-D token arrays as a litdata TokensLoader shard set into an empty ``out_dir``.

    Byte for byte what litdata's ``BinaryWriter(out_dir, chunk_bytes=chunk_bytes,
    item_loader=TokensLoader())`` writes for the same 1-D tensors (checked in the tests),
    without importing torch: a chunk takes samples greedily while their token bytes fit
    in ``chunk_bytes`` (a larger sample gets a chunk of its own).
    Returns ``{"chunks": n_chunks, "samples": n, "tokens": total, "dtype": "int16"|"int32"}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    chunks: list[dict] = []
    pending: list[bytes] = []
    pending_dim = pending_bytes = 0

    def flush():
        nonlocal pending, pending_dim, pending_bytes
        name = f"chunk-0-{len(chunks)}.bin"
        data = _chunk_bytes(pending)
        with atomic_write(out_dir / name) as f:
            f.write(data)
        chunks.append({"chunk_bytes": len(data), "chunk_size": len(pending), "dim": pending_dim,
                       "filename": name})
        pending, pending_dim, pending_bytes = [], 0, 0

    n = total = 0
    for arr in samples:
        arr = np.asarray(arr)
        if arr.ndim != 1 or arr.size == 0:
            raise InputError(f"sample {n}: expected a non-empty 1-D token array, got {arr.shape}")
        if arr.max() >= vocab_size or arr.min() < 0:
            raise TokenizerError(f"sample {n}: token id outside [0, {vocab_size})")
        data = arr.astype(NUMPY_DTYPES[dtype]).tobytes()
        if pending and pending_bytes + len(data) > chunk_bytes:
            flush()
        pending.append(data)
        pending_dim += arr.size
        pending_bytes += len(data)
        n += 1
        total += arr.size
    if n == 0:
        raise InputError("no samples to write")
    flush()
    config = {"chunk_bytes": chunk_bytes, "chunk_size": None, "compression": None,
              "data_format": [f"no_header_tensor:{TENSOR_DTYPE_CODES[dtype]}"],
              "data_spec": LEAF_SPEC, "encryption": None, "item_loader": "TokensLoader"}
    index = {
        "chunks": chunks,
        "config": config,
        "updated_at": hashlib.sha256(json.dumps(chunks, sort_keys=True).encode()).hexdigest()[:16],
    }
    with atomic_write(out_dir / INDEX_FILE, "w") as f:
        json.dump(index, f, sort_keys=True)
    return {"chunks": len(chunks), "samples": n, "tokens": total, "dtype": dtype}


def shard_files(directory: str | os.PathLike) -> list[Path]:
    """The chunk files and index of a shard set in ``directory`` (sorted)."""
    d = Path(directory)
    files = sorted(d.glob("chunk-*.bin"))
    if (d / INDEX_FILE).is_file():
        files.append(d / INDEX_FILE)
    return files


def install_shards(staging: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Replace ``out_dir``'s shard set with the one built in ``staging`` (same filesystem).

    The old ``index.json`` goes first and the new one lands last, so a reader never sees
    an index that names missing chunks; a kill in between leaves no index (the next
    run rebuilds it).
    """
    out_dir = Path(out_dir)
    old = shard_files(out_dir)
    if (out_dir / INDEX_FILE) in old:
        (out_dir / INDEX_FILE).unlink()
        old.remove(out_dir / INDEX_FILE)
    for f in old:
        f.unlink()
    new = shard_files(staging)
    for f in new:
        if f.name != INDEX_FILE:
            os.replace(f, out_dir / f.name)
    os.replace(Path(staging) / INDEX_FILE, out_dir / INDEX_FILE)
    shutil.rmtree(staging, ignore_errors=True)


def read_samples(directory: str | os.PathLike) -> Iterator[np.ndarray]:
    """Every sample's token array, in order, straight from the chunk files (no litdata)."""
    d = Path(directory)
    if not (d / INDEX_FILE).is_file():
        raise InputError(f"{d}: not a shard set (no {INDEX_FILE})")
    index = json.loads((d / INDEX_FILE).read_text())
    fmt = index["config"]["data_format"][0]
    codes = {f"no_header_tensor:{c}": NUMPY_DTYPES[d] for d, c in TENSOR_DTYPE_CODES.items()}
    if fmt not in codes:
        raise InputError(f"{d}: not a token shard set written by data_tools (data format {fmt})")
    np_dtype = codes[fmt]
    for chunk in index["chunks"]:
        raw = (d / chunk["filename"]).read_bytes()
        n = int(np.frombuffer(raw, np.uint32, 1)[0])
        offsets = np.frombuffer(raw, np.uint32, n + 1, offset=4)
        for a, b in itertools.pairwise(offsets):
            yield np.frombuffer(raw[a:b], np_dtype)


def streaming_dataset(directory: str | os.PathLike, block_size: int, **kwargs):
    """``litdata.StreamingDataset`` over a shard set, in blocks of ``block_size`` tokens."""
    offline_litdata()
    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    return StreamingDataset(
        str(Path(directory).resolve()), item_loader=TokensLoader(block_size=block_size), **kwargs
    )

