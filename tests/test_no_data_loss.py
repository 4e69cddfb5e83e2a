"""Issue 12: outputs never cost the user a file, and failures are typed and complete.

The overwrite rule (an earlier run is replaced whole, the user's files never), the model
directory and shard set ownership, the data_tools lock, broken symbolic links, a full
disk (a file size limit in the child, which fails writes with EFBIG), SIGTERM, and
hypothesis-fuzzed bytes into the H.264 decoder, the JPEG encoder and model loading
(typed errors only).
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeclm.errors import CodecLMError, ModelError, OutputError

ROOT = Path(__file__).resolve().parents[1]
JPEG_MODEL = ROOT / "jpeglm" / "assets" / "model"
AVC_MODEL = ROOT / "avclm" / "assets" / "model"


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
                TOKENIZERS_PARALLELISM="false")


def _cli(module: str, *args, cwd=None, limit_bytes: int | None = None, timeout=240):
    """Run a CLI; ``limit_bytes``: RLIMIT_FSIZE for the child (SIGXFSZ ignored, so a write
    past it fails with EFBIG like a full disk)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout, check=False,
                          preexec_fn=limit if limit_bytes is not None else None)


def _tree(root: Path) -> dict[str, bytes | None]:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """4 tiny PNGs and a 300-entry tokenizer trained on them."""
    from PIL import Image

    from codeclm.tokenizer import ByteTokenizer
    from jpeglm import codec
    from jpeglm.profile import PROFILES

    root = tmp_path_factory.mktemp("media")
    src = root / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(src / f"{i}.png")
    tok = ByteTokenizer.train(
        [codec.encode_image(p, PROFILES["tiny"]) for p in sorted(src.iterdir())], 300, "jpeg"
    )
    return src, tok.save(root / "tok.json")


def _images(src, out, tok, *extra):
    return _cli("data_tools", "images", src, out, "--profile", "tiny", "--tokenizer", tok,
                "--workers", "1", *extra)


# ---------------------------------------------------------------------------- the overwrite rule
def test_output_dir_replaces_the_earlier_run_and_keeps_user_files(tmp_path):
    """`generate -n 12` then `-n 3 --overwrite`: the 12 go, the user's notes stay."""
    from codeclm.outputs import check_output_dir

    out = tmp_path / "out"
    first = [f"{i:02d}.jpg" for i in range(12)] + ["grid.png"]
    check_output_dir(out, "jpeglm generate", overwrite=False).create(first)
    for name in first:
        (out / name).write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="earlier run of jpeglm generate"):
        check_output_dir(out, "jpeglm generate", overwrite=False)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        sorted(first + ["notes.txt"])
    target = check_output_dir(out, "jpeglm generate", overwrite=True)
    target.create(["0.jpg", "1.jpg", "2.jpg", "grid.png"])
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_output_dir_not_ours_needs_overwrite_and_keeps_other_files(tmp_path):
    from codeclm.outputs import check_output_dir, read_marker

    out = tmp_path / "out"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"photo")
    with pytest.raises(OutputError, match="not empty"):
        check_output_dir(out, "jpeglm generate", overwrite=False)
    check_output_dir(out, "jpeglm generate", overwrite=True).create(["0.jpg"])
    assert (out / "holiday.jpg").read_bytes() == b"photo"
    assert read_marker(out)["files"] == ["0.jpg"]
    # a later --overwrite removes only what the marker names
    check_output_dir(out, "jpeglm generate", overwrite=True).create(["1.jpg"])
    assert (out / "holiday.jpg").read_bytes() == b"photo"


def test_save_model_dir_replaces_only_model_directories(tmp_path, random_model_dir):
    from codeclm.model_dir import load_model_dir, save_model_dir
    from jpeglm.profile import PROFILES

    samples = [bytes(range(256)) * 2]
    m = random_model_dir(samples, 300, "jpeg", PROFILES["tiny"], 64, tmp_path / "m")
    lm = load_model_dir(m, "jpeg")
    with pytest.raises(OutputError, match="--overwrite"):
        save_model_dir(lm.model, lm.tokenizer, lm.profile, m)
    save_model_dir(lm.model, lm.tokenizer, lm.profile, m, overwrite=True)
    assert load_model_dir(m, "jpeg").model.config.vocab_size == lm.tokenizer.vocab_size
    (m / "my-notes.txt").write_text("keep me")
    before = _tree(m)
    with pytest.raises(OutputError, match="my-notes.txt"):
        save_model_dir(lm.model, lm.tokenizer, lm.profile, m, overwrite=True)
    assert _tree(m) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


