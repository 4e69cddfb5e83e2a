"""Eval output directories (issue 12, item 11): ``DIR/run.json`` ties the samples there
to one run. The same run resumes (other ``--batch`` too), another run is refused in one
line with nothing touched, ``--overwrite`` regenerates and removes only the eval's files.
Real CLIs on the bundled models, the smallest settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codeclm.errors import OutputError
from codeclm.eval import run_record


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: (size, mtime) of files, None for folders."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (None if p.is_dir() else
                                               (st.st_size, st.st_mtime_ns))
    return out


def _samples(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns
            for p in sorted((out / "samples").rglob("*.jpg"))}


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("heldout")
    rng = np.random.default_rng(3)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(d / f"{i}.png")
    return d


def _uncond(heldout: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "uncond", "--images", str(heldout), "-o", str(out), "--samples", "2",
            "--seeds", "0", "--max-tokens", "6", "--extractor", "pixels", "--fid-backend",
            "fast", "-q", *extra]


@pytest.fixture(scope="module")
def first_run(heldout, tmp_path_factory):
    """One ``jpeglm eval uncond`` run (bundled model, 2 samples)."""
    from jpeglm.cli import main

    out = tmp_path_factory.mktemp("uncond") / "ev"
    assert main(_uncond(heldout, out)) == 0
    return out


def test_run_json_records_model_and_sample_settings(first_run):
    rec = json.loads((first_run / "run.json").read_text())
    assert rec["task"] == "jpeglm eval uncond"
    assert len(rec["model"]["weights_sha256"]) == 64 and rec["model"]["profile"] == "tiny"
    settings = rec["settings"]
    assert settings["temperature"] == 1.0 and "seeds" not in settings  # one folder per seed
    assert settings["samples"] == 2 and settings["max_tokens"] == 6 and settings["grammar"]
    assert settings["mask_order"] == "filters-first"
    for key in ("batch", "device", "quiet", "extractor", "fid_backend", "overwrite"):
        assert key not in settings  # never change a sample


def test_same_run_resumes_and_batch_does_not_matter(heldout, first_run, capsys):
    from jpeglm.cli import main

    before = _samples(first_run)
    assert len(before) == 2
    assert main(_uncond(heldout, first_run)) == 0
    assert main(_uncond(heldout, first_run, "--batch", "2", "--feature-batch", "4")) == 0
    assert _samples(first_run) == before  # the same files, untouched
    res = json.loads((first_run / "results.json").read_text())
    assert res["samples"]["generated_this_run"] == 0
    capsys.readouterr()


def test_another_run_is_refused_and_nothing_touched(heldout, first_run, capsys):
    from jpeglm.cli import main

    before = _tree(first_run)
    capsys.readouterr()
    assert main(_uncond(heldout, first_run, "--temperature", "0.7")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"jpeglm: error: {first_run}: holds samples from another run (temperature "
                   "1.0 there, 0.7 now); use another -o or --overwrite")]
    assert main(_uncond(heldout, first_run, "--top-k", "7")) == 1
    assert "(top_k 50 there, 7 now)" in capsys.readouterr().err
    assert _tree(first_run) == before


def test_a_run_recorded_before_mask_orders_resumes_mask_first(heldout, first_run, tmp_path,
                                                               capsys):
    """A run.json without ``mask_order`` (recorded when mask-first was the only order)
    resumes with ``--mask-order mask-first`` and is refused with the default."""
    import shutil

    from jpeglm.cli import main

    old = tmp_path / "old"
    shutil.copytree(first_run, old)
    rec = json.loads((old / "run.json").read_text())
    del rec["settings"]["mask_order"]
    (old / "run.json").write_text(json.dumps(rec))
    before = _samples(old)
    capsys.readouterr()
    assert main(_uncond(heldout, old)) == 1
    assert ('(mask_order (absent) there, filters-first now)'
            in capsys.readouterr().err)
    assert main(_uncond(heldout, old, "--mask-order", "mask-first")) == 0
    assert _samples(old) == before
    assert json.loads((old / "results.json").read_text())["samples"]["generated_this_run"] == 0


def test_another_seed_resumes_and_adds_only_its_samples(heldout, tmp_path, capsys):
    from jpeglm.cli import main

    out = tmp_path / "ev"
    assert main(_uncond(heldout, out)) == 0
    before = _samples(out)
    assert main(_uncond(heldout, out, "--seeds", "0", "1")) == 0
    after = _samples(out)
    assert {k: after[k] for k in before} == before  # seed 0's files untouched
    assert len(after) == 2 * len(before)
    capsys.readouterr()


def test_overwrite_regenerates_and_keeps_the_users_files(heldout, tmp_path, capsys):
    from jpeglm.cli import main

    out = tmp_path / "ev"
    assert main(_uncond(heldout, out)) == 0
    (out / "notes.txt").write_text("mine")
    (out / "samples" / "uncond_seed0" / "notes.txt").write_text("mine too")
    old = _samples(out)
    assert main(_uncond(heldout, out, "--temperature", "0.7", "--overwrite")) == 0
    new = _samples(out)
    assert sorted(new) == sorted(old) and all(new[k] != old[k] for k in old)  # regenerated
    assert json.loads((out / "run.json").read_text())["settings"]["temperature"] == 0.7
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "samples" / "uncond_seed0" / "notes.txt").read_text() == "mine too"
    res = json.loads((out / "results.json").read_text())
    assert res["samples"]["generated_this_run"] == 2
    capsys.readouterr()


def test_folders_that_are_not_an_eval_run_are_refused(tmp_path):
    rec = {"tool": run_record.TOOL, "task": "t", "model": {}, "settings": {"temperature": 1.0}}
    run_record.check_run_dir(tmp_path / "new", rec)  # absent: fine
    (tmp_path / "empty").mkdir()
    run_record.check_run_dir(tmp_path / "empty", rec)
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds no eval run; use another -o or --overwrite"):
        run_record.check_run_dir(user, rec)
    (user / "samples").mkdir()
    with pytest.raises(OutputError, match="holds samples but no run.json"):
        run_record.check_run_dir(user, rec)
    (user / "run.json").write_text("[1, 2]")
    with pytest.raises(OutputError, match="run.json: not a run record of codeclm eval"):
        run_record.check_run_dir(user, rec)
    run_record.check_run_dir(user, rec, overwrite=True)  # --overwrite: may go ahead
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        run_record.check_run_dir(tmp_path / "file", rec)


def test_overwrite_removes_only_eval_files_and_never_follows_links(tmp_path):
    out, elsewhere = tmp_path / "ev", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "00000.jpg").write_bytes(b"the user's")
    for rel in ("run.json", "results.json", "samples/r0.5_seed0/a.jpg",
                "samples/r0.5_seed0/.a.jpg.x1.part", "samples/seed0/c.h264",
                "samples/seed0/c.json", "reference/c.h264"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"ours")
    for rel in ("notes.txt", "samples/keep.jpg", "samples/seed0/keep.txt", "reference/x/y.h264"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"the user's")
    os.symlink(elsewhere, out / "samples" / "linked_seed0")
    run_record.remove_run_files(out)
    left = {p.relative_to(out).as_posix() for p in out.rglob("*")
            if p.is_symlink() or not p.is_dir()}
    assert left == {"notes.txt", "samples/keep.jpg", "samples/seed0/keep.txt",
                    "reference/x/y.h264", "samples/linked_seed0"}
    assert (elsewhere / "00000.jpg").read_bytes() == b"the user's"


def test_avclm_continue_resumes_and_refuses_another_run(tmp_path, capsys):
    from avclm.cli import main
    from avclm.codec import annexb_to_mp4, encode_frames
    from avclm.profile import PROFILES

    tiny = PROFILES["tiny"]
    frames = [np.full((tiny.height, tiny.width, 3), 40 * t, np.uint8) for t in range(3)]
    clips = tmp_path / "clips"
    annexb_to_mp4(encode_frames(frames, tiny), clips / "a.mp4", tiny)
    out = tmp_path / "ev"
    args = ["eval", "continue", "--videos", str(clips), "-o", str(out), "--prompt-frames", "1",
            "--frames", "1", "--seeds", "0", "--extractor", "none", "--max-nal-tokens", "64",
            "--max-attempts", "1", "-q"]
    assert main(args) == 0
    stream = next((out / "samples" / "seed0").glob("*.h264"))
    mtime = stream.stat().st_mtime_ns
    assert main(args) == 0 and stream.stat().st_mtime_ns == mtime
    before = _tree(out)
    capsys.readouterr()
    assert main([*args, "--max-attempts", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"avclm: error: {out}: holds samples from another run (max_attempts 1 "
                   "there, 2 now); use another -o or --overwrite")]
    assert _tree(out) == before
    # what a continuation writes changes samples: recorded, and a run of the other mode
    # does not go on in this folder
    assert json.loads((out / "run.json").read_text())["settings"]["continuation"] == "seamless"
    assert main([*args, "--continuation", "idr"]) == 1
    err = capsys.readouterr().err.strip()
    assert "another run (continuation" in err and _tree(out) == before
