"""Short and truncated videos (issue 12, item 9): one rule for every reader.

* A whole video shorter than the profile's clip gives a shorter clip; one whose frames
  all end before the first output tick (a one-frame file) gives a one-frame clip.
* A file whose data ends before the length its headers declare, inside the clip's
  span, is an InputError naming the file (encode, clips, prompts, data_tools).

Every input is a real file written by PyAV and read back through FFmpeg.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from avclm.clips import encode_clip, video_duration
from avclm.codec import encode_video
from avclm.generate import prompt_units
from avclm.profile import PROFILES
from avclm.stream import decode_annexb
from codeclm.errors import CodecLMError, ConfigError, InputError

PAPER, TINY = PROFILES["paper"], PROFILES["tiny"]
#: a 6 s noise AVI (MPEG-4 part 2, 25 fps): about 16 kB a frame, so a 100 kB cut keeps
#: a handful of frames while the header still declares all 150
AVI_FRAMES, AVI_FPS = 150, 25


def _write(path: Path, frames: np.ndarray, fps: int, codec: str) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv420p"
        for a in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(a, "rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("short")
    rng = np.random.default_rng(9)
    one = rng.integers(0, 256, (1, 64, 64, 3), np.uint8)
    noise = rng.integers(0, 256, (AVI_FRAMES, 120, 160, 3), np.uint8)
    files = {"one_mp4": _write(d / "one.mp4", one, 30, "libx264"),
             "one_avi": _write(d / "one.avi", one, 25, "mpeg4"),
             "short": _write(d / "short.mp4", np.repeat(one, 20, axis=0), 10, "libx264"),
             "avi": _write(d / "long.avi", noise, AVI_FPS, "mpeg4")}
    data = files["avi"].read_bytes()
    for name, cut in {"cut100k": 100_000, "cut25": len(data) // 4, "cut50": len(data) // 2,
                      "cut75": len(data) * 3 // 4}.items():
        files[name] = d / f"{name}.avi"
        files[name].write_bytes(data[:cut])
    return files, one[0]


@pytest.mark.parametrize("profile", [TINY, PAPER], ids=lambda p: p.name)
@pytest.mark.parametrize("name", ["one_mp4", "one_avi"])
def test_one_frame_video_is_a_one_frame_clip(media, name, profile):
    files, source = media
    data = encode_video(files[name], profile)
    assert encode_clip(files[name], 0, profile) == data  # the clip reader agrees
    frames = decode_annexb(data, profile, strict=True)
    assert len(frames) == 1
    if profile is TINY:  # 64x64 in, 64x64 out: the picture is the source frame (QP 37)
        err = np.abs(frames[0].astype(int) - source.astype(int)).mean()
        grey = np.abs(128 - source.astype(int)).mean()
        assert err < grey * 0.8, (err, grey)


def test_short_video_gives_a_short_clip(media):
    files, _ = media  # 2 s at 10 fps: 6 frames at 3 fps, the paper clip holds 15
    data = encode_video(files["short"], PAPER)
    assert len(decode_annexb(data, PAPER, strict=True)) == 6
    assert encode_clip(files["short"], 0, PAPER) == data


def test_whole_avi_encodes(media):
    files, _ = media
    assert video_duration(files["avi"]) == AVI_FRAMES / AVI_FPS
    assert len(decode_annexb(encode_video(files["avi"], PAPER), PAPER, strict=True)) == 15


@pytest.mark.parametrize("cut", ["cut100k", "cut25", "cut50", "cut75"])
def test_truncated_avi_is_refused_by_name(media, cut):
    files, _ = media
    path = files[cut]
    with pytest.raises(InputError, match="truncated") as e:
        encode_video(path, PAPER)
    assert str(e.value).startswith(f"{path}: ")
    # the header's frame count still declares 6 s: data_tools plans that clip and fails it
    assert video_duration(path) == AVI_FRAMES / AVI_FPS
    with pytest.raises(InputError) as e:
        encode_clip(path, 0, PAPER)
    assert str(e.value).startswith(f"{path} (clip at 0 s): ")
    with pytest.raises(InputError, match="truncated") as e:
        prompt_units(PAPER, path)
    assert str(path) in str(e.value)


def test_prompt_frames_beyond_a_short_prompt_name_the_file(media):
    files, _ = media
    _, k = prompt_units(TINY, files["one_mp4"])
    assert k == 1
    with pytest.raises(ConfigError, match="one.mp4 has 1 frames"):
        prompt_units(TINY, files["one_mp4"], 2)


def test_data_tools_videos_short_and_truncated(media, tmp_path):
    """A one-frame video is a sample; of a truncated AVI the clips its data covers are
    samples and the others go to skipped.jsonl, by name (tiny clips: 2 s)."""
    from codeclm.tokenizer import ByteTokenizer
    from data_tools.pipeline import build_dataset

    files, _ = media
    src = tmp_path / "src"
    src.mkdir()
    for name in ("one_mp4", "cut25", "cut75"):  # data to 1.4 s and to 4.4 s of 6 s
        (src / files[name].name).write_bytes(files[name].read_bytes())
    tok = ByteTokenizer.train([encode_video(files["one_mp4"], TINY)], 300, "h264")
    tok_path = tok.save(tmp_path / "tok.json")
    want = {None: ([("cut75.avi", 0), ("cut75.avi", 2), ("one.mp4", 0)],
                   [("cut25.avi", 0), ("cut25.avi", 2), ("cut25.avi", 4), ("cut75.avi", 4)]),
            1: ([("cut75.avi", 0), ("one.mp4", 0)], [("cut25.avi", 0)])}
    for clips, (samples, skips) in want.items():  # ClipReader, then encode_video's unit
        out = tmp_path / f"out{clips}"
        build_dataset(src, out, "video", TINY, tok_path, clips=clips, show_progress=False)
        rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
        assert [(r["path"], r.get("clip_start", 0)) for r in rows] == samples
        rows = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
        assert [(r["path"], r.get("clip_start", 0)) for r in rows] == skips
        for r in rows:
            assert r["reason"].startswith(str(src / r["path"])), r
        assert "truncated" in rows[-1]["reason"] or "damaged" in rows[-1]["reason"], rows


def test_every_error_is_typed(media):
    """No reader lets a codec exception through for these files."""
    files, _ = media
    for path in files.values():
        for f in (lambda p: encode_video(p, TINY), lambda p: encode_clip(p, 0, TINY)):
            try:
                f(path)
            except CodecLMError:
                pass