# ---------------------------------------------------------------------------- data_tools
def test_shards_never_delete_foreign_cache_or_chunks(tmp_path, media):
    src, tok = media
    home = tmp_path / "home"
    (home / ".cache" / "pip").mkdir(parents=True)
    (home / ".cache" / "pip" / "wheel").write_bytes(b"w")
    (home / "chunk-0-0.bin").write_bytes(b"my chunk")
    before = _tree(home)
    for extra in ((), ("--overwrite",)):
        r = _images(src, home, tok, *extra)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert _tree(home) == before
    # a folder of the user's without our internal names: --overwrite writes beside them
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("mine")
    assert _images(src, shared, tok).returncode == 1
    r = _images(src, shared, tok, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert (shared / "notes.txt").read_text() == "mine" and (shared / "index.json").is_file()
    # now it is ours: a plain re-run resumes (nothing encoded again)
    r = _images(src, shared, tok)
    assert r.returncode == 0 and "4 samples" in r.stdout, r.stderr
    assert (shared / "notes.txt").read_text() == "mine"


def test_lock_refuses_a_second_run_naming_the_first(tmp_path, media):
    from data_tools.outdir import LOCK, claimed

    src, tok = media
    out = tmp_path / "out"
    with claimed(out, "data_tools images"):
        r = _images(src, out, tok)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
        assert f"pid {os.getpid()}" in r.stderr and "another data_tools run" in r.stderr
    with open(out / LOCK) as f:  # released: it can be taken again
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert _images(src, out, tok).returncode == 0


def test_broken_links_are_skipped_and_out_inside_src_is_not_read(tmp_path, media):
    src0, tok = media
    src = shutil.copytree(src0, tmp_path / "src")
    os.symlink(src / "gone.png", src / "dangling.png")
    os.symlink(src / "loop.png", src / "loop.png")
    out = src / "shards"
    for _ in range(2):  # the second run must not ingest the first one's outputs
        r = _images(src, out, tok)
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
        assert {row["path"] for row in rows} == {"dangling.png", "loop.png"}
        assert all(row["reason"].startswith("broken symbolic link") for row in rows)
        assert json.loads((out / "stats.json").read_text())["samples"] == 4


def test_disk_full_in_data_tools_is_one_line_and_resumable(tmp_path, media):
    src, tok = media
    out = tmp_path / "out"
    r = _cli("data_tools", "images", src, out, "--profile", "tiny", "--tokenizer", tok,
             "--workers", "1", limit_bytes=300)
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.splitlines()) == 1 and "disk full" in r.stderr, r.stderr
    assert not (out / "index.json").exists() and not list(out.glob("**/*.part"))
    r = _images(src, out, tok)  # space freed: the same command finishes the job
    assert r.returncode == 0 and "4 samples" in r.stdout, r.stderr


@pytest.mark.parametrize(
    "module, args, name",
    [
        ("jpeglm.cli", ["encode", "{img}", "-o", "out.jpg"], "out.jpg"),
        (
            "data_tools",
            ["synth", "syn", "--kind", "image", "--count", "3", "--profile", "paper"],
            "syn",
        ),
    ],
)
def test_disk_full_writes_nothing(tmp_path, media, module, args, name):
    src, _ = media
    args = [a.replace("{img}", str(src / "0.png")) for a in args]
    r = _cli(module, *args, cwd=tmp_path, limit_bytes=100)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "disk full" in r.stderr, r.stderr
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".part")
                 or (p.is_file() and p.suffix in (".jpg", ".png"))]
    assert not leftovers


