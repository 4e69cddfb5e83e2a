"""Streaming decoder: frames as soon as a picture is whole; strict and tolerant damage handling."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avclm import nal
from avclm.modality import AvcModality
from avclm.profile import PAPER, TINY
from avclm.stream import StreamDecoder, decode_annexb, decode_annexb_with_stats
from codeclm.errors import DecodeError
from codeclm.modality import modality_for, record

M = TINY.mbs_per_frame


def _nals(data):
    return nal.split_annexb(data)


def _slice_index(nals, picture, mb):
    """Index in ``nals`` of slice ``mb`` of ``picture`` (SPS, PPS come first)."""
    return 2 + picture * M + mb


# --------------------------------------------------------------------------- clean streams

def test_frames_arrive_with_the_last_slice_of_each_picture(tiny_stream, tmp_path, reference_decode):
    dec = StreamDecoder(TINY)
    _, units = nal.split_annexb_units(tiny_stream)
    got, when = [], []
    for i, unit in enumerate(units):  # units keep their start codes
        out = dec.feed(unit)
        got += out
        when += [i] * len(out)
    assert dec.flush() == []
    # no lag: picture k is returned by its own last slice, unit 2 + (k + 1) * M - 1
    assert when == [2 + (k + 1) * M - 1 for k in range(TINY.frames)]
    ref = reference_decode(tiny_stream, tmp_path)
    assert len(got) == len(ref) == TINY.frames
    assert all(a.shape == (64, 64, 3) and a.dtype == np.uint8 for a in got)
    assert all(np.array_equal(a, b) for a, b in zip(got, ref))
    assert dec.damaged_frames == 0 and dec.pictures == TINY.frames


def test_paper_stream_matches_reference_decoder(paper_stream, tmp_path, reference_decode):
    frames = decode_annexb(paper_stream, PAPER)
    ref = reference_decode(paper_stream, tmp_path)
    assert len(frames) == 15 and all(np.array_equal(a, b) for a, b in zip(frames, ref))
    tolerant, dec = decode_annexb_with_stats(paper_stream, PAPER, strict=False)
    assert dec.damaged_frames == 0
    assert all(np.array_equal(a, b) for a, b in zip(frames, tolerant))


def test_feed_accepts_nals_without_start_codes(tiny_stream):
    dec = StreamDecoder(TINY)
    frames = [f for n in _nals(tiny_stream) for f in dec.feed(n)] + dec.flush()
    assert len(frames) == TINY.frames


@pytest.mark.parametrize("strict", [True, False])
def test_decoder_starts_over_after_flush(tiny_stream, strict):
    dec = StreamDecoder(TINY, strict=strict)
    frames = []
    for _ in range(2):
        frames += [f for n in _nals(tiny_stream) for f in dec.feed(n)] + dec.flush()
    assert len(frames) == dec.frames == 2 * TINY.frames and dec.damaged_frames == 0
    assert all(np.array_equal(a, b) for a, b in zip(frames[:8], frames[8:]))


# --------------------------------------------------------------------------- damage

def _flip_payload(n: bytes) -> bytes:
    """Invert the slice data after the first 3 header bytes (header stays readable)."""
    return n[:3] + bytes(b ^ 0xFF for b in n[3:])


def _damage(kind, nals):
    n = list(nals)
    if kind == "missing_slice":
        del n[_slice_index(n, 3, 5)]
    elif kind == "repeated_slice":
        n.insert(_slice_index(n, 3, 5), n[_slice_index(n, 3, 5)])
    elif kind == "swapped_slices":
        i = _slice_index(n, 2, 7)
        n[i], n[i + 1] = n[i + 1], n[i]
    elif kind == "corrupt_slice_data":
        i = max(range(2, 2 + M), key=lambda k: len(n[k]))  # biggest I slice
        n[i] = _flip_payload(n[i])
    elif kind == "truncated_slice":
        i = max(range(2, 2 + M), key=lambda k: len(n[k]))
        n[i] = n[i][: len(n[i]) // 3]
    elif kind == "missing_picture":
        del n[_slice_index(n, 4, 0):_slice_index(n, 5, 0)]
    elif kind == "no_parameter_sets":
        n = n[2:]
    elif kind == "starts_with_p_picture":
        n = n[:2] + n[_slice_index(n, 1, 0):]
    elif kind == "stream_ends_mid_picture":
        n = n[:_slice_index(n, 6, 9)]
    elif kind == "forbidden_bit":
        i = _slice_index(n, 1, 3)
        n[i] = bytes([n[i][0] | 0x80]) + n[i][1:]
    elif kind == "unknown_nal_type":
        n.insert(_slice_index(n, 2, 0), b"\x1e\x12\x34")  # type 30, unspecified
    elif kind == "garbage_header":
        n[_slice_index(n, 2, 4)] = b"\x65\xff\xff\xff"
    return n


DAMAGE = ["missing_slice", "repeated_slice", "swapped_slices", "corrupt_slice_data",
          "truncated_slice", "missing_picture", "no_parameter_sets", "starts_with_p_picture",
          "stream_ends_mid_picture", "forbidden_bit", "unknown_nal_type", "garbage_header"]
#: pictures a tolerant decoder should still report
PICTURES = {"missing_picture": 7, "starts_with_p_picture": 7, "stream_ends_mid_picture": 7}


@pytest.mark.parametrize("kind", DAMAGE)
def test_strict_raises_on_damage(tiny_stream, kind):
    data = nal.join_annexb(_damage(kind, _nals(tiny_stream)))
    with pytest.raises(DecodeError):
        decode_annexb(data, TINY, strict=True)


@pytest.mark.parametrize("kind", DAMAGE)
def test_tolerant_conceals_damage(tiny_stream, kind, psnr):
    clean = decode_annexb(tiny_stream, TINY)
    frames, dec = decode_annexb_with_stats(nal.join_annexb(_damage(kind, _nals(tiny_stream))),
                                           TINY, strict=False)
    assert len(frames) == dec.pictures == PICTURES.get(kind, TINY.frames)
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    if kind == "no_parameter_sets":  # the canonical SPS/PPS stand in: nothing is lost
        assert dec.damaged_frames == 0
    elif kind == "unknown_nal_type":  # skipped between pictures: no picture is hurt
        assert dec.damaged_frames == 0 and dec.skipped_nals == 1
    else:
        assert 1 <= dec.damaged_frames <= len(frames)
    if kind in ("missing_slice", "repeated_slice", "no_parameter_sets", "unknown_nal_type"):
        # concealment is local: the damaged picture still looks like the clean one
        assert min(psnr(a, b) for a, b in zip(frames, clean)) > 20


def test_strict_rejects_stream_for_another_profile(tiny_stream):
    with pytest.raises(DecodeError, match="64x64"):
        decode_annexb(tiny_stream, PAPER, strict=True)


def test_giant_sps_is_rejected_or_ignored(tiny_stream, craft_sps):
    """An SPS claiming 20000x20000 never reaches the decoder's allocator."""
    nals = _nals(tiny_stream)
    data = nal.join_annexb([craft_sps(1250, 1250)] + nals[1:])
    with pytest.raises(DecodeError, match="20000x20000"):
        decode_annexb(data, TINY, strict=True)
    frames = decode_annexb(data, TINY, strict=False)  # canonical SPS used instead
    assert len(frames) == TINY.frames and frames[0].shape == (64, 64, 3)


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00", b"not h264 at all",
                                  b"\x00\x00\x01\x09\xf0"])
