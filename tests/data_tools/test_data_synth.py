"""data_tools.synth: deterministic procedural media at the profile's size, real files."""

from __future__ import annotations

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from data_tools.__main__ import main
from data_tools.synth import (
    HELDOUT_PHOTOS,
    SOURCES,
    TRAIN_PHOTOS,
    bounce,
    load_photo,
    pan_frames,
    photo_crop,
    photo_pan,
    random_pan,
    random_scene,
    synth,
)


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
    c = bounce(pos, half, extent)
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
    rc = main(["synth", str(tmp_path / "o"), "--kind", "image", "--count", "2",
               "--sources", "plasma"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("data_tools: error:") and "plasma" in err
    assert len(err.strip().splitlines()) == 1


# --- photo-crops: scikit-image's bundled photographs ------------------------------------


def test_photo_splits_are_disjoint_and_load_without_network():
    assert not set(TRAIN_PHOTOS) & set(HELDOUT_PHOTOS)
    for name in TRAIN_PHOTOS + HELDOUT_PHOTOS:
        img = load_photo(name)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        assert min(img.shape[:2]) >= 150 and img.std() > 10  # a real picture, not a flat one


@pytest.mark.parametrize("split,names", [("train", TRAIN_PHOTOS), ("heldout", HELDOUT_PHOTOS)])
def test_photo_crops_come_only_from_their_split(split, names):
    rng = np.random.default_rng(0)
    used = set()
    for _ in range(60):
        name, crop = photo_crop(rng, 64, 48, split)
        assert name in names
        assert crop.shape == (48, 64, 3) and crop.dtype == np.uint8
        used.add(name)
    assert len(used) >= min(len(names), 3)  # the split is really sampled, not one photo


def test_photo_crop_is_the_photo_scaled_down():
    """A crop keeps its photo's character: grey photos give grey crops (three equal
    channels), colour photos colour crops, and the mean lies inside the photo's range."""
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(40):
        name, crop = photo_crop(rng, 64, 64, "train")
        photo = load_photo(name)
        grey = np.array_equal(photo[..., 0], photo[..., 2])
        c = crop.astype(int)
        assert np.array_equal(c[..., 0], c[..., 2]) == grey
        mean = c.reshape(-1, 3).mean(0)
        flat = photo.reshape(-1, 3).astype(int)
        assert (mean >= flat.min(0)).all() and (mean <= flat.max(0)).all()
        seen.add(grey)
    assert seen == {True, False}


def test_photo_crops_deterministic_distinct_and_heldout_differs(tmp_path, jpeg_tiny):
    a = synth(tmp_path / "a", "image", jpeg_tiny, 24, seed=7, sources=("photo-crops",), workers=2)
    synth(tmp_path / "b", "image", jpeg_tiny, 24, seed=7, sources=("photo-crops",), workers=1)
    assert _bytes_of(tmp_path / "a") == _bytes_of(tmp_path / "b")
    assert len(set(_bytes_of(tmp_path / "a").values())) == 24  # every crop distinct
    synth(tmp_path / "h", "image", jpeg_tiny, 24, seed=7, sources=("photo-crops",),
          split="heldout")
    assert not set(_bytes_of(tmp_path / "h").values()) & set(_bytes_of(tmp_path / "a").values())
    for p in a:
        with Image.open(p) as im:
            assert im.size == (jpeg_tiny.width, jpeg_tiny.height) and im.mode == "RGB"


def test_photo_pan_is_one_whole_pixel_shift_per_frame():
    rng = np.random.default_rng(2)
    for _ in range(10):
        _, f = photo_pan(rng, 64, 48, 8)
        assert f.shape == (8, 48, 64, 3)
        shifts = set()
        for t in range(7):
            a, b = f[t].astype(int), f[t + 1].astype(int)
            def window(img, vx: int, vy: int):
                return img[max(vy, 0):48 + min(vy, 0), max(vx, 0):64 + min(vx, 0)]

            match = [(vx, vy) for vx in range(-2, 3) for vy in range(-2, 3)
                     if np.array_equal(window(a, vx, vy), window(b, -vx, -vy))]
            assert match and (0, 0) not in match
            shifts.add(match[0])
        assert len(shifts) == 1  # one constant velocity


@pytest.fixture
def gradient_photo(monkeypatch):
    """Every photo replaced by a 400x300 gradient whose red channel is x and green y (0 to
    255 across it), so a frame's colour range tells which share of the photo it shows."""
    from data_tools import synth as synth_mod

    ys, xs = np.mgrid[0:300, 0:400]
    img = np.stack([xs * 255 // 399, ys * 255 // 299, np.zeros_like(xs)], -1).astype(np.uint8)
    monkeypatch.setattr(synth_mod, "load_photo", lambda name: img)


@pytest.mark.parametrize("kind", ["image", "video"])
def test_photo_views_show_most_of_the_photo_and_crops_a_part(gradient_photo, kind):
    """photo-views: a crop or a pan's view spans 60-80% of the photo's short side (the
    subject stays in view); photo-crops' pans a quarter to half of it, its crops down
    to the frame's own size in photo pixels (0.2 of the short side here)."""
    from data_tools.synth import PHOTO_VIEW, Geometry, make_labelled_item

    geo = Geometry(64, 64, 8.0, 8)
    spans = {}
    for source in ("photo-crops", "photo-views"):
        spans[source] = []
        for i in range(40):
            frames, _ = make_labelled_item(kind, source, geo, np.random.default_rng((3, i)))
            g = frames[0, :, :, 1].astype(int)  # green: the photo's y, 255 over 300 rows
            spans[source].append((g.max() - g.min() + 1) / 256)
    lo, hi = PHOTO_VIEW
    assert all(lo - 0.03 <= s <= hi + 0.03 for s in spans["photo-views"]), spans["photo-views"]
    if kind == "video":
        assert all(0.22 <= s <= 0.53 for s in spans["photo-crops"]), spans["photo-crops"]
    else:
        assert min(spans["photo-crops"]) < 0.4 and max(spans["photo-crops"]) > 0.6


@pytest.mark.parametrize("kind", ["image", "video"])
def test_photos_option_keeps_to_the_chosen_photos(tmp_path, kind, jpeg_tiny, avc_tiny):
    """``--photos``: every item comes from the named photos (pixel for pixel what
    photo_crop / photo_pan draw for that item from those photos), both are used, and
    the same seed without the option draws from the whole split as before."""
    from data_tools.synth import PHOTO_VIEW

    chosen = ("chelsea", "rocket")
    out = tmp_path / "o"
    rc = main(["synth", str(out), "--kind", kind, "--count", "6", "--seed", "5",
               "--sources", "photo-views", "--photos", " chelsea,rocket,chelsea"])
    assert rc == 0
    profile = jpeg_tiny if kind == "image" else avc_tiny
    names = set()
    for i in range(6):
        rng = np.random.default_rng((5, i))
        rng.integers(0, 1)  # (the item's source pick: one source here)
        if kind == "image":
            name, want = photo_crop(rng, profile.width, profile.height, "train", PHOTO_VIEW,
                                    chosen)
            got = np.asarray(Image.open(out / f"{i:05d}-photo-views.png").convert("RGB"))
            assert np.array_equal(got, want)
        else:
            name, want = photo_pan(rng, profile.width, profile.height, profile.frames,
                                   "train", PHOTO_VIEW, chosen)
            with av.open(str(out / f"{i:05d}-photo-views.mp4")) as c:
                got = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
            assert got.shape == want.shape
            assert np.abs(got.astype(int) - want).mean() < 6  # (lossy, crf 18)
        names.add(name)
    assert names == set(chosen)
    whole = {photo_crop(np.random.default_rng((5, i)), 64, 64, "train")[0] for i in range(40)}
    assert len(whole - set(chosen)) >= 3  # without the option: the split's other photos


def test_cli_synth_photo_crops_heldout(tmp_path, capsys):
    rc = main(["synth", str(tmp_path / "o"), "--kind", "image", "--count", "3",
               "--sources", "photo-crops", "--split", "heldout"])
    assert rc == 0
    assert len(list((tmp_path / "o").glob("*-photo-crops.png"))) == 3
    assert "heldout photos" in capsys.readouterr().out
