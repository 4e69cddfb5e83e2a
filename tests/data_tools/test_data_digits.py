"""data_tools.digits: moving handwritten digits from scikit-learn's bundled set, and the
recogniser that measures a digits video model (issue 17)."""

from __future__ import annotations

import itertools
import json

import av
import numpy as np
import pytest
from PIL import Image

from data_tools.__main__ import main
from data_tools.digits import (
    background_level,
    default_recogniser,
    digits_of,
    moving_digits,
    not_digit_frames,
)
from data_tools.synth import pan_frames, random_pan, random_scene, synth


@pytest.fixture(scope="module")
def recogniser():
    return default_recogniser()


def test_splits_are_disjoint_and_cover_the_set():
    train, _ = digits_of("train")
    held, held_labels = digits_of("heldout")
    assert len(train) + len(held) == 1797 and len(held) == 359
    assert set(held_labels.tolist()) == set(range(10))
    flat_train = {d.tobytes() for d in train}
    assert not any(d.tobytes() in flat_train for d in held[:50])


def test_a_digit_bounces_inside_the_frame_at_constant_speed():
    labels, frames = moving_digits(np.random.default_rng(3), 64, 64, 8)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    assert len(labels) == 1 and 0 <= labels[0] <= 9
    assert (frames[..., 0] == frames[..., 2]).all()  # white on black
    moved = [np.abs(a.astype(int) - b.astype(int)).mean()
             for a, b in itertools.pairwise(frames)]
    assert min(moved) > 0  # it moves every frame
    assert (frames.reshape(8, -1).max(axis=1) > 200).all()  # the digit is always in view


def test_digits_on_grey_span_grey_to_white_and_are_recognised_like_on_black(recogniser):
    labels, black = moving_digits(np.random.default_rng(3), 64, 64, 4)
    same, grey = moving_digits(np.random.default_rng(3), 64, 64, 4, background=128)
    assert same == labels and (grey >= 128).all() and grey.max() > 240
    # the same digit over another background: grey = 128 + black * 127/255 (rounded)
    assert np.abs(grey - (128 + black * (127 / 255))).max() <= 1
    assert background_level([black]) == 0 and background_level([grey]) == 128
    on_grey = [recogniser.score(f, background=128) for f in grey]
    on_black = [recogniser.score(f) for f in black]
    assert [d for d, _ in on_grey] == [d for d, _ in on_black] == labels * 4
    assert np.allclose([p for _, p in on_grey], [p for _, p in on_black], atol=0.01)
    # told the background, the recogniser sees digits over grey as well as over black
    clips = [moving_digits(np.random.default_rng((9, i)), 64, 64, 1, background=128)
             for i in range(30)]
    assert np.mean([recogniser.shows_digit_share(f, background=128) for _, f in clips]) >= 0.6
    assert np.mean([recogniser.shows_digit_share(f) for _, f in clips]) <= 0.1  # not told
    flat = np.full((2, 64, 64, 3), 128, np.uint8)
    assert recogniser.shows_digit_share(flat, background=128) == 0.0


def test_synth_digits_clips_decode_deterministic_and_heldout_differs(tmp_path, avc_tiny):
    a = synth(tmp_path / "a", "video", avc_tiny, 2, seed=4, sources=("digits",))
    b = synth(tmp_path / "b", "video", avc_tiny, 2, seed=4, sources=("digits",))
    h = synth(tmp_path / "h", "video", avc_tiny, 2, seed=4, sources=("digits",),
              split="heldout")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[0].read_bytes() != h[0].read_bytes()
    with av.open(str(a[0])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == avc_tiny.frames
    assert frames[0].shape == (avc_tiny.height, avc_tiny.width, 3)


def test_cli_synth_digits_images(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "o"), "--kind", "image", "--profile", "tiny",
                 "--count", "2", "--sources", "digits", "--split", "heldout"]) == 0
    assert "heldout digits" in capsys.readouterr().out
    assert len(list((tmp_path / "o").glob("*-digits.png"))) == 2
    assert main(["synth", str(tmp_path / "g"), "--kind", "image", "--profile", "tiny",
                 "--count", "2", "--sources", "digits-on-grey"]) == 0
    assert "train digits" in capsys.readouterr().out
    (png,) = list((tmp_path / "g").glob("00000-digits-on-grey.png"))
    assert np.median(np.asarray(Image.open(png))) == 128