def test_strict_rejects_non_streams(data):
    with pytest.raises(DecodeError):
        decode_annexb(data, TINY, strict=True)
    assert decode_annexb(data, TINY, strict=False) == []


def test_leading_zero_bytes_are_allowed(tiny_stream):
    assert len(decode_annexb(b"\x00\x00" + tiny_stream, TINY)) == TINY.frames


def test_frame_cap(tiny_stream):
    with pytest.raises(DecodeError, match="more than 3 frames"):
        decode_annexb(tiny_stream, TINY, strict=True, max_frames=3)
    frames, dec = decode_annexb_with_stats(tiny_stream, TINY, strict=False, max_frames=3)
    assert len(frames) == 3 and dec.dropped_pictures == TINY.frames - 3


def test_random_bit_errors_keep_picture_count(tiny_stream):
    """Scattered byte errors: one frame per picture, most damage counted, no exception."""
    rng = random.Random(0)
    nals = _nals(tiny_stream)
    for i in rng.sample(range(2, len(nals)), 6):
        b = bytearray(nals[i])
        j = rng.randrange(1, len(b))
        b[j] ^= 1 << rng.randrange(8)
        nals[i] = bytes(b)
    frames, dec = decode_annexb_with_stats(nal.join_annexb(nals), TINY, strict=False)
    assert 6 <= len(frames) <= TINY.frames + 1
    assert dec.damaged_frames >= 1


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=0, max_size=6)),
                     max_size=4))
def test_tolerant_never_raises(tiny_stream, cuts):
    data = bytearray(tiny_stream)
    for pos, junk in cuts:  # overwrite bytes anywhere
        pos %= len(data)
        data[pos:pos + len(junk)] = junk
    frames = AvcModality(TINY).decode_tolerant(bytes(data))
    assert frames and all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)


# --------------------------------------------------------------------------- modality

def test_modality(tiny_stream, clip):
    m = modality_for(TINY)
    rec = record(m.name)
    assert isinstance(m, AvcModality) and m.name == "h264" and rec.marker_side == "before"
    header, units = m.split_units(tiny_stream)
    assert header + b"".join(units) == tiny_stream
    assert [nal.nal_type(n) for n in nal.split_annexb(header)] == [nal.NAL_SPS, nal.NAL_PPS]
    assert len(units) == TINY.frames * M
    import re

    assert all(re.match(rec.unit_marker, u) for u in units)
    assert all(len(re.findall(rec.unit_marker, u)) == 1 for u in units)
    assert m.pixels_per_sample() == 64 * 64 * 3 * 8
    assert PAPER.pixels_per_clip == 256 * 144 * 3 * 15
    assert len(m.decode_tolerant(tiny_stream)) == TINY.frames
    grey = m.decode_tolerant(b"rubbish")
    assert len(grey) == TINY.frames and all((g == 128).all() for g in grey)
    assert m.encode_path(str(clip("short"))).startswith(header)
