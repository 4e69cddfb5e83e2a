"""`python -m data_tools images|videos`: media folder -> litdata token shards + metadata.

Outputs are checked against an independent recomputation (codec + tokenizer called
directly on each file) and read back through litdata's StreamingDataset/TokensLoader.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from codeclm.profile import load_profile
from codeclm.tokenizer import ByteTokenizer
from data_tools.__main__ import main
from data_tools.shards import read_samples, streaming_dataset


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shard_bytes(out):
    names = sorted(p.name for p in out.glob("chunk-*.bin")) + ["index.json", "stats.json",
                                                                "skipped.jsonl"]
    return {n: (out / n).read_bytes() for n in names}


def check_output(expected, out, src, kind, profile, tokenizer_path, skipped=()):
    """Every promise about OUT, against an independent recomputation."""
    exp = expected(src, kind, profile, tokenizer_path, exclude=set(skipped))
    order = sorted(exp)
    tokens = [exp[r][0] for r in order]

    # the shards hold exactly [<s>] + tokens + [</s>] per good input, in sorted order
    got = list(read_samples(out))
    assert len(got) == len(tokens)
    for g, t in zip(got, tokens):
        assert g.dtype == np.int16
        assert (g == t).all()
        assert g[0] == 1 and g[-1] == 2
    # ... and litdata's StreamingDataset + TokensLoader serves them (block_size=1: all tokens)
    ds = streaming_dataset(out, 1)
    assert (np.concatenate([np.asarray(x) for x in ds]) == np.concatenate(tokens)).all()

    # metadata files
    assert load_profile(out) == profile
    assert (out / "tokenizer.json").read_bytes() == tokenizer_path.read_bytes()
    assert ByteTokenizer.load(out / "tokenizer.json").modality == profile.modality
    stats = json.loads((out / "stats.json").read_text())
    lengths = np.array([t.size for t in tokens])
    nbytes = np.array([len(exp[r][1]) for r in order])
    assert stats["samples"] == len(order)
    skipped_rows = (out / "skipped.jsonl").read_text().splitlines()
    assert stats["skipped"] == len(skipped_rows)
    assert stats["inputs"] == len(order) + len(skipped_rows)
    assert stats["total_tokens"] == int(lengths.sum())
    assert stats["tokens_per_sample"]["mean"] == pytest.approx(lengths.mean())
    assert stats["tokens_per_sample"]["median"] == pytest.approx(np.median(lengths))
    assert stats["tokens_per_sample"]["max"] == lengths.max()
    assert stats["bytes_per_sample"]["mean"] == pytest.approx(nbytes.mean())
    assert stats["total_bytes"] == nbytes.sum()
    if kind == "image":
        pixels = profile.width * profile.height * 3
    else:
        pixels = profile.width * profile.height * 3 * profile.fps * profile.seconds
    assert stats["pixels_per_sample"] == pixels
    assert stats["pixels_to_tokens"] == pytest.approx(pixels / lengths.mean())
    assert stats["profile"] == {"name": profile.name, "sha256": _sha(out / "profile.json")}
    assert stats["tokenizer"]["sha256"] == _sha(tokenizer_path)
    assert stats["tokenizer"]["name"] == tokenizer_path.name
    assert stats["token_dtype"] == "int16"
    # the training side reads it (shared data module's checks)
    from codeclm.data_module import load_shard_meta

    info, _, _ = load_shard_meta(out, profile.modality)
    assert info.total_samples == len(order) and info.total_tokens == lengths.sum()
    assert not (out / ".cache").exists() and not (out / ".staging").exists()
    return stats


def test_images_end_to_end(expected, tmp_path, capsys, image_dir, image_tokenizer, jpeg_tiny):
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "images", image_dir, out, "--profile", "tiny",
                           "--tokenizer", image_tokenizer, "--workers", "1", "--chunk-mb", "0.004")
    assert rc == 0, err
    assert stdout.startswith("images: 16 samples") and "skipped" not in stdout
    assert len(list(out.glob("chunk-*.bin"))) > 1  # small chunks: several
    check_output(expected, out, image_dir, "image", jpeg_tiny, image_tokenizer)
    assert (out / "skipped.jsonl").read_text() == ""


def test_videos_end_to_end(expected, tmp_path, capsys, video_dir, video_tokenizer, avc_tiny):
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "videos", video_dir, out, "--profile", "tiny",
                           "--tokenizer", video_tokenizer, "--workers", "2")
    assert rc == 0, err
    assert stdout.startswith("videos: 4 samples")
    check_output(expected, out, video_dir, "video", avc_tiny, video_tokenizer)


def test_bad_inputs_are_skipped_and_recorded(
    expected, tmp_path, capsys, image_dir, image_tokenizer, jpeg_tiny
):
    src = shutil.copytree(image_dir, tmp_path / "src")
    good = min(src.glob("*.png")).read_bytes()
    (src / "garbage.png").write_bytes(b"this is not a picture" * 10)
    (src / "truncated.png").write_bytes(good[: len(good) // 2])
    (src / "empty.jpg").write_bytes(b"")
    (src / "sub" / "notes.txt").write_text("hello")
    (src / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (src / ".hidden.png").write_bytes(b"junk")  # hidden files are not inputs at all
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "images", src, out, "--profile", "tiny", "--tokenizer",
                           image_tokenizer, "--workers", "2")
    assert rc == 0, err
    assert "16 samples" in stdout and "5 skipped" in stdout
    rows = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    reasons = {r["path"]: r["reason"] for r in rows}
    assert sorted(reasons) == [
        "clip.mp4",
        "empty.jpg",
        "garbage.png",
        "sub/notes.txt",
        "truncated.png",
    ]
    assert "not an image" in reasons["clip.mp4"] and "video" in reasons["clip.mp4"]
    assert "empty" in reasons["empty.jpg"]
    assert all(r.strip() and "\n" not in r for r in reasons.values())
    check_output(expected, out, src, "image", jpeg_tiny, image_tokenizer,
                 skipped=["empty.jpg", "garbage.png", "truncated.png"])


def _cli(*argv):
    """Run the real command line in a subprocess: (returncode, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "data_tools", *map(str, argv)], capture_output=True,
                       text=True, timeout=300, check=False)
    return p.returncode, p.stdout, p.stderr


