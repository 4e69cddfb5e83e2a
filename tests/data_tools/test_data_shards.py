"""data_tools.shards: our writer is litdata's format byte for byte; litdata reads it back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codeclm.errors import InputError, TokenizerError
from data_tools.shards import (
    TENSOR_DTYPE_CODES,
    install_shards,
    read_samples,
    streaming_dataset,
    token_dtype,
    write_shards,
)


def _samples(seed, n, vocab):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, int(rng.integers(1, 300))).astype(np.int32) for _ in range(n)]


def _litdata_write(samples, out, vocab, chunk_bytes):
    import torch
    from litdata.streaming.item_loader import TokensLoader
    from litdata.streaming.writer import BinaryWriter

    dtype = torch.int16 if token_dtype(vocab) == "int16" else torch.int32
    w = BinaryWriter(str(out), chunk_bytes=chunk_bytes, item_loader=TokensLoader())
    for i, s in enumerate(samples):
        w.add_item(i, torch.from_numpy(s.astype(np.int64)).to(dtype))
    w.done()
    return json.loads((out / "0.index.json").read_text())


@pytest.mark.filterwarnings("ignore:An item was larger than the target chunk size")
@pytest.mark.parametrize(
    "vocab,chunk_bytes", [(320, 1000), (320, 1 << 20), (70000, 3000), (1024, 7)]
)
def test_writer_matches_litdata_binary_writer(tmp_path, vocab, chunk_bytes):
    samples = _samples(vocab + chunk_bytes, 60, vocab)
    info = write_shards(samples, tmp_path / "ours", vocab, chunk_bytes)
    ref = _litdata_write(samples, tmp_path / "ref", vocab, chunk_bytes)
    ours = json.loads((tmp_path / "ours" / "index.json").read_text())
    assert ours["chunks"] == ref["chunks"]
    assert ours["config"] == ref["config"]
    assert info["chunks"] == len(ref["chunks"]) and info["samples"] == 60
    assert info["tokens"] == sum(s.size for s in samples)
    for c in ref["chunks"]:
        assert (tmp_path / "ours" / c["filename"]).read_bytes() == (
            tmp_path / "ref" / c["filename"]
        ).read_bytes()
    if chunk_bytes < 1000:
        assert len(ref["chunks"]) == 60  # every sample larger than a chunk: one each
    # and the samples come back exactly
    got = list(read_samples(tmp_path / "ours"))
    assert len(got) == 60 and all((a == b).all() for a, b in zip(got, samples))


def test_dtype_codes_are_litdatas():
    # litdata's private dtype table is what its readers use; no public one exists
    import torch
    from litdata.constants import _TORCH_DTYPES_MAPPING

    inverse = {v: k for k, v in _TORCH_DTYPES_MAPPING.items()}
    assert TENSOR_DTYPE_CODES == {"int16": inverse[torch.int16], "int32": inverse[torch.int32]}
    assert token_dtype(32768) == "int16" and token_dtype(32769) == "int32"


@pytest.mark.parametrize("block", [1, 7, 64])
def test_streaming_dataset_with_tokens_loader_reads_the_tokens(tmp_path, block):
    samples = _samples(block, 40, 500)
    write_shards(samples, tmp_path, 500, chunk_bytes=2000)
    index = json.loads((tmp_path / "index.json").read_text())
    # what TokensLoader promises: each chunk's samples concatenated, cut into blocks,
    # a chunk's last dim % block tokens unused
    expected, i = [], 0
    for c in index["chunks"]:
        toks = np.concatenate(samples[i:i + c["chunk_size"]])
        i += c["chunk_size"]
        expected.append(toks[: len(toks) // block * block])
    expected = np.concatenate(expected)
    ds = streaming_dataset(tmp_path, block)
    got = np.concatenate([np.asarray(x) for x in ds]) if len(ds) else np.zeros(0)
    assert len(ds) == len(expected) // block
    assert got.dtype == np.int16
    assert (got == expected).all()
    if block == 1:
        assert (got == np.concatenate(samples)).all()


def test_install_replaces_the_old_set(tmp_path):
    out = tmp_path / "out"
    write_shards(_samples(0, 50, 300), out, 300, chunk_bytes=500)
    n_old = len(list(out.glob("chunk-*.bin")))
    new = _samples(1, 3, 300)
    write_shards(new, tmp_path / "stage", 300)
    install_shards(tmp_path / "stage", out)
    assert n_old > 1 and sorted(p.name for p in out.glob("chunk-*.bin")) == ["chunk-0-0.bin"]
    assert not (tmp_path / "stage").exists()
    assert all((a == b).all() for a, b in zip(read_samples(out), new))


def test_bad_samples_are_typed_errors(tmp_path):
    with pytest.raises(InputError):
        write_shards([], tmp_path / "a", 300)
    with pytest.raises(InputError):
        write_shards([np.zeros((2, 2), np.int32)], tmp_path / "b", 300)
    with pytest.raises(TokenizerError):
        write_shards([np.array([1, 300])], tmp_path / "c", 300)
    with pytest.raises(InputError):
        list(read_samples(tmp_path / "nothing"))
