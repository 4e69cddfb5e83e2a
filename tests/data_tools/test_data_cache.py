"""data_tools.cache: records survive intact or not at all; torn tails are ignored."""

from __future__ import annotations

import numpy as np

from data_tools.cache import InputCache, LogWriter, input_key


def _key(i):
    return input_key(f"f{i}.png", i, i, "p", "t")


def test_records_round_trip_and_first_wins(tmp_path):
    w = LogWriter(tmp_path)
    w.put_tokens(_key(0), [1, 5, 6, 2])
    w.put_skip(_key(1), "f1.png", "not an image")
    w.put_tokens(_key(0), [1, 9, 2])  # a duplicate: the first record counts
    w.close()
    c = InputCache(tmp_path).scan()
    assert (c.get(_key(0)) == np.array([1, 5, 6, 2])).all()
    assert c.get(_key(1)) == "not an image"
    assert c.get(_key(2)) is None and not c.has(_key(2))


def test_torn_tail_is_ignored(tmp_path):
    w = LogWriter(tmp_path)
    for i in range(5):
        w.put_tokens(_key(i), np.arange(1, 50 + i))
    w.close()
    data = w.path.read_bytes()
    for cut in (len(data) - 1, len(data) - 30, len(data) - 60):
        w.path.write_bytes(data[:cut])  # a record cut short by a kill
        c = InputCache(tmp_path).scan()
        assert len(c.index) == 4 and not c.has(_key(4))
        c.close()
    # a flipped byte in the middle: that record and everything after it in the file
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0xFF
    w.path.write_bytes(bytes(bad))
    c = InputCache(tmp_path).scan()
    assert 0 < len(c.index) < 5
    for k in c.index:
        assert c.get(k)[0] == 1


def test_compact_keeps_only_the_given_keys(tmp_path):
    for part in range(3):
        w = LogWriter(tmp_path)
        for i in range(part * 4, part * 4 + 4):
            w.put_tokens(_key(i), [1, i, 2])
        w.close()
    c = InputCache(tmp_path).scan()
    keep = [_key(i) for i in (7, 1, 3)]
    c.compact(keep)
    assert [p.name for p in tmp_path.glob("*.log")] == ["compact.log"]
    assert set(c.index) == set(keep)
    assert [int(c.get(k)[1]) for k in keep] == [7, 1, 3]
