"""Canonical encoding: profile, structure, constant headers, resampling, fitting, errors, MP4."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import av
import numpy as np
import pytest

from avclm import codec, nal
from avclm.codec import annexb_to_mp4, canonical_header, encode_frames, encode_video, probe_video
from avclm.profile import PAPER, PROFILES, TINY, AvcProfile
from avclm.stream import decode_annexb
from codeclm.errors import DecodeError, InputError
from codeclm.profile import get_profile, load_profile, save_profile

# --------------------------------------------------------------------------- profile

def test_profile_parameters_and_registry(tmp_path):
    assert PROFILES == {"paper": PAPER, "tiny": TINY}
    assert (PAPER.width, PAPER.height, PAPER.fps, PAPER.seconds,
            PAPER.frames) == (256, 144, 3, 5, 15)
    assert (PAPER.mb_width, PAPER.mb_height, PAPER.mbs_per_frame,
            PAPER.nals_per_frame) == (16, 9, 144, 144)
    assert (PAPER.qp, PAPER.bframes, PAPER.refs, PAPER.slice_max_mbs,
            PAPER.x264_profile) == (37, 0, 3, 1, "baseline")
    assert PAPER.gop == 250 and PAPER.keyint_min == 3
    assert (TINY.width, TINY.height, TINY.frames, TINY.mbs_per_frame) == (64, 64, 8, 16)
    assert PAPER.modality == "h264"
    assert "modality" not in {f.name for f in dataclasses.fields(AvcProfile)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER.qp = 30
    assert get_profile("h264", "tiny") is TINY
    save_profile(PAPER, tmp_path)
    assert load_profile(tmp_path) == PAPER  # sample_aspect tuple survives JSON
    assert PAPER.codec_options()["profile"] == "baseline"
    assert "slice-max-mbs=1" in PAPER.ffmpeg_args("in.mp4")


# --------------------------------------------------------------------------- structure

def _structure(data: bytes):
    nals = nal.split_annexb(data)
    types = [nal.nal_type(n) for n in nals]
    pictures = nal.group_pictures(nals)
    per_picture = [sum(map(nal.is_picture_nal, p)) for p in pictures]
    return types, per_picture


def test_paper_clip_structure(paper_stream):
    types, per_picture = _structure(paper_stream)
    assert types[:2] == [nal.NAL_SPS, nal.NAL_PPS]
    assert nal.NAL_SEI not in types  # x264's version SEI is dropped
    assert per_picture == [144] * 15  # one NAL per macroblock, first 5 s at 3 fps
    assert paper_stream.startswith(canonical_header(PAPER))
    assert types.count(nal.NAL_IDR) == 144  # only the first picture is IDR here


def test_short_clip_has_fewer_frames(clip):
    # 2 s source -> 2 s * 3 fps = 6 frames
    _, per_picture = _structure(encode_video(clip("short"), PAPER))
    assert per_picture == [144] * 6


def test_scene_cut_gives_a_second_idr(clip):
    """The paper's command keeps x264's scenecut: a hard cut is a new IDR picture."""
    data = encode_video(clip("scene_cut"), PAPER)
    pictures = nal.group_pictures(nal.split_annexb(data))
    idr = [i for i, p in enumerate(pictures) if any(nal.nal_type(n) == nal.NAL_IDR for n in p)]
    assert idr[0] == 0 and len(idr) == 2 and 5 <= idr[1] <= 7  # cut at 2 s = frame 6
    assert len(decode_annexb(data, PAPER)) == 15


@pytest.mark.parametrize("name", ["landscape", "mpegts", "scene_cut", "vfr"])
def test_skipping_unused_frames_changes_nothing(monkeypatch, clip, vfr_clip, name):
    """Frames the fps filter drops are left undecoded where possible: same bytes, fewer
    decoded frames."""
    path = vfr_clip if name == "vfr" else clip(name)
    counted = []
    decoded = codec.decoded_frames

    def counting(*args):
        for frame in decoded(*args):
            counted.append(1)
            yield frame

    monkeypatch.setattr(codec, "decoded_frames", counting)
    fast = encode_video(path, PAPER)
    n_fast = len(counted)
    counted.clear()
    monkeypatch.setattr(codec, "SKIP_UNUSED_FRAMES", False)
    assert encode_video(path, PAPER) == fast
    if name == "mpegts":  # MPEG-2 without B-frames: every frame is a reference
        assert n_fast == len(counted)
    else:  # x264 sources have non-reference B-frames
        assert n_fast < len(counted)


def test_deterministic(clip):
    assert encode_video(clip("landscape"), TINY) == encode_video(clip("landscape"), TINY)


@pytest.mark.parametrize("name", ["landscape", "portrait", "short", "mpegts", "bt709", "fullrange",
                                  "anamorphic", "with_audio", "rgb", "tenbit"])
def test_header_is_constant_across_inputs(clip, name):
    """SPS and PPS are the same bytes for every input (SAR, colour tags, range, bit depth,
    rate and start time of the source do not leak into them)."""
    data = encode_video(clip(name), PAPER)
    assert nal.split_annexb(data)[:2] == nal.split_annexb(canonical_header(PAPER))
    assert len(decode_annexb(data, PAPER)) >= 6


def test_frames_header_matches_video_header(smooth_frames):
    data = encode_frames(smooth_frames(TINY, 3), TINY)
    assert data.startswith(canonical_header(TINY))


# --------------------------------------------------------------------------- pixels

def test_encode_frames_round_trip_quality(smooth_frames, psnr):
    frames = smooth_frames(TINY)
    decoded = decode_annexb(encode_frames(frames, TINY), TINY)
    assert len(decoded) == len(frames)
    # QP 37 baseline is lossy, but smooth content stays recognisable
    assert min(psnr(a, b) for a, b in zip(frames, decoded)) > 24


def _index_frame(j: int, size: int = 64) -> np.ndarray:
    """A frame showing the number j in binary: macroblock b (raster order) is white if
    bit b of j is set, black otherwise. Survives QP 37 intact."""
    a = np.zeros((size, size, 3), np.uint8)
    for b in range(8):
        if j >> b & 1:
            y, x = divmod(b, size // 16)
            a[16 * y:16 * y + 16, 16 * x:16 * x + 16] = 255
    return a


def _read_index(img: np.ndarray) -> int:
    w = img.shape[1] // 16
    def lit(b: int) -> bool:
        y, x = 16 * (b // w), 16 * (b % w)
        return img[y + 4:y + 12, x + 4:x + 12].mean() > 128

    return sum(1 << b for b in range(8) if lit(b))


def test_fps_resampling_follows_ffmpeg_fps_filter():
    """Source at 10 fps showing its frame number j; the tiny profile samples 4 fps for
    2 s. ffmpeg's fps filter (rounding "near") gives each source frame the output slot
    round(t_j * fps) and shows in slot k the latest frame whose slot is <= k: the last
    frame starting before (k + 1/2) / fps, i.e. the frame nearest to the tick, ties and
    near-ties going to the later one."""
    src_fps = 10
    frames = []
    for j in range(30):
        f = av.VideoFrame.from_ndarray(_index_frame(j), format="rgb24")
        f.pts, f.time_base, f.duration = j, Fraction(1, src_fps), 1
        frames.append(f)
    decoded = decode_annexb(encode_frames(frames, TINY), TINY)
    shown = [_read_index(img) for img in decoded]
    expected = [max(j for j in range(30) if Fraction(j, src_fps) * TINY.fps < k + Fraction(1, 2))
                for k in range(TINY.frames)]
    assert shown == expected == [1, 3, 6, 8, 11, 13, 16, 18]
    for k, j in enumerate(shown):  # never further than one source interval from the tick
        assert abs(Fraction(j, src_fps) - Fraction(k, TINY.fps)) <= Fraction(1, src_fps)


def test_only_the_first_seconds_are_kept():
    frames = []
    for j in range(40):  # 10 s at 4 fps; the tiny profile keeps 2 s
        f = av.VideoFrame.from_ndarray(_index_frame(j), format="rgb24")
        f.pts, f.time_base, f.duration = j, Fraction(1, 4), 1
        frames.append(f)
    shown = [_read_index(img) for img in decode_annexb(encode_frames(frames, TINY), TINY)]
    assert shown == list(range(8))


@pytest.mark.parametrize("size,box", [((200, 100), (8, 136, 0, 256)),    # wide: bars top/bottom
                                      ((100, 200), (0, 144, 92, 164))])  # tall: bars left/right
def test_scale_to_fit_then_pad_centered(size, box):
    w, h = size
    frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 235, np.uint8), format="rgb24")
    frame.pts, frame.time_base, frame.duration = 0, Fraction(1, 3), 1
    img = decode_annexb(encode_frames([frame], PAPER), PAPER)[0].astype(int)
    top, bottom, left, right = box
    inside = img[top + 2:bottom - 2, left + 2:right - 2]
    assert inside.mean() > 220
    mask = np.ones(img.shape[:2], bool)
    mask[max(top - 2, 0):bottom + 2, max(left - 2, 0):right + 2] = False
    assert img[mask].max() < 40  # black padding, centred


def _solid_source(ffmpeg_exe, path, extra):
    import subprocess

    subprocess.run([ffmpeg_exe, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=0xC03060:s=160x90:r=10:d=2", *extra, str(path)],
                   check=True, capture_output=True)
    return path


@pytest.mark.parametrize("kind", ["untagged", "bt709", "fullrange"])
def test_colours_survive_tagged_sources(ffmpeg_exe, tmp_path, kind):
    """The SPS has no colour description, so pixels are converted to BT.601 limited
    range: a BT.709-tagged or full-range red decodes to the same red."""
    extra = {
        "untagged": ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p"],
        "bt709": ["-vf", "scale=out_color_matrix=bt709,format=yuv420p", "-c:v", "libx264",
                  "-qp", "0", "-colorspace", "bt709", "-color_primaries", "bt709",
                  "-color_trc", "bt709"],
        "fullrange": ["-vf", "scale=out_range=pc,format=yuvj420p", "-c:v", "mjpeg", "-q:v", "2"],
    }[kind]
    suffix = "avi" if kind == "fullrange" else "mp4"
    src = _solid_source(ffmpeg_exe, tmp_path / f"{kind}.{suffix}", extra)
    img = decode_annexb(encode_video(src, PAPER), PAPER)[0]
    centre = img[40:100, 60:190].reshape(-1, 3).mean(0)
    assert np.abs(centre - [0xC0, 0x30, 0x60]).max() < 12, centre


# --------------------------------------------------------------------------- bad input

def test_bad_inputs(tmp_path, clip):
    with pytest.raises(InputError, match="no such file"):
        encode_video(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        encode_video(tmp_path / "empty.mp4")
    with pytest.raises(InputError, match="not a regular file"):
        encode_video(tmp_path)
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 50)
    with pytest.raises(InputError):
        encode_video(tmp_path / "text.mp4")
    with pytest.raises(InputError, match="no video stream"):
        encode_video(clip("audio_only"))


def test_truncated_file(tmp_path, clip):
    # index at the end (ffmpeg's default MP4): the demuxer cannot open it
    data = clip("landscape").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        encode_video(tmp_path / "cut.mp4")
    # index first (faststart): it opens, but the frames stop before the declared duration
    data = codec.SAMPLE_CLIPS["testsrc2_320x240_6s"].read_bytes()
    (tmp_path / "cut2.mp4").write_bytes(data[: len(data) * 4 // 10])
    with pytest.raises(InputError, match="truncated"):
        encode_video(tmp_path / "cut2.mp4")
    # cut after the first 5 s: everything the clip needs is there
    (tmp_path / "cut3.mp4").write_bytes(data[: len(data) * 95 // 100])
    whole = encode_video(codec.SAMPLE_CLIPS["testsrc2_320x240_6s"])
    assert encode_video(tmp_path / "cut3.mp4") == whole


@pytest.mark.parametrize("size", ["W20000 H20000", "W12000 H12000", "W20000 H100"])
def test_absurdly_large_header_is_rejected_before_decoding(tmp_path, size):
    # a YUV4MPEG2 header promising huge frames, followed by a few bytes
    path = tmp_path / "huge.y4m"
    path.write_bytes(f"YUV4MPEG2 {size} F3:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + b"\x80" * 4096)
    # FFmpeg itself refuses 20000x20000; the others open and hit our limit
    match = "not a readable" if size == "W20000 H20000" else "larger than the limit"
    with pytest.raises(InputError, match=match):
        encode_video(path)


def test_stream_whose_timestamps_never_fill_the_clip(monkeypatch, clip):
    monkeypatch.setattr(codec, "MAX_SOURCE_FRAMES", 5)
    with pytest.raises(InputError, match="frames decoded"):
        encode_video(clip("landscape"), PAPER)


def test_encode_frames_rejects_bad_frames(smooth_frames):
    good = smooth_frames(TINY, 2)
    with pytest.raises(InputError, match="no frames"):
        encode_frames([], TINY)
    with pytest.raises(InputError, match="shape"):
        encode_frames([np.zeros((32, 64, 3), np.uint8)], TINY)
    with pytest.raises(InputError, match="uint8"):
        encode_frames([good[0].astype(np.float32)], TINY)
    with pytest.raises(InputError, match="at most 8"):
        encode_frames(smooth_frames(TINY, 9), TINY)
    with pytest.raises(InputError):
        encode_frames(["not a frame"], TINY)


# --------------------------------------------------------------------------- MP4

def test_annexb_to_mp4_probe_and_frames(tmp_path, paper_stream):
    out = annexb_to_mp4(paper_stream, tmp_path / "clip.mp4", PAPER)
    info = probe_video(out)
    assert info["frames"] == 15 and (info["width"], info["height"]) == (256, 144)
    assert info["duration"] == pytest.approx(5.0) and info["fps"] == pytest.approx(3.0)
    with av.open(str(out)) as c:
        from_mp4 = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    direct = decode_annexb(paper_stream, PAPER)
    assert len(from_mp4) == 15 and all(np.array_equal(a, b) for a, b in zip(from_mp4, direct))
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_annexb_to_mp4_failure_leaves_no_file(tmp_path):
    with pytest.raises(DecodeError):
        annexb_to_mp4(b"\x00\x00\x01\x67\x42", tmp_path / "x.mp4", PAPER)
    with pytest.raises(DecodeError):
        annexb_to_mp4(b"", tmp_path / "x.mp4", PAPER)
    assert list(tmp_path.iterdir()) == []


def test_sample_clips_are_bundled_and_small():
    assert set(codec.SAMPLE_CLIPS) == {"testsrc2_320x240_6s", "mandelbrot_144x256_6s"}
    assert sum(p.stat().st_size for p in codec.SAMPLE_CLIPS.values()) < 500_000
    data = encode_video(codec.SAMPLE_CLIPS["mandelbrot_144x256_6s"], TINY)
    assert len(decode_annexb(data, TINY)) == TINY.frames
