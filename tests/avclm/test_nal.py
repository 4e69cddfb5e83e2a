"""NAL tools against real x264 streams and hand-made bit patterns."""

from __future__ import annotations

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avclm import nal
from avclm.profile import PAPER, TINY
from codeclm.errors import DecodeError

# --------------------------------------------------------------------------- Annex-B

def test_split_handles_3_and_4_byte_start_codes_and_trailing_zeros():
    data = b"\x00\x00\x00\x01\x67\xaa" + b"\x00\x00\x01\x68\xbb\x00\x00" + b"\x00\x00\x01\x65\xcc"
    assert nal.split_annexb(data) == [b"\x67\xaa", b"\x68\xbb", b"\x65\xcc"]
    lead, units = nal.split_annexb_units(b"junk" + data)
    assert lead == b"junk"
    # the zero before "00 00 01" is read as the zero_byte of a 4-byte start code
    assert units == [b"\x00\x00\x00\x01\x67\xaa", b"\x00\x00\x01\x68\xbb\x00",
                     b"\x00\x00\x00\x01\x65\xcc"]
    assert lead + b"".join(units) == b"junk" + data
    assert nal.leading_garbage(b"junk" + data) == b"junk"
    assert nal.strip_start_code(units[1]) == b"\x68\xbb"
    assert nal.strip_start_code(b"\x68\xbb") == b"\x68\xbb"


def test_join_then_split_round_trip_and_x264_start_code_layout(tiny_stream):
    nals = nal.split_annexb(tiny_stream)
    assert nal.split_annexb(nal.join_annexb(nals)) == nals
    assert nal.split_annexb(nal.join_annexb(nals, long_start_codes=True)) == nals
    lead, units = nal.split_annexb_units(tiny_stream)
    assert lead == b"" and b"".join(units) == tiny_stream
    # x264: 4-byte start codes for SPS, PPS and the first slice of each later picture
    long = [i for i, u in enumerate(units) if u.startswith(nal.LONG_START_CODE)]
    firsts = [i for i, u in enumerate(units)
              if nal.is_picture_nal(nal.strip_start_code(u))
              and nal.first_mb_in_slice(nal.strip_start_code(u)) == 0]
    assert long == [0, 1] + firsts[1:]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=8))
def test_split_join_property(payloads):
    # any RBSP whose EBSP is a valid NAL payload survives join -> split
    nals = [b"\x41" + nal.rbsp_to_ebsp(p + b"\x80") for p in payloads]
    assert nal.split_annexb(nal.join_annexb(nals)) == nals


# --------------------------------------------------------------------------- EBSP

def test_emulation_prevention_known_cases():
    assert nal.rbsp_to_ebsp(b"\x00\x00\x01") == b"\x00\x00\x03\x01"
    assert nal.rbsp_to_ebsp(b"\x00\x00\x00\x00") == b"\x00\x00\x03\x00\x00\x03"
    assert nal.rbsp_to_ebsp(b"\x00\x00\x04") == b"\x00\x00\x04"
    assert nal.ebsp_to_rbsp(b"\x00\x00\x03\x01\x00\x00\x03\x03") == b"\x00\x00\x01\x00\x00\x03"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64).map(lambda b: b.replace(b"\x01", b"\x00")) | st.binary(max_size=64))
def test_emulation_prevention_round_trip(rbsp):
    ebsp = nal.rbsp_to_ebsp(rbsp)
    assert nal.ebsp_to_rbsp(ebsp) == rbsp
    for bad in (b"\x00\x00\x00", b"\x00\x00\x01", b"\x00\x00\x02"):
        assert bad not in ebsp


# --------------------------------------------------------------------------- bits

def test_exp_golomb_reader(bitwriter):
    values = [0, 1, 2, 3, 7, 8, 254, 255, 65535]
    w = bitwriter()
    for v in values:
        w.ue(v)
    for v in (0, 1, -1, 5, -7):
        w.se(v)
    w.u(5, 0b10110)
    r = nal.BitReader(w.rbsp())
    assert [r.ue() for _ in values] == values
    assert [r.se() for _ in range(5)] == [0, 1, -1, 5, -7]
    assert r.u(5) == 0b10110
    assert r.u(1) == 1  # stop bit
    with pytest.raises(DecodeError):
        r.u(16)
    with pytest.raises(DecodeError):
        nal.BitReader(b"\x00\x00\x00\x00\x00").ue()


