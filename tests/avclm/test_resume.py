"""avclm.resume: the prompt that goes on with a half-written picture, on real canonical
units of a two-frame tiny clip (an IDR picture, then a P picture)."""

from __future__ import annotations

import pytest

from avclm import nal as nalmod
from avclm.codec import encode_frames
from avclm.profile import TINY
from avclm.resume import is_idr_picture, opens_p_picture, reference_units, resume_units


@pytest.fixture(scope="module")
def clip_units(smooth_frames):
    """(header, IDR picture slices, P picture slices), each unit with its start code."""
    units = nalmod.split_annexb_units(encode_frames(smooth_frames(TINY, 2), TINY))[1]
    header = [u for u in units if not nalmod.is_picture_nal(nalmod.strip_start_code(u))]
    slices = [u for u in units if u not in header]
    n = TINY.mbs_per_frame
    assert len(header) == 2 and len(slices) == 2 * n
    return header, slices[:n], slices[n:]


def test_the_reference_is_the_idr_picture_before_a_p_picture(clip_units):
    _, idr, p = clip_units
    assert opens_p_picture(p[:3]) and not opens_p_picture(idr[:3]) and not opens_p_picture([])
    assert is_idr_picture(idr) and not is_idr_picture(p) and not is_idr_picture([])
    assert reference_units(idr, p[:3]) == idr  # P picture 1: the output's own IDR bytes
    assert reference_units(p, p[:3]) == []  # a P reference would need re-encoding: none
    assert reference_units(idr, idr[:3]) == []  # an IDR picture predicts from nothing


def test_reference_first_then_the_latest_slices_that_fit(clip_units):
    header, idr, p = clip_units
    open_slices = p[:6]
    fixed, ref = sum(map(len, header)), sum(map(len, idr))
    everything = resume_units(header, idr, open_slices, len, 10**6)
    assert everything.units == header + idr + open_slices and everything.with_reference
    assert everything.tokens == fixed + ref + sum(map(len, open_slices))
    # room for the reference and the last two slices only: the earliest four are dropped
    budget = fixed + ref + len(p[4]) + len(p[5])
    two = resume_units(header, idr, open_slices, len, budget)
    assert two.units == header + idr + p[4:6] and (two.slices_kept, two.slices_dropped) == (2, 4)
    # the reference does not fit: slices only, the latest first
    no_ref = resume_units(header, idr, open_slices, len, fixed + ref - 1)
    assert not no_ref.with_reference and no_ref.units[:2] == header
    assert no_ref.units[2:] == open_slices[6 - no_ref.slices_kept:] and no_ref.slices_kept >= 1
    assert no_ref.tokens <= fixed + ref - 1
    # the header stays even over budget
    bare = resume_units(header, idr, open_slices, len, 0)
    assert bare.units == header and bare.slices_dropped == 6
