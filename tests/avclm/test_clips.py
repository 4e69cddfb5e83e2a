"""Every clip of a long video (avclm.clips): plans, seeking == decoding from the start,
parity with the ffmpeg binary's ``-ss``, damaged stretches.

Sources are made by the bundled ffmpeg: B-frames (``-bf 3``), short GOPs, and a
variable frame rate (25 fps, then ~12 fps with jittered timestamps), in MP4 and MPEG-TS.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction

import av
import pytest

import avclm.clips as clips_mod
from avclm.clips import ClipReader, clip_starts, encode_clip, encode_clips, video_duration
from avclm.codec import canonicalize, encode_video
from avclm.profile import PAPER, TINY
from codeclm.errors import InputError

#: 8 s at 25 fps, then ~12 fps with timestamps off the grid by 0-26 ms (pts in seconds)
VFR = "if(lt(N,200),N*0.04,8+(N-200)*0.083+0.013*mod(N,3))/TB"


def _make(ffmpeg_exe, path, *args):
    subprocess.run([ffmpeg_exe, "-nostdin", "-v", "error", "-y", *args, str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory, ffmpeg_exe):
    """name -> path: B-frames + VFR as MP4 and MPEG-TS (~33 s), and a 20 s CFR MP4."""
    root = tmp_path_factory.mktemp("clips")
    vfr = ["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=20", "-vf",
           f"setpts='{VFR}'", "-fps_mode", "vfr", "-c:v", "libx264", "-bf", "3", "-g", "37",
           "-pix_fmt", "yuv420p"]
    return {
        "vfr.mp4": _make(ffmpeg_exe, root / "vfr.mp4", *vfr),
        "vfr.ts": _make(ffmpeg_exe, root / "vfr.ts", *vfr),
        "cfr.mp4": _make(ffmpeg_exe, root / "cfr.mp4", "-f", "lavfi", "-i",
                         "testsrc2=size=96x64:rate=25:duration=20", "-c:v", "libx264",
                         "-bf", "3", "-g", "50", "-pix_fmt", "yuv420p"),
    }


def test_plan_counts():
    assert len(clip_starts(Fraction(600), PAPER)) == 120  # 10 minutes, 5 s clips
    assert clip_starts(Fraction(12), PAPER) == [0, 5]
    assert clip_starts(Fraction(10), PAPER) == [0, 5]     # the last clip fits exactly
    assert clip_starts(Fraction(3), PAPER) == [0]         # shorter than a clip: still one
    assert clip_starts(Fraction(20), TINY, stride="2.5") == [Fraction(k * 5, 2) for k in range(8)]
    assert clip_starts(Fraction(600), PAPER, clips=3) == [0, 5, 10]
    assert clip_starts(Fraction(600), PAPER, clips=1) == [0]
    with pytest.raises(InputError):
        clip_starts(Fraction(10), PAPER, stride=0)


def test_ten_minute_source_gives_120_clips(tmp_path, ffmpeg_exe):
    path = _make(ffmpeg_exe, tmp_path / "ten.mp4", "-f", "lavfi", "-i",
                 "testsrc2=size=32x32:rate=25:duration=600", "-c:v", "libx264",
                 "-preset", "ultrafast", "-pix_fmt", "yuv420p")
    assert video_duration(path) == 600
    starts = clip_starts(video_duration(path), PAPER)
    assert len(starts) == 120 and starts[-1] == 595
    last = encode_clip(path, starts[-1], PAPER)  # reached by one seek
    assert last == encode_clip(path, starts[-1], PAPER, seek=False)


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.ts"])
def test_seeking_gives_the_bytes_of_decoding_from_the_start(sources, name, monkeypatch):
    path = sources[name]
    starts = clip_starts(video_duration(path), TINY, stride="1.3")  # overlapping, off-grid
    assert len(starts) > 20
    reference = {s: encode_clip(path, s, TINY, seek=False) for s in starts}
    assert reference[0] == encode_video(path, TINY)
    assert len(set(reference.values())) == len(starts)  # the clips differ from each other
    # decoding on from one clip to the next
    assert dict(encode_clips(path, starts, TINY)) == reference
    # a seek for every clip
    monkeypatch.setattr(clips_mod, "CONTINUE_SECONDS", 0)
    reader = ClipReader(path, TINY)
    with reader:
        assert {s: reader.encode(s) for s in starts} == reference
    assert reader.seeks >= len(starts) - 1
    # backwards, one fresh reader per clip
    for s in reversed(starts[::5]):
        assert encode_clip(path, s, TINY) == reference[s]


def test_clips_equal_the_ffmpeg_binary_with_input_seek(sources, ffmpeg_exe):
    """The paper's command with ``-ss S`` before ``-i`` gives the same bytes (SEI aside)."""
    for name in ("cfr.mp4", "vfr.mp4"):
        path = sources[name]
        for s in clip_starts(video_duration(path), PAPER):
            raw = subprocess.run([ffmpeg_exe, "-v", "error", "-ss", str(float(s)),
                                  *PAPER.ffmpeg_args(str(path))],
                                 check=True, capture_output=True).stdout
            assert canonicalize(raw, PAPER) == encode_clip(path, s, PAPER), (name, s)


