"""`avclm encode` / `avclm decode`: outputs, stdin, and one-line errors without partial files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from avclm import nal
from avclm.cli import main
from avclm.codec import probe_video
from avclm.profile import PAPER, TINY


def _files(d):
    return sorted(p.name for p in d.iterdir())


def _fails(capsys, argv, out_dir):
    before = _files(out_dir)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("avclm: error: ") and err.count("\n") == 1, err
    assert _files(out_dir) == before  # no output, no leftover temporary
    return err


def test_encode_to_h264_and_mp4(tmp_path, clip):
    src = clip("landscape")
    assert main(["encode", str(src), "-o", str(tmp_path / "a.h264")]) == 0
    data = (tmp_path / "a.h264").read_bytes()
    nals = nal.split_annexb(data)
    assert sum(map(nal.is_picture_nal, nals)) == PAPER.frames * PAPER.mbs_per_frame
    assert main(["encode", str(src), "-o", str(tmp_path / "b.mp4"), "--profile", "tiny"]) == 0
    info = probe_video(tmp_path / "b.mp4")
    assert (info["frames"], info["width"], info["height"]) == (TINY.frames, 64, 64)
    assert info["duration"] == pytest.approx(TINY.seconds)


def test_decode_file_and_stdin(tmp_path, paper_stream):
    (tmp_path / "in.h264").write_bytes(paper_stream)
    assert main(["decode", str(tmp_path / "in.h264"), "-o", str(tmp_path / "out.mp4")]) == 0
    info = probe_video(tmp_path / "out.mp4")
    assert (info["frames"], info["width"], info["height"]) == (15, 256, 144)
    assert info["duration"] == pytest.approx(5.0)
    # stdin, through a real process
    import avclm

    env = dict(os.environ, PYTHONPATH=str(Path(avclm.__file__).resolve().parents[1]))
    r = subprocess.run(
        [sys.executable, "-m", "avclm.cli", "decode", "-", "-o", str(tmp_path / "s.mp4")],
        input=paper_stream,
        capture_output=True,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert probe_video(tmp_path / "s.mp4")["frames"] == 15


def test_decode_tolerant_conceals(tmp_path, capsys, paper_stream):
    cut = paper_stream[: len(paper_stream) * 2 // 3]
    (tmp_path / "cut.h264").write_bytes(cut)
    out = tmp_path / "out"
    out.mkdir()
    _fails(capsys, ["decode", str(tmp_path / "cut.h264"), "-o", str(out / "x.mp4")], out)
    assert main(["decode", str(tmp_path / "cut.h264"), "-o", str(out / "t.mp4"), "--tolerant"]) == 0
    assert "concealed" in capsys.readouterr().err
    frames = probe_video(out / "t.mp4")["frames"]
    assert 8 <= frames < 15


def test_bad_inputs_give_one_line_and_no_output(tmp_path, capsys, clip, paper_stream):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    landscape = clip("landscape").read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(landscape[: len(landscape) // 2])
    (tmp_path / "huge.y4m").write_bytes(
        b"YUV4MPEG2 W12000 H12000 F3:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(100)
    )
    for name in ["missing.mp4", "empty.mp4", "text.mp4", "trunc.mp4", "huge.y4m"]:
        for target in ["o.h264", "o.mp4"]:
            _fails(capsys, ["encode", str(tmp_path / name), "-o", str(out / target)], out)
    assert "larger than the limit" in _fails(
        capsys, ["encode", str(tmp_path / "huge.y4m"), "-o", str(out / "o.h264")], out)
    (tmp_path / "empty.h264").write_bytes(b"")
    (tmp_path / "trunc.h264").write_bytes(paper_stream[:5000])
    (tmp_path / "junk.h264").write_bytes(os.urandom(3000))
    for name in ["missing.h264", "empty.h264", "trunc.h264", "junk.h264", "text.mp4"]:
        _fails(capsys, ["decode", str(tmp_path / name), "-o", str(out / "o.mp4")], out)
    (tmp_path / "ok.h264").write_bytes(paper_stream)
    assert "output must be" in _fails(
        capsys, ["decode", str(tmp_path / "ok.h264"), "-o", str(out / "o.h264")], out
    )
    # a tiny-profile stream decoded as paper: size mismatch, not garbage frames
    from avclm.codec import encode_video

    (tmp_path / "tiny.h264").write_bytes(encode_video(clip("short"), TINY))
    err = _fails(capsys, ["decode", str(tmp_path / "tiny.h264"), "-o", str(out / "o.mp4")], out)
    assert "64x64" in err
    err = _fails(
        capsys, ["encode", str(clip("short")), "-o", str(out / "o.h264"), "--profile", "nope"], out
    )
    assert "unknown h264 profile" in err
