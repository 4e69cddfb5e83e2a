"""Strict checks of a model directory's weights before anything loads them.

Only safetensors are read (a directory with ``pytorch_model.bin`` alone is refused:
pickles are never unpickled). :func:`read_safetensors_header` validates one file's
header against its size (empty, truncated, corrupt: :class:`ModelError`), and
:func:`check_weights_fit` compares the stored tensor names and shapes with the ones the
config's model has: any missing, unexpected or mis-shaped weight is an error, so a
``config.json`` that asks for more layers than were saved can never generate with
randomly initialised layers.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .errors import ModelError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")
#: bytes per element of each safetensors dtype
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
#: a header larger than this is not a real one (safetensors itself caps it at 100 MB)
MAX_HEADER = 100_000_000


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a model directory (one file, or the shards of an index)."""
    single, index = directory / SAFETENSORS, directory / SAFETENSORS_INDEX
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"{index}: not a safetensors index ({e})") from e
        for name in names:
            if not isinstance(name, str) or "/" in name or not (directory / name).is_file():
                raise ModelError(f"{index}: names a missing weights file {name!r}")
        return [directory / n for n in names]
    if any((directory / p).exists() for p in PICKLED):
        raise ModelError(f"{directory}: weights are pickled ({PICKLED[0]}); only safetensors "
                         "are loaded. Convert with "
                         "`save_pretrained(DIR, safe_serialization=True)`")
    raise ModelError(f"{directory}: not a model directory (missing {SAFETENSORS})")


def read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{tensor name: (dtype, shape)}`` from a safetensors file, after checking that the
    header parses and that every tensor's bytes lie inside the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if size == 0:
                raise ModelError(f"{path}: empty weights file")
            if len(head) < 8:
                raise ModelError(f"{path}: truncated weights file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise ModelError(f"{path}: not a safetensors file, or truncated (header of "
                                 f"{n} bytes in a file of {size})")
            raw = f.read(n)
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"{path}: not a safetensors file (header is not JSON)") from e
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file (header is not a JSON object)")
    data_size = size - 8 - n
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            count = 1
            for d in shape:
                count *= int(d)
            width = DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{path}: corrupt safetensors header (tensor {name!r})") from e
        if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start <= end:
            raise ModelError(f"{path}: corrupt safetensors header (tensor {name!r})")
        if end > data_size:
            raise ModelError(f"{path}: truncated weights file (tensor {name!r} ends at byte "
                             f"{8 + n + end}, the file has {size})")
        if end - start != count * width:
            raise ModelError(f"{path}: corrupt safetensors header (tensor {name!r} has "
                             f"{end - start} bytes for shape {list(shape)} {dtype})")
        tensors[name] = (dtype, tuple(int(d) for d in shape))
    return tensors


def stored_tensors(directory: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every stored tensor of a model directory: ``{name: (dtype, shape)}``."""
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for f in weight_files(directory):
        tensors.update(read_safetensors_header(f))
    if not tensors:
        raise ModelError(f"{directory}: the weights file holds no tensors")
    return tensors


def check_weights_fit(directory: Path, config) -> None:
    """Raise :class:`ModelError` unless the stored tensors are exactly the weights of the
    model ``config`` describes (names and shapes; a tied ``lm_head`` may be absent)."""
    import torch
    from transformers import AutoModelForCausalLM

    stored = stored_tensors(directory)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception as e:  # transformers raises many types for a bad config
        raise ModelError(f"{directory}: config.json does not describe a model ({e})") from e
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = set()
    if getattr(config, "tie_word_embeddings", False):
        tied = {k for k in expected if k.endswith("lm_head.weight")}
    missing = sorted(set(expected) - set(stored) - tied)
    unexpected = sorted(set(stored) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(stored) if expected[k] != stored[k][1])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if mismatched:
        k = mismatched[0]
        problems.append(f"{len(mismatched)} of the wrong shape (e.g. {k}: stored "
                        f"{list(stored[k][1])}, config needs {list(expected[k])})")
    if problems:
        raise ModelError(f"{directory}: weights do not fit config.json: " + "; ".join(problems))