def test_recogniser_sees_digits_in_digit_clips_and_not_in_other_sources(recogniser):
    # a clip's digit only moves, so its frames score alike: many clips, two frames each
    clips = [moving_digits(np.random.default_rng((9, i)), 64, 64, 2) for i in range(30)]
    digit_share = np.mean([recogniser.shows_digit_share(f) for _, f in clips])
    correct = np.mean([recogniser.score(f[0])[0] == labels[0] for labels, f in clips])
    pans = []
    for i in range(6):
        world, vx, vy = random_pan(np.random.default_rng((8, i)), 64, 64, 8)
        pans.append(pan_frames(world, vx, vy, 64, 64, 8))
    shapes = [np.stack([random_scene(np.random.default_rng((7, i)), 64, 64).render(t)
                        for t in range(8)]) for i in range(6)]
    other_share = np.mean([recogniser.shows_digit_share(f) for f in pans + shapes])
    assert digit_share >= 0.6 and correct >= 0.75
    assert other_share <= 0.1
    assert recogniser.shows_digit_share(np.zeros((2, 64, 64, 3), np.uint8)) == 0.0


def test_recogniser_rarely_fires_on_noise_and_blocks(recogniser):
    share = recogniser.shows_digit_share(not_digit_frames(np.random.default_rng(99), 60))
    assert share <= 0.35


def test_report_cli_scores_digit_clips_above_other_clips(tmp_path, avc_tiny, capsys):
    from data_tools.digits import main as report

    digits = synth(tmp_path / "d", "video", avc_tiny, 3, seed=1, sources=("digits",))
    pans = synth(tmp_path / "p", "video", avc_tiny, 2, seed=1, sources=("pan",))
    assert report([str(p) for p in digits + pans]) == 0
    per_clip = json.loads(capsys.readouterr().out)["per_clip"]
    assert min(per_clip[str(p)] for p in pans) == 0.0
    assert max(per_clip[str(p)] for p in digits) == 1.0


