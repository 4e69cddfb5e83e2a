"""`python -m data_tools bpe`: encode a folder sample, train, save, report tokens/sample."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from codeclm.modality import modality_for
from codeclm.tokenizer import ByteTokenizer
from data_tools.__main__ import main
from data_tools.bpe import sample_files


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _reported(stdout):
    m = re.search(r"on (\d+) samples: ([\d.]+) tokens/sample", stdout)
    return int(m.group(1)), float(m.group(2))


def test_bpe_images_end_to_end(tmp_path, capsys, image_dir, jpeg_tiny):
    out = tmp_path / "tok.json"
    rc, stdout, err = _run(capsys, "bpe", image_dir, "-o", out, "--profile", "tiny",
                           "--vocab-size", "320", "--workers", "2")
    assert rc == 0, err
    tok = ByteTokenizer.load(out)
    assert tok.modality == "jpeg" and tok.vocab_size == 320
    n, per_sample = _reported(stdout)
    # independent recomputation of the reported number
    m = modality_for(jpeg_tiny)
    files = sorted(image_dir.rglob("*.png"))
    lengths = [len(tok.encode(m.encode_path(str(p)))) for p in files]
    assert n == len(files) == 16
    assert per_sample == pytest.approx(np.mean(lengths), abs=0.06)
    # BPE shortens the byte stream
    nbytes = np.mean([len(m.encode_path(str(p))) for p in files])
    assert per_sample - 2 < nbytes


def test_bpe_videos_kind_inferred(tmp_path, capsys, video_dir):
    out = tmp_path / "vtok.json"
    rc, stdout, err = _run(capsys, "bpe", video_dir, "-o", out, "--profile", "tiny",
                           "--vocab-size", "300", "--workers", "1")
    assert rc == 0, err
    tok = ByteTokenizer.load(out)
    assert tok.modality == "h264" and tok.vocab_size == 300
    assert _reported(stdout)[0] == 4


def test_bpe_limit_and_bad_files(tmp_path, capsys, image_dir):
    src = shutil.copytree(image_dir, tmp_path / "src")
    (src / "zz_bad.png").write_bytes(b"not a png")
    rc, stdout, err = _run(capsys, "bpe", src, "-o", tmp_path / "t.json", "--profile", "tiny",
                           "--vocab-size", "280", "--limit", "17", "--workers", "1")
    assert rc == 0, err
    assert _reported(stdout)[0] == 16 and "1 files skipped" in stdout and "zz_bad.png" in stdout
    rc, stdout, _ = _run(capsys, "bpe", src, "-o", tmp_path / "t.json", "--profile", "tiny",
                         "--vocab-size", "280", "--limit", "5", "--workers", "1", "--overwrite")
    assert rc == 0 and _reported(stdout)[0] <= 5


def test_sample_is_seeded_and_sorted(image_dir):
    a = sample_files(image_dir, "image", 5, seed=1)
    assert a == sample_files(image_dir, "image", 5, seed=1)
    assert a == sorted(a, key=lambda p: p.as_posix()) and len(a) == 5
    assert a != sample_files(image_dir, "image", 5, seed=2)
    assert len(sample_files(image_dir, "image", None)) == 16


def test_bpe_errors(tmp_path, capsys, image_dir, video_dir):
    rc, _, err = _run(capsys, "bpe", tmp_path / "missing", "-o", tmp_path / "t.json",
                      "--profile", "tiny", "--vocab-size", "300")
    assert rc == 1 and "no such file" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"x")
    rc, _, err = _run(capsys, "bpe", bad, "-o", tmp_path / "t.json", "--profile", "tiny",
                      "--vocab-size", "300", "--workers", "1")
    assert rc == 1 and "none of the 1" in err and len(err.strip().splitlines()) == 1
    mixed = shutil.copytree(image_dir, tmp_path / "mixed")
    shutil.copytree(video_dir, mixed / "v")
    for p in list((mixed / "v").rglob("*.mp4")):
        shutil.copy(p, p.with_name(p.stem + "_b.mp4"))
    rc, _, err = _run(capsys, "bpe", mixed, "-o", tmp_path / "t.json", "--profile", "tiny",
                      "--vocab-size", "300")
    assert rc == 1 and "--kind" in err
    rc, _, err = _run(capsys, "bpe", image_dir, "-o", tmp_path / "t.json", "--profile", "tiny",
                      "--vocab-size", "100")
    assert rc == 1 and "minimum" in err
    assert not (tmp_path / "t.json").exists()
