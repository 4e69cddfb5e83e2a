"""data_tools.sources: stable recursive listing, kind inference, video probing."""

from __future__ import annotations

import pytest

from codeclm.errors import InputError
from data_tools.sources import infer_kind, kind_of, list_files, probe_video


def test_list_files_sorted_recursive_without_hidden(tmp_path):
    for rel in ["b.png", "a/z.jpg", "a/b/c.mp4", ".git/x.png", "a/.hidden.png", "out/skip.png",
                "A.txt"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    got = [p.as_posix() for p in list_files(tmp_path, exclude=[tmp_path / "out"])]
    assert got == ["A.txt", "a/b/c.mp4", "a/z.jpg", "b.png"]
    assert [p.as_posix() for p in list_files(tmp_path / "b.png")] == ["b.png"]
    with pytest.raises(InputError, match="no such file"):
        list_files(tmp_path / "missing")


def test_kinds():
    assert (
        kind_of("x/Y.JPG") == "image" and kind_of("v.MkV") == "video" and kind_of("t.txt") is None
    )
    assert infer_kind(["a.png", "b.jpg", "c.mp4", "d.png", "e.png", "f.png", "g.png"]) == "image"
    with pytest.raises(InputError, match="--kind"):
        infer_kind(["a.png", "b.mp4"])
    with pytest.raises(InputError, match="no image or video"):
        infer_kind(["a.txt"])


def test_probe_video_decord_and_pyav_agree(video_dir, avc_tiny):
    import av

    for p in sorted(video_dir.rglob("*.mp4")):
        info = probe_video(p)
        assert info["reader"] == "decord"
        with av.open(str(p)) as c:
            n = sum(1 for _ in c.decode(video=0))
        assert info["frames"] == n == avc_tiny.frames
        assert info["fps"] == pytest.approx(avc_tiny.fps)
        assert info["duration"] == pytest.approx(avc_tiny.seconds)


def test_probe_video_bad_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError):
        probe_video(bad)