def _one_line_error(rc, err, *needles):
    assert rc != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("data_tools: error:")
    for n in needles:
        assert n in lines[0]


def test_all_bad_inputs_fail_with_one_line(tmp_path, image_tokenizer):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"nope")
    (src / "b.jpg").write_bytes(b"")
    out = tmp_path / "out"
    rc, _, err = _cli("images", src, out, "--profile", "tiny", "--tokenizer", image_tokenizer,
                           "--workers", "1")
    _one_line_error(rc, err, "none of the 2 inputs")
    assert len((out / "skipped.jsonl").read_text().splitlines()) == 2
    assert not (out / "index.json").exists()


def test_missing_and_empty_src(tmp_path, image_tokenizer):
    rc, _, err = _cli("images", tmp_path / "nope", tmp_path / "out", "--profile", "tiny",
                      "--tokenizer", image_tokenizer)
    _one_line_error(rc, err, "no such file")
    (tmp_path / "empty").mkdir()
    rc, _, err = _cli("videos", tmp_path / "empty", tmp_path / "out", "--profile", "tiny",
                      "--tokenizer", image_tokenizer)
    _one_line_error(rc, err)


def test_wrong_tokenizer_or_profile(tmp_path, capsys, image_dir, video_tokenizer, image_tokenizer):
    rc, _, err = _run(capsys, "images", image_dir, tmp_path / "o", "--profile", "tiny",
                      "--tokenizer", video_tokenizer)
    assert rc == 1 and "tokenizer" in err
    rc, _, err = _run(capsys, "images", image_dir, tmp_path / "o", "--profile", "huge",
                      "--tokenizer", image_tokenizer)
    assert rc == 1 and "huge" in err
    rc, _, err = _run(capsys, "images", image_dir, tmp_path / "o", "--profile", "tiny",
                      "--tokenizer", tmp_path / "missing.json")
    assert rc == 1 and "tokenizer" in err


def test_deterministic_across_worker_counts_and_reruns(
    tmp_path, capsys, image_dir, image_tokenizer
):
    outs = []
    for i, workers in enumerate(["1", "2", "2"]):
        out = tmp_path / f"out{i}"
        rc, _, err = _run(capsys, "images", image_dir, out, "--profile", "tiny", "--tokenizer",
                          image_tokenizer, "--workers", workers, "--chunk-mb", "0.01")
        assert rc == 0, err
        outs.append(_shard_bytes(out))
    assert outs[0] == outs[1] == outs[2]
    # a re-run into the same folder gives the same files again
    rc, _, _ = _run(capsys, "images", image_dir, tmp_path / "out0", "--profile", "tiny",
                    "--tokenizer", image_tokenizer, "--workers", "1", "--chunk-mb", "0.01")
    assert rc == 0 and _shard_bytes(tmp_path / "out0") == outs[0]


def test_output_inside_source_is_not_an_input(tmp_path, capsys, image_dir, image_tokenizer):
    src = shutil.copytree(image_dir, tmp_path / "src")
    rc, _, _ = _run(capsys, "images", src, src / "shards", "--profile", "tiny", "--tokenizer",
                       image_tokenizer, "--workers", "1")
    rc2, out2, _ = _run(capsys, "images", src, src / "shards", "--profile", "tiny", "--tokenizer",
                        image_tokenizer, "--workers", "1")
    assert rc == rc2 == 0
    assert "16 samples" in out2 and "skipped" not in out2
