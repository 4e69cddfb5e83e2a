"""In-process encoding == the paper's ffmpeg command run by the bundled binary, NAL for NAL.

The binary is imageio-ffmpeg's static build (FFmpeg 9 + its own libx264); PyAV ships
FFmpeg 8 with another libx264 build. Both report the same x264 core in their SEI, and
the streams agree bit for bit once the SEI is set aside.
"""

from __future__ import annotations

import pytest

from avclm import nal
from avclm.codec import encode_frames, encode_video, inprocess_x264_sei_text, x264_sei_text
from avclm.profile import PAPER, TINY


def _split(data: bytes):
    """(SPS, PPS, slices, SEI text) of an Annex-B stream."""
    nals = nal.split_annexb(data)
    sps = [n for n in nals if nal.nal_type(n) == nal.NAL_SPS]
    pps = [n for n in nals if nal.nal_type(n) == nal.NAL_PPS]
    slices = [n for n in nals if nal.is_picture_nal(n)]
    return sps, pps, slices, x264_sei_text(data)


def test_binary_and_pyav_run_the_same_x264(paper_binary, clip):
    binary_sei = _split(paper_binary(clip("short")))[3]
    assert binary_sei is not None and binary_sei.startswith("x264 - core ")
    assert binary_sei == inprocess_x264_sei_text(PAPER)  # same core, same option string


#: sources where the paper's command writes exactly our SPS (square pixels that fit
#: exactly, no colour tags)
IDENTICAL = ["landscape", "short", "mpegts", "with_audio", "rgb", "tenbit", "scene_cut"]
#: the paper's scale filter writes a non-1:1 SAR into the SPS (we always write 1:1) and,
#: for tagged sources, the colour description; slices still agree where pixels do
SAR_ONLY = ["portrait", "anamorphic"]


@pytest.mark.parametrize("name", IDENTICAL + SAR_ONLY)
def test_encode_video_matches_paper_command(paper_binary, clip, name):
    ours = _split(encode_video(clip(name), PAPER))
    theirs = _split(paper_binary(clip(name), PAPER))
    assert ours[3] is None and theirs[3] is not None  # we drop the SEI; they keep it
    assert ours[1] == theirs[1]  # PPS
    assert len(ours[2]) == len(theirs[2]) and ours[2] == theirs[2]  # every slice NAL
    if name in IDENTICAL:
        assert ours[0] == theirs[0]
    else:
        a, b = nal.parse_sps(ours[0][0]), nal.parse_sps(theirs[0][0])
        assert ours[0] != theirs[0] and (a.width, a.height, a.level_idc) == (
            b.width,
            b.height,
            b.level_idc,
        )


def test_tiny_profile_matches_paper_command(paper_binary, clip):
    ours = _split(encode_video(clip("landscape"), TINY))
    theirs = _split(paper_binary(clip("landscape"), TINY))
    assert ours[:3] == theirs[:3]


def test_encode_frames_matches_paper_command(paper_binary, smooth_frames, write_lossless, tmp_path):
    """The same RGB frames, handed to encode_frames and (as a lossless file) to the binary."""
    frames = smooth_frames(PAPER, seed=3)
    src = write_lossless(frames, tmp_path / "frames.mkv", PAPER.fps)
    ours = encode_frames(frames, PAPER)
    theirs = paper_binary(src, PAPER)
    assert _split(ours)[:3] == _split(theirs)[:3]
    # and with the SEI removed the two byte streams are identical, start codes included
    _, units = nal.split_annexb_units(theirs)
    assert ours == b"".join(
        u for u in units if nal.nal_type(nal.strip_start_code(u)) != nal.NAL_SEI
    )


def test_variable_frame_rate_source(paper_binary, vfr_clip):
    """Irregular timestamps and B-frames: the same source frames are picked. The file
    has no SAR, so the binary writes an SPS without aspect ratio info (we write 1:1);
    x264 repeats SPS/PPS before each IDR (scene cuts), and those agree the same way."""
    ours, theirs = _split(encode_video(vfr_clip, PAPER)), _split(paper_binary(vfr_clip, PAPER))
    assert ours[1] == theirs[1] and ours[2] == theirs[2]
    assert len(ours[0]) == len(theirs[0]) >= 1
    a, b = nal.parse_sps(ours[0][0]), nal.parse_sps(theirs[0][0])
    assert (a.width, a.height, a.level_idc) == (b.width, b.height, b.level_idc)


@pytest.mark.parametrize("name", ["bt709", "fullrange"])
def test_tagged_sources_differ_only_by_design(paper_binary, clip, name):
    """For BT.709 or full-range sources the paper's command writes the tags into the SPS
    and keeps the pixels as they are; we convert the pixels (BT.601, limited range) and
    keep the canonical SPS. Same picture count and structure either way."""
    ours, theirs = _split(encode_video(clip(name), PAPER)), _split(paper_binary(clip(name), PAPER))
    assert ours[0] != theirs[0] and ours[1] == theirs[1]
    assert len(ours[2]) == len(theirs[2]) == 15 * PAPER.mbs_per_frame
