"""A refused command never loads torch: every argument, model-directory and output check
runs before it (about 2 s of a 2-core machine per refusal; tests/test_cli_bad_inputs.py
runs hundreds of them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "avclm generate --seed -1": ("avclm", ["generate", "--frames", "2", "-o", "o.mp4",
                                           "--seed", "-1"]),
    "jpeglm generate --cfg-scale without --class": ("jpeglm", ["generate", "-n", "1", "-o",
                                                               "out", "--cfg-scale", "2"]),
    "jpeglm generate, a model dir without weights": ("jpeglm", ["generate", "-n", "1", "-o",
                                                                "out", "--model", "empty"]),
    "jpeglm eval uncond into a folder of the user's": ("jpeglm", [
        "eval", "uncond", "--images", "imgs", "-o", "mine", "--samples", "2"]),
    "avclm eval continue into a folder of the user's": ("avclm", [
        "eval", "continue", "--videos", "imgs", "-o", "mine", "--frames", "1"]),
}

PROBE = """
import sys
from {tool}.cli import main
rc = main(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(rc)
"""


@pytest.mark.parametrize("case", list(CASES))
def test_refused_before_torch_loads(case, tmp_path):
    tool, args = CASES[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    (tmp_path / "imgs").mkdir()
    r = subprocess.run([sys.executable, "-c", PROBE.format(tool=tool), *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, check=False,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), r.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "the user's"