def _damage_packet_at(path, seconds: float, out):
    """Copy of ``path`` with the payload of the video packet shown at ``seconds``
    overwritten by a pattern; (that packet's time, the time range of its GOP)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        packets = [(float(p.pts * s.time_base), p.pos, p.size, p.is_keyframe)
                   for p in c.demux(s) if p.size]
    hit = min(packets, key=lambda p: abs(p[0] - seconds))
    keys = sorted(t for t, _, _, k in packets if k)
    gop = (max(k for k in keys if k <= hit[0]), min(k for k in keys if k > hit[0]))
    data = bytearray(path.read_bytes())
    data[hit[1] + 4: hit[1] + hit[2]] = bytes((i * 37 + 11) % 256 for i in range(hit[2] - 4))
    out.write_bytes(bytes(data))
    return hit[0], gop


def test_a_damaged_stretch_fails_only_the_clips_it_touches(sources, tmp_path):
    clean = sources["cfr.mp4"]
    hit, gop = _damage_packet_at(clean, 10.4, tmp_path / "bad.mp4")
    bad = tmp_path / "bad.mp4"
    starts = clip_starts(video_duration(clean), TINY, stride="1.5")
    got = dict(encode_clips(bad, starts, TINY))
    failed = {s for s, v in got.items() if not isinstance(v, bytes)}
    assert failed, "the damage went unnoticed"
    for s in failed:
        assert "damaged video" in str(got[s])
        assert s < gop[1] and s + TINY.seconds > gop[0]  # only clips that overlap the GOP
    for s in set(starts) - failed:  # every other clip: the undamaged file's bytes
        assert got[s] == encode_clip(clean, s, TINY), float(s)
    assert all(s in failed for s in starts if s <= hit < s + TINY.seconds)
    assert len(failed) < len(starts) / 2
    # however the clip is reached: the same verdicts
    seeking = {s: _outcome(lambda s=s: encode_clip(bad, s, TINY)) for s in starts}
    start_decoding = {s: _outcome(lambda s=s: encode_clip(bad, s, TINY, seek=False))
                      for s in starts}
    assert seeking == start_decoding == {s: _outcome(lambda s=s: _raise(got[s]))
                                         for s in starts}


def _raise(v):
    if isinstance(v, Exception):
        raise v
    return v


def _outcome(fn):
    try:
        return fn()
    except InputError:
        return "skip"


def test_missing_and_non_video(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        video_duration(tmp_path / "none.mp4")
    (tmp_path / "x.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError):
        encode_clip(tmp_path / "x.mp4", 0, TINY)
