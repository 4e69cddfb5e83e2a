"""data_tools.workers: every input gets an outcome; a crashing worker costs only its input."""

from __future__ import annotations

import os

import pytest

from codeclm.errors import InputError
from data_tools.workers import run_parallel

_OFFSET = {"v": 0}


def _init(offset):
    _OFFSET["v"] = offset


def _work(x):
    if x == 3:
        raise InputError(f"item {x} is bad")
    if x == 5:
        raise ValueError("a bug")
    if x == 7:
        os._exit(9)  # a decoder that crashes the whole process
    return x * 10 + _OFFSET["v"]


@pytest.mark.parametrize("workers,batch", [(1, None), (2, 1), (2, 3)])
def test_outcomes(workers, batch):
    items = [i for i in range(10) if workers > 1 or i != 7]  # in-process, 7 would kill pytest
    got = dict(run_parallel(_work, items, workers, _init, (1,), batch=batch))
    assert set(got) == set(items)
    for i, o in got.items():
        if i == 3:
            assert o.status == "skip" and "item 3 is bad" in o.reason
        elif i == 5:
            assert o.status == "error" and "ValueError" in o.reason and "a bug" in o.reason
        elif i == 7:
            assert o.status == "skip" and "crashed" in o.reason
        else:
            assert o.status == "ok" and o.value == i * 10 + 1


def test_strict_raises_unexpected_errors():
    with pytest.raises(ValueError):
        list(run_parallel(_work, [4, 5], 1, _init, (0,), strict=True))
