"""`jpeglm encode`: real files in, real JPEGs out, one-line errors, no partial output."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from PIL import Image

from jpeglm import codec
from jpeglm.cli import main
from jpeglm.profile import PROFILES


def run_cli(capsys, *argv):
    rc = main(["encode", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_encode_writes_standalone_jpeg(tmp_path, samples, capsys):
    src = samples[0]
    out = tmp_path / "sub" / "out.jpg"
    rc, stdout, err = run_cli(capsys, src, "-o", out)
    assert rc == 0 and err == ""
    assert len(stdout.strip().splitlines()) == 1 and "256 MCUs" in stdout
    data = out.read_bytes()
    assert data == codec.to_jpeg(codec.encode_image(src, PROFILES["paper"]))
    with Image.open(out) as im:  # any decoder opens it: tables are attached
        im.load()
        assert im.size == (256, 256) and im.format == "JPEG"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.jpg"]


def test_encode_modeled_and_tiny_profile(tmp_path, samples, capsys):
    out = tmp_path / "m.bin"
    rc, stdout, _ = run_cli(capsys, samples[1], "-o", out, "--profile", "tiny", "--modeled")
    assert rc == 0 and "profile tiny" in stdout
    data = out.read_bytes()
    tiny = PROFILES["tiny"]
    assert data.startswith(codec.header(tiny)) and len(codec.split_mcus(data)[1]) == 16
    assert codec.decode(data, tiny).size == (64, 64)


def test_encode_to_stdout(samples, capsysbinary):
    rc = main(["encode", str(samples[2]), "-o", "-"])
    out, err = capsysbinary.readouterr()
    assert rc == 0 and out.startswith(b"\xff\xd8") and out.endswith(b"\xff\xd9")
    assert len(err.decode().strip().splitlines()) == 1
    assert Image.open(io.BytesIO(out)).size == (256, 256)


def _bad_inputs(tmp_path, samples):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "readme.jpg"
    text.write_text("hello\n")
    cut = tmp_path / "cut.jpg"
    src = next(p for p in samples if p.suffix == ".jpg")
    cut.write_bytes(src.read_bytes()[:1500])
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)  # 144 Mpixel, a few KB on disk
    return {"missing": tmp_path / "nope.png", "empty": empty, "not an image": text,
            "truncated": cut, "decompression bomb": bomb, "directory": tmp_path}


def test_bad_input_one_line_error_no_output(tmp_path, samples, capsys):
    out = tmp_path / "out" / "x.jpg"
    for kind, src in _bad_inputs(tmp_path, samples).items():
        rc, stdout, err = run_cli(capsys, src, "-o", out)
        assert rc == 1, kind
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("jpeglm: error: "), (kind, err)
        assert "Traceback" not in err and stdout == ""
        assert not out.exists(), kind
        assert not out.parent.exists() or list(out.parent.iterdir()) == [], kind


def test_failed_encode_keeps_existing_output(tmp_path, capsys):
    out = tmp_path / "keep.jpg"
    out.write_bytes(b"old")
    rc, _, _ = run_cli(capsys, tmp_path / "missing.png", "-o", out)
    assert rc == 1 and out.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["keep.jpg"]


def test_unwritable_output_and_unknown_profile(tmp_path, samples, capsys):
    rc, _, err = run_cli(capsys, samples[0], "-o", tmp_path)  # output is a directory
    assert rc == 1 and err.startswith("jpeglm: error: ") and len(err.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == []
    rc, _, err = run_cli(capsys, samples[0], "-o", tmp_path / "a.jpg", "--profile", "huge")
    assert rc == 1 and "unknown jpeg profile 'huge'" in err
    assert not (tmp_path / "a.jpg").exists()


def test_console_entry_point_exit_codes(tmp_path, samples):
    """The real process: exit status and a single stderr line, no traceback."""
    cmd = [sys.executable, "-m", "jpeglm.cli", "encode"]
    ok = subprocess.run(cmd + [str(samples[0]), "-o", str(tmp_path / "a.jpg")],
                        check=False, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and (tmp_path / "a.jpg").stat().st_size > 500
    bad = subprocess.run(cmd + [str(tmp_path / "none.png"), "-o", str(tmp_path / "b.jpg")],
                         check=False, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"jpeglm: error: {tmp_path / 'none.png'}: no such file"]
    assert not (tmp_path / "b.jpg").exists()


@pytest.mark.parametrize("argv", [[], ["-o", "x.jpg"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(["encode", *argv])
    assert e.value.code == 2
