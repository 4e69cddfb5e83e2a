"""avclm.renumber: the model's slices renumbered so a continuation writes nothing.

Real x264 streams stand for the two sides: the output (a clip's first pictures) and the
model's side after a continuation (the output's last frame re-encoded as an IDR picture,
then P pictures after it). Spliced through :class:`OutputNumbering`, they must decode
strictly, with ffmpeg's ``-err_detect explode`` too, and look like the model's pictures.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from avclm import nal as nalmod
from avclm.bits import parse_slice_header, parse_sps
from avclm.codec import encode_frames
from avclm.profile import TINY
from avclm.renumber import OutputNumbering
from avclm.stream import decode_annexb


def _units(stream: bytes) -> list[bytes]:
    return nalmod.split_annexb_units(stream)[1]


def _pictures(units: list[bytes]) -> list[list[bytes]]:
    """The picture NAL units (start codes kept), one list per picture."""
    pictures: list[list[bytes]] = []
    for u in units:
        nal = nalmod.strip_start_code(u)
        if nalmod.is_picture_nal(nal):
            if nalmod.first_mb_in_slice(nal) == 0:
                pictures.append([])
            pictures[-1].append(u)
    return pictures


def _head(units: list[bytes]) -> list[bytes]:
    return [u for u in units if nalmod.nal_type(nalmod.strip_start_code(u))
            in (nalmod.NAL_SPS, nalmod.NAL_PPS)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def _frame_nums(stream: bytes, sps) -> list[tuple[bool, int]]:
    """(IDR?, frame_num) of each picture's first slice."""
    out = []
    for pic in _pictures(_units(stream)):
        h = parse_slice_header(nalmod.strip_start_code(pic[0]), sps)
        out.append((h.is_idr, h.frame_num))
    return out


@pytest.fixture(scope="module")
def spliced(smooth_frames):
    """The output holds pictures 0-3 of a real clip; the model restarts from picture 3
    decoded and re-encoded (an IDR picture it is prompted with, not written), and its
    side goes on with the clip's frames 4-7 as P pictures 1-4 after that IDR picture."""
    frames = smooth_frames(TINY, seed=3)
    first = encode_frames(frames[:4], TINY)
    shown = decode_annexb(first, TINY)
    model_side = encode_frames([shown[3]] + list(frames[4:8]), TINY)
    sps = parse_sps(nalmod.strip_start_code(_head(_units(first))[0]))
    numbering = OutputNumbering(sps)
    out = [numbering.output_unit(u) for u in _units(first)]
    assert numbering.can_reanchor
    numbering.reanchor()
    model_pictures = _pictures(_units(model_side))
    out += [numbering.output_unit(u) for pic in model_pictures[1:] for u in pic]
    return {"sps": sps, "out": b"".join(out), "first": first, "model_side": model_side,
            "shown": shown, "numbering": numbering}


def test_a_seamless_splice_decodes_strictly_and_shows_the_model_pictures(
        spliced, explode_frames):
    out = spliced["out"]
    frames = decode_annexb(out, TINY, strict=True)
    assert len(frames) == 8 and explode_frames(out) == 8
    for a, b in zip(frames[:4], spliced["shown"]):  # the output's own pictures, untouched
        assert np.array_equal(a, b)
    # the model's P pictures applied to the frame itself, not to its re-encode: close to
    # what the model's side shows (one re-encoding apart), nowhere near a repeat
    own = decode_annexb(spliced["model_side"], TINY)[1:]
    for k, (a, b) in enumerate(zip(frames[4:], own)):
        assert _psnr(a, b) > 30, k
    assert _psnr(frames[4], frames[3]) < _psnr(frames[4], own[0])


def test_frame_num_runs_on_and_only_frame_num_changes(spliced):
    sps = spliced["sps"]
    nums = _frame_nums(spliced["out"], sps)
    assert nums[0] == (True, 0) and not any(idr for idr, _ in nums[1:])
    step = [(b - a) % (1 << sps.log2_max_frame_num) for (_, a), (_, b) in itertools.pairwise(nums)]
    assert step == [1] * 7
    # each model slice differs from its output form in frame_num only
    model = [u for pic in _pictures(_units(spliced["model_side"]))[1:] for u in pic]
    written = [u for pic in _pictures(_units(spliced["out"]))[4:] for u in pic]
    assert len(model) == len(written)
    for m, w in zip(model, written):
        hm = parse_slice_header(nalmod.strip_start_code(m), sps)
        hw = parse_slice_header(nalmod.strip_start_code(w), sps)
        assert (hm.first_mb, hm.slice_type, hm.pps_id) == (hw.first_mb, hw.slice_type, hw.pps_id)
        assert hw.frame_num == (hm.frame_num + 3) % (1 << sps.log2_max_frame_num)
        assert len(w) == len(m) or abs(len(w) - len(m)) <= 2  # (emulation prevention)


def test_an_idr_picture_after_an_idr_picture_gets_another_id(smooth_frames):
    """The output's previous picture an IDR picture with idr_pic_id 0, the model's next
    picture an IDR picture with 0 too (it followed another IDR picture on its side): the
    output's gets 1; frame_num 0; and the offset ends (a later P picture is numbered
    from it)."""
    frames = smooth_frames(TINY, seed=5)
    a = _units(encode_frames(frames[:1], TINY))
    b = _units(encode_frames(frames[1:3], TINY))
    sps = parse_sps(nalmod.strip_start_code(_head(a)[0]))
    numbering = OutputNumbering(sps)
    out = [numbering.output_unit(u) for u in a]
    numbering.reanchor()  # (offset 0: the output's last picture is frame_num 0)
    out += [numbering.output_unit(u) for u in b if nalmod.is_picture_nal(
        nalmod.strip_start_code(u))]
    pics = _pictures(out)
    ids = [parse_slice_header(nalmod.strip_start_code(p[0]), sps).idr_pic_id for p in pics]
    assert ids[0] == 0 and ids[1] == 1 and ids[2] is None
    for u in pics[1]:  # every slice of the picture gets the same id
        assert parse_slice_header(nalmod.strip_start_code(u), sps).idr_pic_id == 1
    assert len(decode_annexb(b"".join(out), TINY, strict=True)) == 3
    assert _frame_nums(b"".join(out), sps) == [(True, 0), (True, 0), (False, 1)]


def test_parameter_sets_pass_and_no_picture_means_no_reanchor(smooth_frames):
    units = _units(encode_frames(smooth_frames(TINY, seed=1)[:2], TINY))
    sps = parse_sps(nalmod.strip_start_code(_head(units)[0]))
    numbering = OutputNumbering(sps)
    assert not numbering.can_reanchor
    with pytest.raises(ValueError, match="no picture that can stand for"):
        numbering.reanchor()
    later = _pictures(units)[0][1]  # a picture's second slice before any first one
    assert OutputNumbering(sps).output_unit(later) == later
    for u in units:  # a stream from its own start: nothing to renumber, the same bytes
        assert numbering.output_unit(u) == u
    assert numbering.can_reanchor
    # a non-reference picture (nal_ref_idc 0) cannot stand for the model's IDR picture
    last = _pictures(units)[-1]
    for u in last:
        nal = nalmod.strip_start_code(u)
        numbering.output_unit(u[:len(u) - len(nal)] + bytes([nal[0] & 0x9F]) + nal[1:])
    assert not numbering.can_reanchor
    # a stream whose slices carry a picture order count (pic_order_cnt_type 0): no
    numbering = OutputNumbering(dataclasses.replace(sps, pic_order_cnt_type=0))
    for u in units:
        numbering.output_unit(u)
    assert not numbering.can_reanchor