# --------------------------------------------------------------------------- headers

@pytest.mark.parametrize("profile", [TINY, PAPER], ids=["tiny", "paper"])
def test_parameter_sets_of_canonical_stream(profile):
    from avclm.codec import canonical_header

    sps_nal, pps_nal = nal.split_annexb(canonical_header(profile))
    sps, pps = nal.parse_sps(sps_nal), nal.parse_pps(pps_nal)
    assert (sps.width, sps.height) == (profile.width, profile.height)
    assert sps.mbs_per_frame == profile.mbs_per_frame
    assert sps.profile_idc == 66  # baseline
    assert sps.max_num_ref_frames == profile.refs
    assert sps.frame_mbs_only and sps.pic_order_cnt_type == 2
    assert not pps.entropy_coding_mode  # CAVLC
    assert pps.sps_id == sps.sps_id and pps.num_slice_groups == 1
    assert nal.nal_ref_idc(sps_nal) == 3 and not nal.is_picture_nal(sps_nal)


def test_crafted_sps_parses(craft_sps):
    sps = nal.parse_sps(craft_sps(1250, 1250))
    assert (sps.width, sps.height) == (20000, 20000)
    with pytest.raises(DecodeError):
        nal.parse_sps(b"\x67\x42")  # truncated
    with pytest.raises(DecodeError):
        nal.parse_pps(craft_sps(4, 4))  # wrong type


def test_slice_headers_and_pictures(tiny_stream):
    nals = nal.split_annexb(tiny_stream)
    sps = nal.parse_sps(nals[0])
    pictures = nal.group_pictures(nals)
    assert len(pictures) == TINY.frames
    assert pictures[0][:2] == nals[:2]  # SPS/PPS open the first access unit
    for i, pic in enumerate(pictures):
        slices = [n for n in pic if nal.is_picture_nal(n)]
        assert len(slices) == TINY.mbs_per_frame
        heads = [nal.parse_slice_header(n, sps) for n in slices]
        assert [h.first_mb for h in heads] == list(range(TINY.mbs_per_frame))
        assert {h.frame_num for h in heads} == {i % (1 << sps.log2_max_frame_num)}
        assert {h.kind for h in heads} == ({"I"} if i == 0 else {"P"})
        assert all(h.is_idr == (i == 0) for h in heads)
        assert nal.slice_type(slices[0]) % 5 == (2 if i == 0 else 0)
    with pytest.raises(DecodeError):
        nal.parse_slice_header(nals[0])  # an SPS is not a slice


def test_pictures_agree_with_libavcodec(paper_stream, tmp_path):
    path = tmp_path / "s.h264"
    path.write_bytes(paper_stream)
    with av.open(str(path), format="h264") as c:
        decoded = sum(1 for _ in c.decode(video=0))
    nals = nal.split_annexb(paper_stream)
    assert len(nal.group_pictures(nals)) == decoded == PAPER.frames
    assert sum(map(nal.is_picture_nal, nals)) == decoded * PAPER.mbs_per_frame


def test_group_pictures_starts_new_access_unit_on_parameter_sets_and_lost_heads(tiny_stream):
    nals = nal.split_annexb(tiny_stream)
    sps, pps = nals[:2]
    slices = [n for n in nals if nal.is_picture_nal(n)]
    m = TINY.mbs_per_frame
    # picture 1 lost its first 3 slices; an SPS/PPS repeated before picture 2
    stream = [sps, pps, *slices[:m], *slices[m + 3: 2 * m], sps, pps, *slices[2 * m: 3 * m]]
    groups = nal.group_pictures(stream)
    assert [len(g) for g in groups] == [m + 2, m - 3, m + 2]
    assert groups[2][:2] == [sps, pps]


def test_emulation_prevention_does_not_escape_before_a_final_newline_byte():
    # regression: a `$` anchor also matched before a trailing 0x0a, adding a spurious 03
    from avclm.nal import ebsp_to_rbsp, rbsp_to_ebsp

    assert rbsp_to_ebsp(b"\x11\x00\x00\x0a") == b"\x11\x00\x00\x0a"
    assert rbsp_to_ebsp(b"\x11\x00\x00") == b"\x11\x00\x00\x03"
    assert ebsp_to_rbsp(rbsp_to_ebsp(b"\x00\x00\x01\x00\x00\x0a")) == b"\x00\x00\x01\x00\x00\x0a"