def test_report_cli_bad_clip_is_one_line_error(tmp_path, capsys):
    from data_tools.digits import main as report

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert report([str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.mp4" in err and "Traceback" not in err


def test_digits_large_is_one_big_digit_drifting_one_pixel_a_frame():
    from data_tools.digits import DIGIT_SOURCES

    style = DIGIT_SOURCES["digits-large"]
    for i in range(20):
        labels, frames = moving_digits(np.random.default_rng((5, i)), 64, 64, 8, **style)
        assert len(labels) == 1 and frames.shape == (8, 64, 64, 3)
        lit = frames[..., 0] > 0
        # the digit spans most of the frame's short side in every frame, within its sprite
        # (at most 85% of 64 pixels on a side)
        heights = [np.ptp(np.flatnonzero(f.any(axis=1))) + 1 for f in lit]
        widths = [np.ptp(np.flatnonzero(f.any(axis=0))) + 1 for f in lit]
        assert min(heights) >= 0.5 * 64 and max(heights + widths) <= round(0.85 * 64)
        # one pixel per frame on each axis: a frame is the previous one shifted by (+-1, +-1)
        # (or reflected at an edge), never further
        for a, b in itertools.pairwise(frames[..., 0]):
            assert any(np.array_equal(np.roll(a, (dy, dx), (0, 1))[2:-2, 2:-2], b[2:-2, 2:-2])
                       for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
    # and the defaults (source digits) are smaller and faster: same seed, other clip
    _, small = moving_digits(np.random.default_rng((5, 0)), 64, 64, 8)
    assert (small[..., 0] > 0).sum() < (moving_digits(np.random.default_rng((5, 0)), 64, 64, 8,
                                                      **style)[1][..., 0] > 0).sum()


def test_digit_scale_and_speed_out_of_range_are_config_errors():
    from codeclm.errors import ConfigError

    with pytest.raises(ConfigError, match="scale"):
        moving_digits(np.random.default_rng(0), 64, 64, 2, scale=(0.9, 1.2))
    with pytest.raises(ConfigError, match="speed"):
        moving_digits(np.random.default_rng(0), 64, 64, 2, speed=(2, 1))


def test_recogniser_sees_digits_in_large_digit_frames_over_black(recogniser):
    from data_tools.digits import DIGIT_SOURCES

    clips = [moving_digits(np.random.default_rng((9, i)), 64, 64, 2,
                           **DIGIT_SOURCES["digits-large"]) for i in range(30)]
    assert background_level([f for _, f in clips]) == 0  # bundled_eval --digits: black
    assert np.mean([recogniser.shows_digit_share(f) for _, f in clips]) >= 0.6
    assert np.mean([recogniser.score(f[0])[0] == labels[0] for labels, f in clips]) >= 0.75


def test_cli_synth_digits_large_clips_are_deterministic(tmp_path, capsys):
    args = ["--kind", "video", "--profile", "tiny", "--count", "2", "--seed", "3",
            "--sources", "digits-large"]
    assert main(["synth", str(tmp_path / "a"), *args]) == 0
    assert "digits-large, train digits" in capsys.readouterr().out
    assert main(["synth", str(tmp_path / "b"), *args]) == 0
    a = sorted((tmp_path / "a").glob("*-digits-large.mp4"))
    b = sorted((tmp_path / "b").glob("*-digits-large.mp4"))
    assert len(a) == 2 and [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    with av.open(str(a[0])) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert frames.shape == (8, 64, 64, 3)
    assert default_recogniser().shows_digit_share(frames) > 0


def test_synth_digit_labels_name_each_clips_digit_for_labelled_shards(tmp_path, avc_tiny, capsys):
    """``synth --digit-labels`` writes labels.csv beside the clips (the clips unchanged);
    its digits are what the clips show (the recogniser agrees on most) and
    ``data_tools videos --labels labels.csv`` reads it into class tokens 0-9."""
    from data_tools.digits import clip_frames

    out = tmp_path / "clips"
    assert main(["synth", str(out), "--kind", "video", "--count", "6", "--seed", "3",
                 "--sources", "digits", "--digit-labels", "--workers", "1"]) == 0
    assert "their digits in labels.csv" in capsys.readouterr().out
    plain = synth(tmp_path / "plain", "video", avc_tiny, 6, seed=3, sources=("digits",))
    assert [p.read_bytes() for p in plain] == [out.joinpath(p.name).read_bytes()
                                               for p in plain]
    rows = [r.split(",") for r in (out / "labels.csv").read_text().splitlines()]
    assert rows[0] == ["path", "label"] and [r[0] for r in rows[1:]] == [p.name for p in plain]
    rec = default_recogniser()
    seen = [rec.score(clip_frames(out / name)[0])[0] for name, _ in rows[1:]]
    assert sum(str(s) == d for s, (_, d) in zip(seen, rows[1:])) >= 4
    # the marker records labels.csv as this run's: a second run may replace it
    assert main(["synth", str(out), "--kind", "video", "--count", "2", "--seed", "3",
                 "--sources", "digits", "--digit-labels", "--overwrite"]) == 0
    rows = [r.split(",") for r in (out / "labels.csv").read_text().splitlines()]
    assert len(rows) == 3
    assert main(["bpe", str(out), "-o", str(tmp_path / "tok.json"), "--profile", "tiny",
                 "--vocab-size", "300", "--kind", "video"]) == 0
    assert main(["videos", str(out), str(tmp_path / "shards"), "--profile", "tiny",
                 "--tokenizer", str(tmp_path / "tok.json"), "--labels",
                 str(out / "labels.csv"), "-q"]) == 0
    assert (tmp_path / "shards" / "skipped.jsonl").read_text() == ""  # labels.csv: no media
    classes = json.loads((tmp_path / "shards" / "labels.json").read_text())["classes"]
    assert classes == sorted({d for _, d in rows[1:]})
