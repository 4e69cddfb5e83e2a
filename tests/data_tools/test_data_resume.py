"""Resumability: a run killed with SIGKILL and re-run equals an uninterrupted run, and the
re-run does not redo (or duplicate) what the killed run finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from data_tools.cache import InputCache
from data_tools.pipeline import build_dataset
from data_tools.shards import read_samples
from data_tools.synth import synth


def _outputs(out):
    names = sorted(p.name for p in out.glob("chunk-*.bin")) + ["index.json", "stats.json",
                                                                "skipped.jsonl", "profile.json",
                                                                "tokenizer.json"]
    return {n: (out / n).read_bytes() for n in names}


@pytest.fixture(scope="module")
def many_images(tmp_path_factory, jpeg_tiny):
    root = tmp_path_factory.mktemp("many")
    synth(root, "image", jpeg_tiny, 240, seed=11)
    (root / "broken.png").write_bytes(b"broken")
    return root


def _cached(out):
    """Keys of the complete records in OUT's cache logs."""
    return set(InputCache(out / ".cache").scan().index)


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, many_images, image_tokenizer,
                                                        jpeg_tiny):
    ref = tmp_path / "ref"
    r = build_dataset(many_images, ref, "image", jpeg_tiny, image_tokenizer, workers=1)
    assert r.samples == 240 and r.skipped == 1 and r.reused == 0 and r.encoded == 241

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "data_tools", "images", str(many_images), str(out), "--profile",
           "tiny", "--tokenizer", str(image_tokenizer), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while len(_cached(out)) < 20 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        finished_early = proc.poll() is not None
        os.killpg(proc.pid, signal.SIGKILL)  # the job and its worker processes, mid-run
    finally:
        proc.wait(timeout=60)
    assert not finished_early, "the run finished before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "index.json").exists()
    done = _cached(out)
    assert 20 <= len(done) < 241
    cache = InputCache(out / ".cache").scan()
    for key in done:  # every record that survived the kill is whole
        got = cache.get(key)
        assert isinstance(got, str) or (got[0] == 1 and got[-1] == 2)
    cache.close()

    r = build_dataset(many_images, out, "image", jpeg_tiny, image_tokenizer, workers=2)
    # finished work was not redone, the rest was done once
    assert (r.reused, r.encoded, r.samples, r.skipped) == (len(done), 241 - len(done), 240, 1)
    # ... and the result is the uninterrupted run's, byte for byte (no duplicates, no gaps)
    assert _outputs(out) == _outputs(ref)
    assert len(list(read_samples(out))) == 240


def test_changed_input_is_redone_others_reused(tmp_path, image_dir, image_tokenizer, jpeg_tiny):
    import shutil

    src = shutil.copytree(image_dir, tmp_path / "src")
    out = tmp_path / "out"
    r1 = build_dataset(src, out, "image", jpeg_tiny, image_tokenizer, keep_cache=True)
    assert (r1.encoded, r1.reused) == (16, 0)
    first = list(read_samples(out))
    victim = min(src.glob("*.png"))
    synth(tmp_path / "other", "image", jpeg_tiny, 1, seed=99)
    shutil.copyfile(next((tmp_path / "other").glob("*.png")), victim)
    r2 = build_dataset(src, out, "image", jpeg_tiny, image_tokenizer, keep_cache=True)
    assert (r2.encoded, r2.reused, r2.samples) == (1, 15, 16)
    second = list(read_samples(out))
    changed = [
        i for i, (a, b) in enumerate(zip(first, second)) if a.shape != b.shape or (a != b).any()
    ]
    assert changed == [0]
    # without --keep-cache the cache goes away after success
    r3 = build_dataset(src, out, "image", jpeg_tiny, image_tokenizer)
    assert (r3.encoded, r3.reused) == (0, 16) and not (out / ".cache").exists()
