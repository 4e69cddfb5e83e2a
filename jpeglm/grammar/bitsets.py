"""Small helpers for the grammar's tables: Python-int bitsets <-> bool arrays, narrow ints."""

from __future__ import annotations

import numpy as np


def narrow_ints(table: np.ndarray, dt) -> np.ndarray:
    """``table`` as the smaller integer type ``dt`` (the tables are large; values are small)."""
    info = np.iinfo(dt)
    if len(table) and (table.min() < info.min or table.max() > info.max):
        raise AssertionError(f"table values {table.min()}..{table.max()} do not fit {dt}")
    return table.astype(dt)


def row_bits(row: np.ndarray) -> int:
    """Bool vector -> Python-int bitset (bit j = row[j])."""
    return int.from_bytes(np.packbits(row, bitorder="little").tobytes(), "little")


def bits_matrix(sets: list[int], n: int) -> np.ndarray:
    """Python-int bitsets -> bool matrix [len(sets), n] (column j = bit j)."""
    nbytes = (n + 7) // 8
    raw = b"".join(v.to_bytes(nbytes, "little") for v in sets)
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(len(sets), nbytes)
    return np.unpackbits(arr, axis=1, bitorder="little")[:, :n].astype(bool)


_COMPILED: dict = {}
