"""data_tools.synth: deterministic procedural media at the profile's size, real files."""

from __future__ import annotations

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from data_tools.__main__ import main
from data_tools.synth import SOURCES, _bounce, pan_frames, random_pan, random_scene, synth


def _bytes_of(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_images_deterministic_and_at_profile_size(tmp_path, jpeg_tiny):
    a = synth(tmp_path / "a", "image", jpeg_tiny, 10, seed=7, sources=SOURCES)
    b = synth(tmp_path / "b", "image", jpeg_tiny, 10, seed=7, sources=SOURCES)
    assert [p.name for p in a] == [p.name for p in b]
    assert _bytes_of(tmp_path / "a") == _bytes_of(tmp_path / "b")
    # a different seed gives different pictures
    synth(tmp_path / "c", "image", jpeg_tiny, 10, seed=8, sources=SOURCES)
    assert _bytes_of(tmp_path / "c") != _bytes_of(tmp_path / "a")
    used = {p.name.split("-", 1)[1].split(".")[0] for p in a}
    assert len(used) >= 3  # the mix really mixes
    for p in a:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.mode == "RGB"
            assert im.size == (jpeg_tiny.width, jpeg_tiny.height)
            assert np.asarray(im).reshape(-1, 3).std(axis=0).max() > 0  # not a blank picture


def test_item_i_does_not_depend_on_count(tmp_path, jpeg_tiny):
    synth(tmp_path / "few", "image", jpeg_tiny, 3, seed=1, sources=SOURCES)
    synth(tmp_path / "many", "image", jpeg_tiny, 6, seed=1, sources=SOURCES)
    many = _bytes_of(tmp_path / "many")
    for name, data in _bytes_of(tmp_path / "few").items():
        assert many[name] == data


def test_videos_deterministic_with_profile_rate_and_length(tmp_path, avc_tiny):
    srcs = ("shapes", "cellauto")
    a = synth(tmp_path / "a", "video", avc_tiny, 3, seed=2, sources=srcs)
    synth(tmp_path / "b", "video", avc_tiny, 3, seed=2, sources=srcs)
    assert _bytes_of(tmp_path / "a") == _bytes_of(tmp_path / "b")
    for p in a:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
            assert float(s.average_rate) == pytest.approx(avc_tiny.fps)
        assert len(frames) == avc_tiny.frames
        assert frames[0].shape == (avc_tiny.height, avc_tiny.width, 3)
        if "shapes" in p.name:  # the shapes move
            assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1


def test_video_rate_and_length_overrides(tmp_path, avc_tiny):
    (p,) = synth(tmp_path, "video", avc_tiny, 1, seed=0, fps=10, seconds=1.5, size=(48, 32))
    with av.open(str(p)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        assert (s.codec_context.width, s.codec_context.height) == (48, 32)
        assert float(s.average_rate) == pytest.approx(10)
    assert n == 15


@settings(max_examples=200, deadline=None)
@given(pos=st.floats(-1e4, 1e4), half=st.floats(0, 40), extent=st.integers(1, 300))
def test_bounce_keeps_shapes_inside(pos, half, extent):
    c = _bounce(pos, half, extent)
    if extent - 1 - half >= half:
        assert half - 1e-6 <= c <= extent - 1 - half + 1e-6


def test_shapes_scene_is_simple_and_moves_smoothly():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scene = random_scene(rng, 96, 64)
        assert 1 <= len(scene.shapes) <= 3
        f0, f1 = scene.render(0), scene.render(1)
        assert f0.shape == (64, 96, 3) and f0.dtype == np.uint8
        # consecutive frames differ a little (motion), never completely
        assert (f0 != f1).any(axis=2).mean() < 0.5


def test_pan_is_one_whole_pixel_shift_per_frame():
    """Frame t+1 is frame t moved by (-vx, -vy): the overlap matches exactly."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        world, vx, vy = random_pan(rng, 64, 48, 8)
        assert (vx, vy) != (0, 0) and max(abs(vx), abs(vy)) <= 3
        assert 3 <= len(world.shapes) <= 6
        f = pan_frames(world, vx, vy, 64, 48, 8)
        assert f.shape == (8, 48, 64, 3)
        for t in range(7):
            a, b = f[t], f[t + 1]
            ya, xa = slice(max(vy, 0), 48 + min(vy, 0)), slice(max(vx, 0), 64 + min(vx, 0))
            yb, xb = slice(max(-vy, 0), 48 + min(-vy, 0)), slice(max(-vx, 0), 64 + min(-vx, 0))
            assert np.array_equal(a[ya, xa], b[yb, xb])
        assert (f[0] != f[-1]).any()


def test_pan_clips_move_after_canonical_encoding(tmp_path, avc_tiny):
    from avclm.codec import encode_video
    from avclm.stream import decode_annexb

    for p in synth(tmp_path, "video", avc_tiny, 4, seed=0, sources=("pan",)):
        frames = np.stack(decode_annexb(encode_video(p, avc_tiny), avc_tiny, strict=True))
        assert np.abs(np.diff(frames.astype(int), axis=0)).mean() > 1


def test_cli_synth(tmp_path, capsys):
    rc = main(["synth", str(tmp_path / "o"), "--kind", "image", "--profile", "tiny", "--count", "4",
               "--seed", "3", "--sources", "all"])
    assert rc == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 4
    assert "wrote 4" in capsys.readouterr().out


def test_cli_synth_unknown_source_is_one_line_error(tmp_path, capsys):
    rc = main(["synth", str(tmp_path / "o"), "--kind", "image", "--count", "2", "--sources", "plasma"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("data_tools: error:") and "plasma" in err
    assert len(err.strip().splitlines()) == 1
