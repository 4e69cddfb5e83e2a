"""Class-aware video evaluation on a briefly trained class-conditional AVC-LM.

One module-scoped run: three classes of labelled synthetic clips
(``data_tools.labelled_synth.write_labelled_clips``: red circles moving right, green
squares moving down, blue triangles standing still, on backgrounds of their colour),
``data_tools videos --labels folder``, the tiny recipe for a few dozen steps in-process,
export. The model is too briefly trained to follow its class (the measurement with
enough steps is ``bench/bench_class_video.py``, numbers in the README); these tests hold
the protocols to their behaviour: ``avclm eval classes`` writes strictly decodable
clips for every class and scale and reports accuracy and validity per class, and
``avclm eval continue`` continues each clip with its folder's class and reports
per-class numbers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from avclm.cli import main

ROOT = Path(__file__).resolve().parents[2]
STEPS = 40
PER_CLASS = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``{media, model}`` of one short labelled training run."""
    from codeclm.export import export_checkpoint
    from codeclm.short_fit import short_fit_argv
    from data_tools.labelled_synth import labelled_shards

    d = tmp_path_factory.mktemp("video-classes")
    shards = labelled_shards(d, "video", PER_CLASS, 320)["shards"]
    assert main(short_fit_argv(ROOT / "recipes" / "avclm-tiny.yaml", shards, d / "run", STEPS,
                               768, 2, "--data.val_fraction", "0.15")) == 0
    export_checkpoint(d / "run" / "checkpoints" / "last.ckpt", d / "model")
    return {"media": d / "media", "model": d / "model"}


def test_labelled_clips_show_colour_and_motion(run):
    """The clips are what the classes say: the shape's colour, and its motion (the
    circle's centre moves right, the square's down, the triangle's not at all)."""
    import numpy as np

    from avclm.codec import encode_video
    from avclm.profile import TINY
    from avclm.stream import decode_annexb
    from data_tools.labelled_synth import CLASS_COLOURS, CLASS_MOTION

    for name, colour in CLASS_COLOURS.items():
        frames = decode_annexb(encode_video(run["media"] / name / "00000.mp4", TINY), TINY)
        assert len(frames) == TINY.frames
        centres = []
        for f in (frames[0], frames[-1]):
            near = np.abs(f.astype(int) - colour).sum(-1) < 60
            ys, xs = np.nonzero(near)
            centres.append((xs.mean(), ys.mean()))
        moved = np.subtract(centres[1], centres[0])
        want = np.multiply(CLASS_MOTION[name], TINY.frames - 1)
        assert np.abs(moved - want).max() < 3, (name, moved, want)


def test_eval_classes_reports_each_class_and_scale(run, tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["eval", "classes", "--model", str(run["model"]), "--videos",
                 str(run["media"]), "-o", str(out), "--samples", "2", "--batch", "2",
                 "--frames", "2", "--cfg-scales", "0", "3", "--seeds", "0", "-q",
                 "--max-nal-tokens", "200"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "avclm eval classes" and res["protocol"]["frames"] == 2
    assert sorted(res["per_class"]) == ["circle", "square", "triangle"]
    for per_scale in [*res["per_class"].values(), res["overall"]]:
        assert sorted(per_scale) == ["0", "3"]
        for m in per_scale.values():
            assert 0 <= m["class_accuracy"]["mean"] <= 1
            assert m["validity"]["mean"] == 1.0  # the verifier keeps every stream decodable
    from avclm.profile import TINY
    from avclm.stream import decode_annexb

    clips = sorted((out / "samples" / "s3_seed0").glob("*.h264"))
    assert [c.name for c in clips] == [f"{n}_{i}.h264" for n in ("circle", "square", "triangle")
                                       for i in (0, 1)]
    for c in clips:  # every sample decodes strictly
        assert len(decode_annexb(c.read_bytes(), TINY, strict=True)) == 2
    assert "| mean |" in (out / "results.md").read_text()
    assert capsys.readouterr().err.splitlines()[-1].startswith("mean: S=0 ")
    # a re-run (of the same settings; --batch never changes a sample) generates nothing
    # and reports the same numbers
    assert main(["eval", "classes", "--model", str(run["model"]), "--videos",
                 str(run["media"]), "-o", str(out), "--samples", "2", "--batch", "1",
                 "--frames", "2", "--cfg-scales", "0", "3", "--seeds", "0", "-q",
                 "--max-nal-tokens", "200"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["samples"]["generated_this_run"] == 0
    assert again["per_class"] == res["per_class"]


def test_eval_continue_per_class(run, tmp_path):
    """Clips in class folders are continued with their class and scored per class; a
    clip outside them unconditionally (and only counts overall)."""
    videos = tmp_path / "clips"
    for name in ("circle", "triangle"):
        (videos / name).mkdir(parents=True)
        shutil.copy(run["media"] / name / "00005.mp4", videos / name / "a.mp4")
    shutil.copy(run["media"] / "square" / "00005.mp4", videos / "loose.mp4")
    out = tmp_path / "ev"
    assert main(["eval", "continue", "--model", str(run["model"]), "--videos", str(videos),
                 "-o", str(out), "--prompt-frames", "2", "--frames", "1", "--seeds", "0",
                 "--cfg-scale", "2", "--max-nal-tokens", "200", "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    cond = res["protocol"]["conditioning"]
    assert cond == {**cond, "class_conditional": True, "cfg_scale": 2.0,
                    "items_per_class": {"circle": 1, "triangle": 1}}
    assert sorted(res["per_class"]) == ["circle", "triangle"]
    for v in res["per_class"].values():
        assert v["samples"] == 1 and v["validity"] == 1.0 and v["psnr_mean"] > 0
    meta = {p.stem: json.loads(p.read_text())["class"]
            for p in (out / "samples" / "seed0").glob("*.json")}
    assert meta == {"circle__a": "circle", "triangle__a": "triangle", "loose": None}
    assert "## Per class (continued with their class, cfg scale 2)" in \
        (out / "results.md").read_text()


def test_eval_classes_bad_inputs(run, tmp_path, capsys):
    base = ["eval", "classes", "--model", str(run["model"]), "-o", str(tmp_path / "x"),
            "--samples", "1", "--seeds", "0", "-q"]
    for extra, msg in (
            (["--videos", str(tmp_path / "none")], "no such folder"),
            (["--videos", str(run["media"]), "--frames", "99"], "--frames must be between 1 and 8"),
            (["--videos", str(run["media"]), "--cfg-scales", "1", "1"], "repeated values")):
        assert main([*base, *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("avclm: error: ") and msg in err and "\n" not in err