def test_tmpfs_full_export_writes_nothing(tmp_path):
    """A real ENOSPC: a 1 MB tmpfs cannot hold a model directory (skipped where mounting
    is not permitted)."""
    from codeclm.model_dir import load_model_dir, save_model_dir

    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                                            str(mnt)], capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        lm = load_model_dir(JPEG_MODEL, "jpeg")  # 3.4 MB of weights
        with pytest.raises(OutputError, match="disk full"):
            save_model_dir(lm.model, lm.tokenizer, lm.profile, mnt / "m")
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_sigterm_cleans_up_like_sigint(tmp_path):
    """`timeout` sends SIGTERM: the streamed .h264 temp file goes, no output appears."""
    proc = subprocess.Popen([sys.executable, "-m", "avclm.cli", "generate", "--frames", "400",
                             "-o", "out.h264", "--quiet", "--seed", "0"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob(".out.h264.*.part")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["avclm: terminated"]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- fuzzed bytes
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(st.binary(max_size=400),
                 st.lists(st.binary(max_size=40), max_size=12).map(
                     lambda parts: b"".join(b"\x00\x00\x00\x01" + p for p in parts))))
def test_fuzzed_h264_decodes_or_raises_typed(data):
    from avclm.profile import PROFILES
    from avclm.stream import decode_annexb_with_stats

    for strict in (True, False):
        try:
            decode_annexb_with_stats(data, PROFILES["tiny"], strict=strict)
        except CodecLMError:
            pass


@FUZZ
@given(st.one_of(st.binary(max_size=600),
                 st.binary(max_size=300).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
                 st.binary(max_size=300).map(lambda b: b"\xff\xd8\xff\xe0" + b)))
def test_fuzzed_image_bytes_encode_or_raise_typed(data):
    from jpeglm import codec
    from jpeglm.profile import PROFILES

    try:
        codec.encode_image(data, PROFILES["tiny"])
    except CodecLMError:
        pass


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory):
    return shutil.copytree(JPEG_MODEL, tmp_path_factory.mktemp("fuzzmodel") / "m")


@FUZZ
@given(name=st.sampled_from(["config.json", "profile.json", "tokenizer.json",
                             "model.safetensors"]),
       data=st.one_of(st.binary(max_size=300),
                      st.binary(max_size=200).map(lambda b: struct.pack("<Q", len(b)) + b)))
def test_fuzzed_model_files_raise_typed_errors(model_copy, name, data):
    from codeclm.model_dir import check_model_dir

    path = model_copy / name
    good = path.read_bytes()
    path.write_bytes(data)
    try:
        with pytest.raises(CodecLMError):
            check_model_dir(model_copy, "jpeg")
    finally:
        path.write_bytes(good)


@settings(max_examples=8, deadline=None)
@given(cut=st.floats(0.0, 0.999), flip=st.integers(0, 10**6))
def test_damaged_weights_never_load_half(model_copy, cut, flip):
    """A truncated or header-damaged model.safetensors is a ModelError, never a model
    with some random weights."""
    from codeclm.model_dir import load_model_dir

    path = model_copy / "model.safetensors"
    good = path.read_bytes()
    (n,) = struct.unpack("<Q", good[:8])
    damaged = bytearray(good[:int(len(good) * cut)])
    if flip % 2 and len(damaged) > 8 + n:  # damage the header instead, full length
        damaged = bytearray(good)
        damaged[8 + flip % n] ^= 0x5A
    path.write_bytes(bytes(damaged))
    try:
        try:
            lm = load_model_dir(model_copy, "jpeg")
        except ModelError:
            return
        # the header survived the flip (e.g. inside a name that still parses): then every
        # weight must be there with the right shape
        assert len(lm.model.state_dict()) > 0
    finally:
        path.write_bytes(good)


def test_write_png_is_atomic_and_lossless(tmp_path):
    """The one PNG writer (grids, previews, synth images, training samples): arrays and PIL
    images decode back to the same pixels, and a failed write leaves no file behind."""
    from PIL import Image

    from codeclm.io import write_png

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    write_png(rgb, tmp_path / "a.png", compress_level=1)
    write_png(Image.fromarray(rgb[..., 0]), tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), rgb)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), rgb[..., 0])
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputError, match="taken"):
        write_png(rgb, tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "taken"]
