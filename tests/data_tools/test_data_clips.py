"""`data_tools videos --clips/--stride` and `images --crops`: (file, clip|crop) work units.

Shards are checked against an independent recomputation (``avclm.clips.encode_clip`` /
``data_tools.crops`` + the tokenizer per unit); the manifest must trace every sample to
its file and clip start.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import av
import numpy as np
import pytest
from PIL import Image

from avclm.clips import encode_clip
from codeclm.tokenizer import ByteTokenizer
from data_tools.__main__ import main
from data_tools.crops import crop_image, encode_crop
from data_tools.pipeline import build_dataset
from data_tools.shards import read_samples
from jpeglm.codec import encode_image, to_jpeg


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    """A 9 s B-frame video (4 tiny clips), a 5.5 s one (2 clips) and a 1.5 s one (1 short
    clip), made by the bundled ffmpeg."""
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    root = tmp_path_factory.mktemp("longvids")
    for name, src in {"a_long.mp4": "testsrc2=size=80x48:rate=25:duration=9",
                      "sub/b_mid.mp4": "mandelbrot=size=64x64:rate=20,trim=duration=5.5",
                      "c_short.mp4": "testsrc=size=64x48:rate=10:duration=1.5"}.items():
        (root / name).parent.mkdir(exist_ok=True)
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", src,
                        "-c:v", "libx264", "-bf", "2", "-g", "30", "-pix_fmt", "yuv420p",
                        str(root / name)], check=True)
    return root


EXPECTED_CLIPS = [("a_long.mp4", 0), ("a_long.mp4", 2), ("a_long.mp4", 4), ("a_long.mp4", 6),
                  ("c_short.mp4", 0), ("sub/b_mid.mp4", 0), ("sub/b_mid.mp4", 2)]


def _tokens(tokenizer_path, data):
    return np.asarray(ByteTokenizer.load(tokenizer_path).encode(data))


def test_videos_every_clip_with_manifest(tmp_path, capsys, long_videos, video_tokenizer,
                                         avc_tiny):
    out = tmp_path / "shards"
    rc, stdout, _ = _run(capsys, "videos", long_videos, out, "--profile", "tiny",
                         "--tokenizer", video_tokenizer, "--workers", "1")
    assert rc == 0 and stdout.startswith("videos: 7 samples from 3 files, "), stdout
    manifest = _rows(out / "manifest.jsonl")
    assert [(r["path"], r["clip_start"]) for r in manifest] == EXPECTED_CLIPS
    assert [r["sample"] for r in manifest] == list(range(7))
    got = list(read_samples(out))
    for row, sample in zip(manifest, got):  # each sample is the clip its row names
        data = encode_clip(long_videos / row["path"], row["clip_start"], avc_tiny)
        assert (sample == _tokens(video_tokenizer, data)).all(), row
    assert (out / "skipped.jsonl").read_text() == ""
    assert json.loads((out / "stats.json").read_text())["samples"] == 7

    # deterministic for any worker count; --clips 1 is the first clip of each file only
    out2 = tmp_path / "shards2"
    assert _run(capsys, "videos", long_videos, out2, "--profile", "tiny", "--tokenizer",
                video_tokenizer, "--workers", "2")[0] == 0
    for name in ["chunk-0-0.bin", "index.json", "manifest.jsonl", "stats.json"]:
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name
    out3 = tmp_path / "first"
    rc, stdout, _ = _run(capsys, "videos", long_videos, out3, "--profile", "tiny",
                         "--tokenizer", video_tokenizer, "--clips", "1")
    assert rc == 0 and stdout.startswith("videos: 3 samples"), stdout
    assert [(r["path"], r["clip_start"]) for r in _rows(out3 / "manifest.jsonl")] == [
        ("a_long.mp4", 0), ("c_short.mp4", 0), ("sub/b_mid.mp4", 0)]
    first = list(read_samples(out3))
    assert all((a == b).all() for a, b in zip(first, [got[0], got[4], got[5]]))


def test_stride_and_clip_count(tmp_path, capsys, long_videos, video_tokenizer):
    out = tmp_path / "s"
    rc, _, _ = _run(capsys, "videos", long_videos, out, "--profile", "tiny", "--tokenizer",
                    video_tokenizer, "--stride", "1.5", "--clips", "3", "--workers", "1")
    assert rc == 0
    assert [(r["path"], r["clip_start"]) for r in _rows(out / "manifest.jsonl")] == [
        ("a_long.mp4", 0), ("a_long.mp4", 1.5), ("a_long.mp4", 3), ("c_short.mp4", 0),
        ("sub/b_mid.mp4", 0), ("sub/b_mid.mp4", 1.5), ("sub/b_mid.mp4", 3)]
    for bad in (["--clips", "0"], ["--clips", "some"], ["--stride", "0"], ["--stride", "x"]):
        with pytest.raises(SystemExit):
            main(["videos", str(long_videos), str(tmp_path / "x"), "--profile", "tiny",
                  "--tokenizer", str(video_tokenizer), *bad])
        assert "error:" in capsys.readouterr().err


def test_resumable_per_clip(tmp_path, long_videos, video_tokenizer, avc_tiny):
    """Clips cached by a run that stopped early are reused; only the rest is encoded."""
    out = tmp_path / "r"
    first = build_dataset(long_videos, out, "video", avc_tiny, video_tokenizer, clips=2,
                          keep_cache=True, show_progress=False)
    assert (first.samples, first.encoded) == (5, 5)
    again = build_dataset(long_videos, out, "video", avc_tiny, video_tokenizer,
                          show_progress=False)
    assert (again.samples, again.reused, again.encoded) == (7, 5, 2)
    fresh = build_dataset(long_videos, tmp_path / "fresh", "video", avc_tiny, video_tokenizer,
                          show_progress=False)
    assert [s.tolist() for s in read_samples(out)] == [s.tolist() for s in read_samples(
        tmp_path / "fresh")] and fresh.samples == 7


def _damage(src, dst, seconds):
    """Copy ``src`` with the payload of the reference picture nearest ``seconds``
    overwritten (a non-reference one may go undecoded: no clip uses it)."""
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        p = min((p for p in c.demux(s) if p.size and bytes(p)[4] >> 5 & 3),  # a reference
                key=lambda p: abs(float(p.pts * s.time_base) - seconds))
        pos, size = p.pos, p.size
    data = bytearray(src.read_bytes())
    data[pos + 4: pos + size] = bytes((i * 37 + 11) % 256 for i in range(size - 4))
    dst.write_bytes(bytes(data))


def test_a_damaged_stretch_skips_only_its_clips(tmp_path, capsys, long_videos, video_tokenizer):
    src = tmp_path / "src"
    shutil.copytree(long_videos, src)
    _damage(long_videos / "a_long.mp4", src / "a_long.mp4", 4.5)  # GOP 3.6 s - 4.8 s
    (src / "b_garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    out = tmp_path / "out"
    rc, stdout, _ = _run(capsys, "videos", src, out, "--profile", "tiny", "--tokenizer",
                         video_tokenizer, "--workers", "2")
    assert rc == 0 and "6 samples" in stdout and "2 skipped" in stdout, stdout
    row, whole = _rows(out / "skipped.jsonl")
    assert (row["path"], row["clip_start"]) == ("a_long.mp4", 4.0)
    assert "damaged video" in row["reason"]
    assert whole["path"] == "b_garbage.mp4" and "clip_start" not in whole  # the whole file
    kept = [(r["path"], r["clip_start"]) for r in _rows(out / "manifest.jsonl")]
    assert kept == [c for c in EXPECTED_CLIPS if c != ("a_long.mp4", 4)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A 300x200 noise image (crops are windows of it) and a 40x30 one (scaled up first)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(root / "big.png")
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / "small.png")
    return root


def test_image_crops(tmp_path, capsys, photos, image_tokenizer, jpeg_tiny):
    out = tmp_path / "crops"
    rc, stdout, _ = _run(capsys, "images", photos, out, "--profile", "tiny", "--tokenizer",
                         image_tokenizer, "--crops", "3", "--workers", "2")
    assert rc == 0 and stdout.startswith("images: 8 samples from 2 files"), stdout
    manifest = _rows(out / "manifest.jsonl")
    assert [(r["path"], r.get("crop")) for r in manifest] == [
        ("big.png", None), ("big.png", 0), ("big.png", 1), ("big.png", 2),
        ("small.png", None), ("small.png", 0), ("small.png", 1), ("small.png", 2)]
    samples = list(read_samples(out))
    decoded = []
    for row, sample in zip(manifest, samples):
        path = photos / row["path"]
        data = (encode_image(path, jpeg_tiny) if "crop" not in row
                else encode_crop(str(path), jpeg_tiny, 0, row["path"], row["crop"]))
        assert (sample == _tokens(image_tokenizer, data)).all(), row
        with Image.open(io.BytesIO(to_jpeg(data, jpeg_tiny))) as im:  # a real JPEG
            assert im.size == jpeg_tiny.size
            decoded.append(im.tobytes())
    assert len(set(decoded)) == 8  # every crop is another picture
    # seeded: the same command cuts the same windows; another --seed other ones
    again = tmp_path / "again"
    assert _run(capsys, "images", photos, again, "--profile", "tiny", "--tokenizer",
                image_tokenizer, "--crops", "3", "--workers", "1")[0] == 0
    assert (again / "chunk-0-0.bin").read_bytes() == (out / "chunk-0-0.bin").read_bytes()
    other = tmp_path / "other"
    assert _run(capsys, "images", photos, other, "--profile", "tiny", "--tokenizer",
                image_tokenizer, "--crops", "3", "--seed", "1")[0] == 0
    theirs = list(read_samples(other))
    assert (theirs[0] == samples[0]).all() and not (theirs[1].size == samples[1].size
                                                    and (theirs[1] == samples[1]).all())
    # off by default: the fit crop only
    rc, stdout, _ = _run(capsys, "images", photos, tmp_path / "plain", "--profile", "tiny",
                         "--tokenizer", image_tokenizer)
    assert rc == 0 and stdout.startswith("images: 2 samples"), stdout


def test_crop_of_a_large_image_is_a_window_at_full_resolution(photos, jpeg_tiny):
    big = np.asarray(Image.open(photos / "big.png"))
    w, h = jpeg_tiny.size
    for index in range(3):
        crop = np.asarray(crop_image(str(photos / "big.png"), jpeg_tiny, 3, "big.png", index))
        hits = [(y, x) for y in range(big.shape[0] - h + 1) for x in range(big.shape[1] - w + 1)
                if (big[y, x] == crop[0, 0]).all() and (big[y:y + h, x:x + w] == crop).all()]
        assert len(hits) == 1  # an exact window: no resampling
    small = crop_image(str(photos / "small.png"), jpeg_tiny, 3, "small.png", 0)
    assert small.size == jpeg_tiny.size
