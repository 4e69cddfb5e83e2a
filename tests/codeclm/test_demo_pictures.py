"""The README's demo pictures (codeclm_apps.demo_pictures) from demo-like outputs:
real MP4 files through PyAV, grids through Pillow."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from codeclm_apps.demo_pictures import BAR, SCALE, main


def _write_mp4(path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def test_pictures_from_demo_outputs(tmp_path):
    out, docs = tmp_path / "demo_out", tmp_path / "docs"
    (out / "images").mkdir(parents=True)
    (out / "complete").mkdir()
    docs.mkdir()
    levels = np.arange(8, dtype=np.uint8) * 30  # frame t is flat grey 30 t
    frames = np.repeat(levels[:, None, None, None], 64 * 64 * 3).reshape(8, 64, 64, 3)
    _write_mp4(out / "demo.mp4", frames[:6])
    _write_mp4(out / "continued.mp4", frames)
    Image.new("RGB", (30, 20), (250, 0, 0)).save(out / "images" / "grid.png")
    Image.new("L", (10, 40), 7).save(out / "complete" / "grid.png")
    (docs / "demo_frames.png").write_bytes(b"old")  # (its own earlier output: replaced)
    assert main([str(out), str(docs)]) == 0
    strip = np.asarray(Image.open(docs / "demo_frames.png"))
    assert strip.shape == (64 * SCALE, 6 * 64 * SCALE, 3)
    cont = np.asarray(Image.open(docs / "demo_continued.png")).astype(int)
    assert cont.shape == (64 * SCALE, 8 * 64 * SCALE + BAR, 3)
    bar = 4 * 64 * SCALE
    assert (cont[:, bar:bar + BAR] == 255).all()
    # frame order kept: each frame's grey level, either side of the bar (codec tolerance)
    lefts = [0, 64 * SCALE, 2 * 64 * SCALE, 3 * 64 * SCALE]
    lefts += [bar + BAR + i * 64 * SCALE for i in range(4)]
    means = [cont[:, x:x + 64 * SCALE].mean() for x in lefts]
    assert np.allclose(means, levels, atol=4), means
    assert Image.open(docs / "demo_images.png").size == (60, 40)
    complete = Image.open(docs / "demo_complete.png")
    assert complete.size == (20, 80) and complete.mode == "RGB"
    assert sorted(p.name for p in docs.iterdir()) == [
        "demo_complete.png", "demo_continued.png", "demo_frames.png", "demo_images.png"]


def test_clips_picture_stacks_one_row_per_clip(tmp_path):
    levels = np.arange(4, dtype=np.uint8) * 60
    frames = np.repeat(levels[:, None, None, None], 64 * 64 * 3).reshape(4, 64, 64, 3)
    _write_mp4(tmp_path / "a.mp4", frames)
    _write_mp4(tmp_path / "b.mp4", frames[::-1][:3])  # shorter: padded with white
    out = tmp_path / "clips.png"
    assert main(["clips", str(out), str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]) == 0
    pic = np.asarray(Image.open(out)).astype(int)
    side = 64 * SCALE
    assert pic.shape == (2 * side + BAR, 4 * side, 3)
    assert (pic[side:side + BAR] == 255).all()
    row_a = [pic[:side, i * side:(i + 1) * side].mean() for i in range(4)]
    row_b = [pic[side + BAR:, i * side:(i + 1) * side].mean() for i in range(3)]
    assert np.allclose(row_a, levels, atol=4) and np.allclose(row_b, levels[::-1][:3], atol=4)
    assert (pic[side + BAR:, 3 * side:] == 255).all()


def test_clips_picture_refuses_to_replace_a_file_without_overwrite(tmp_path, capsys):
    levels = np.arange(2, dtype=np.uint8) * 90
    frames = np.repeat(levels[:, None, None, None], 64 * 64 * 3).reshape(2, 64, 64, 3)
    _write_mp4(tmp_path / "a.mp4", frames)
    out = tmp_path / "mine.png"
    out.write_bytes(b"the user's file")
    assert main(["clips", str(out), str(tmp_path / "a.mp4")]) == 1
    assert out.read_bytes() == b"the user's file"
    assert "already exists" in capsys.readouterr().err
    assert main(["clips", str(out), str(tmp_path / "a.mp4"), "--overwrite"]) == 0
    assert Image.open(out).size == (2 * 64 * SCALE, 64 * SCALE)
    with pytest.raises(SystemExit) as e:  # no clips: a usage error
        main(["clips", str(tmp_path / "new.png")])
    assert e.value.code == 2 and not (tmp_path / "new.png").exists()
