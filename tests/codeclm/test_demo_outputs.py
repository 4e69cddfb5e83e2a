"""`make demo` replaces only what it made: a user's own demo_out/demo.mp4 survives.

The demo claims its outputs in ``demo_out/.codeclm-run.json`` before any command runs
(``codeclm.outputs.claim_outputs``); the refusals here happen before a model loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeclm.errors import OutputError
from codeclm.outputs import MARKER, claim_outputs

ROOT = Path(__file__).resolve().parents[2]


def _demo(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "codeclm.demo", *args], check=False, cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_users_own_video_survives_make_demo(tmp_path):
    """What `make demo` runs, in a folder where demo_out/demo.mp4 is the user's."""
    out = tmp_path / "demo_out"
    out.mkdir()
    (out / "demo.mp4").write_bytes(b"my own video")
    r = _demo(cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == ("demo: error: demo_out/demo.mp4: exists and was not made by "
                                "make demo; refusing to replace it (move it away or choose "
                                "another directory)")
    assert (out / "demo.mp4").read_bytes() == b"my own video"
    assert sorted(p.name for p in out.iterdir()) == ["demo.mp4"]  # no marker, nothing else


def test_users_own_folder_survives_the_demo(tmp_path, capsys):
    from codeclm import demo

    out = tmp_path / "demo_out"
    (out / "images").mkdir(parents=True)
    (out / "images" / "00.jpg").write_bytes(b"my picture")
    assert demo.main(["-o", str(out), "--frames", "2", "--images", "2"]) == 1
    assert "images: exists and was not made by make demo" in capsys.readouterr().err
    assert (out / "images" / "00.jpg").read_bytes() == b"my picture"
    assert sorted(p.name for p in out.rglob("*")) == ["00.jpg", "images"]


def test_claim_outputs_rule(tmp_path):
    d = tmp_path / "out"
    claim_outputs(d, "make demo", ["a.mp4", "imgs"])          # new directory: claimed
    assert json.loads((d / MARKER).read_text()) == {"tool": "make demo",
                                                    "files": ["a.mp4", "imgs"]}
    (d / "a.mp4").write_bytes(b"ours")
    (d / "notes.txt").write_text("mine")
    claim_outputs(d, "make demo", ["a.mp4", "imgs"])          # a re-run may replace them
    with pytest.raises(OutputError, match="notes.txt: exists and was not made by make demo"):
        claim_outputs(d, "make demo", ["notes.txt"])
    with pytest.raises(OutputError, match="holds a run of make demo, not of jpeglm generate"):
        claim_outputs(d, "jpeglm generate", ["x.jpg"])
    assert (d / "notes.txt").read_text() == "mine"
    (tmp_path / "f").write_text("a file")
    with pytest.raises(OutputError, match="not a directory"):
        claim_outputs(tmp_path / "f", "make demo", ["a.mp4"])
