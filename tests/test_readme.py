"""Every command block of README.md runs as written against the bundled models.

The blocks run in order, each as one ``bash -e -o pipefail`` script, in one scratch
folder (so the data section's shards feed the training section, as for a reader). Shims
put ``avclm``, ``jpeglm``, ``python`` and ``ffmpeg`` (the imageio-ffmpeg binary) on PATH
exactly as an activated ``.venv`` would. The inputs the README assumes the reader has
(``landscape.jpg``, ``photo.jpg``, ``clip.mp4``, folders ``val/``, ``heldout/``,
``clips/``) are made here with ``data_tools synth`` and Pillow. Long commands run with
small counts (:data:`SMALL_COUNTS`); a block preceded by
``<!-- readme-test: skip: REASON -->`` is not run (the reason is the skip message).
``python`` blocks run as scripts in the same folder.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(.*?)\s*-->")

# flag -> the largest value the test uses (the README shows realistic counts)
SMALL_COUNTS = {
    "--frames": 2, "-n": 2, "--count": 60, "--trainer.max_steps": 2, "--samples": 4,
}
RESUME_STEPS = 4  # `--ckpt_path last` resumes to twice the small step count


def readme_blocks(text: str) -> list[dict]:
    """Fenced ``console``/``bash``/``python`` blocks: {lang, line, body, skip}.

    ``body`` for shell blocks is the commands only: console lines starting with ``$ ``
    (output lines dropped), ``\\`` continuations joined; bash blocks are taken whole.
    """
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(console|bash|python)\s*$", lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i + 1
        prev = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        skip = SKIP.search(prev)
        body = []
        i += 1
        while not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if lang == "console":
            cmds, cont = [], False
            for ln in body:
                if ln.startswith("$ ") or cont:
                    cmds.append(ln[2:] if ln.startswith("$ ") and not cont else ln)
                    cont = ln.rstrip().endswith("\\")
            body = cmds
        blocks.append({"lang": lang, "line": start, "body": "\n".join(body),
                       "skip": skip.group(1) if skip else None})
    return blocks


def small(cmd: str) -> str:
    """``cmd`` with every count flag capped at :data:`SMALL_COUNTS`."""
    def cap(m):
        flag, n = m.group(1), int(m.group(2))
        limit = SMALL_COUNTS[flag]
        if flag == "--trainer.max_steps" and n > 20:  # the resume step count
            limit = RESUME_STEPS
        return f"{flag} {min(n, limit)}"

    flags = "|".join(re.escape(f) for f in SMALL_COUNTS)
    cmd = re.sub(rf"(?<![\w-])({flags})\s+(\d+)", cap, cmd)
    return re.sub(r"--seeds(\s+\d+)+", "--seeds 0", cmd)


def _shim(bindir: Path, name: str, argv: list[str]) -> None:
    path = bindir / name
    quoted = " ".join(f'"{a}"' for a in argv)
    path.write_text(f'#!/bin/sh\nexec {quoted} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The reader's folder: inputs, recipes/ linked, tools on PATH; returns (dir, env)."""
    import imageio_ffmpeg
    from PIL import Image

    work = tmp_path_factory.mktemp("readme")
    bindir = tmp_path_factory.mktemp("bin")
    py = sys.executable
    for tool in ("avclm", "jpeglm"):
        _shim(bindir, tool, [py, "-m", f"{tool}.cli"])
    _shim(bindir, "python", [py])
    _shim(bindir, "ffmpeg", [imageio_ffmpeg.get_ffmpeg_exe()])
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    (work / "recipes").symlink_to(ROOT / "recipes")
    synth = [py, "-m", "data_tools", "synth", "--profile", "tiny", "--seed", "7", "--no-progress"]
    for folder, kind, n in (("val", "image", 3), ("heldout", "image", 3), ("clips", "video", 2)):
        subprocess.run(synth + [str(work / folder), "--kind", kind, "--count", str(n)],
                       env=env, check=True, capture_output=True)
    def first(folder):  # the first media file (not the tools' hidden run markers)
        return min(p for p in (work / folder).iterdir() if not p.name.startswith("."))

    Image.open(first("val")).convert("RGB").save(work / "photo.jpg", quality=90)
    Image.linear_gradient("L").resize((320, 200)).convert("RGB").save(work / "landscape.jpg")
    shutil.copy(first("clips"), work / "clip.mp4")
    return work, env


BLOCKS = readme_blocks(README.read_text())


def test_readme_has_runnable_blocks():
    langs = [b["lang"] for b in BLOCKS if not b["skip"]]
    assert langs.count("console") >= 5 and "python" in langs
    assert all(b["skip"] for b in BLOCKS if "make " in b["body"])  # `make test` runs this file


def test_small_counts_rewrite():
    assert small("avclm generate --frames 16 -o x.mp4") == "avclm generate --frames 2 -o x.mp4"
    assert (
        small("jpeglm generate -n 16 -o d --seeds 0 1 2") == "jpeglm generate -n 2 -o d --seeds 0"
    )
    assert (
        small("x --trainer.max_steps 40 --top-n 9")
        == f"x --trainer.max_steps {RESUME_STEPS} --top-n 9"
    )


@pytest.mark.parametrize("block", BLOCKS, ids=[f"L{b['line']}-{b['lang']}" for b in BLOCKS])
def test_readme_block_runs(block, scratch):
    if block["skip"]:
        pytest.skip(block["skip"])
    work, env = scratch
    if block["lang"] == "python":
        argv = [sys.executable, "-c", block["body"]]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", small(block["body"])]
    r = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, f"README line {block['line']}:\n{block['body']}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
