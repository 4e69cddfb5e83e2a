"""`avclm eval continue` end to end on a tiny random model (CPU, pixels features)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avclm.cli import main
from avclm.profile import TINY
from codeclm.eval import extractors, inception, metrics

K, M = 2, 2  # prompt frames, generated frames


@pytest.fixture(scope="module")
def setup(tmp_path_factory, random_model_dir):
    """2 clips of a moving square (MP4, one per class folder), a tiny random Llama with a
    BPE tokenizer trained on their canonical encodings, held-out shards of them."""
    from avclm.codec import annexb_to_mp4, encode_frames
    from codeclm.profile import save_profile
    from codeclm.tokenizer import ByteTokenizer
    from data_tools.shards import write_shards

    root = tmp_path_factory.mktemp("avc_eval")
    samples = []
    for i in range(2):
        bg = np.random.default_rng(i).integers(0, 256, 3)
        frames = []
        for t in range(TINY.frames):
            f = np.empty((TINY.height, TINY.width, 3), np.uint8)
            f[:] = bg
            x = 4 + 5 * t + 3 * i
            f[20:36, x:x + 16] = 255 - bg
            frames.append(f)
        data = encode_frames(frames, TINY)
        samples.append(data)
        annexb_to_mp4(data, root / "videos" / f"class{i}" / f"clip{i}.mp4", TINY)
    model = random_model_dir(samples, 300, "h264", TINY, 1024, root / "model")
    tok = ByteTokenizer.load(model)
    shards = root / "shards"
    write_shards([np.asarray(x, np.int64) for x in tok.encode_batch(samples * 2)], shards,
                 tok.vocab_size)
    tok.save(shards / "tokenizer.json")
    save_profile(TINY, shards)
    return {"root": root, "videos": root / "videos", "model": model, "shards": shards}


def _args(s, out, *extra, extractor="pixels"):
    return ["eval", "continue", "--model", str(s["model"]), "--videos", str(s["videos"]),
            "-o", str(out), "--prompt-frames", str(K), "--frames", str(M), "--seeds", "0", "1",
            "--extractor", extractor, "--max-nal-tokens", "4", "--max-attempts", "1",
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def evaluated(setup):
    out = setup["root"] / "out"
    assert main(_args(setup, out, "--shards", str(setup["shards"]))) == 0
    return out


def _streams(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted((out / "samples").rglob("*.h264"))}


def test_continue_outputs(evaluated):
    res = json.loads((evaluated / "results.json").read_text())
    assert res["protocol"]["prompt_frames"] == K and res["protocol"]["frames"] == M
    assert res["protocol"]["clips"] == 2 and res["samples"]["total"] == 4
    assert res["samples"]["generated_this_run"] == 4
    assert set(res["psnr_by_frame"]) == {"2", "3"} == set(res["ssim_by_frame"])
    for j in ("2", "3"):
        assert 0 < res["psnr_by_frame"][j]["mean"] <= metrics.PSNR_CAP
        assert -1 <= res["ssim_by_frame"][j]["mean"] <= 1
    assert 0.0 <= res["validity"]["rate"] <= 1.0
    v = res["verifier"]
    assert v["rejected_nals"] >= 0 and v["replaced_nals"] >= 0
    assert res["fid"]["mean"] >= 0 and set(res["fid"]["by_seed"]) == {"0", "1"}
    assert res["comparable_to_published"] is False
    assert res["bits_per_byte"]["bpb"] > 0
    md = (evaluated / "results.md").read_text()
    assert "| Model | frame 2 | frame 3 |" in md and "repeat last prompt frame" in md
    assert "not comparable" in md
    with Image.open(evaluated / "psnr_vs_frame.png") as im:
        assert im.format == "PNG"


def test_samples_continue_their_prompt_and_metrics_match_the_files(evaluated):
    """Each stream holds the clip's first K pictures, then M generated ones; the prompt
    frames decode exactly as the reference; the per-frame PSNR is the files' PSNR."""
    from avclm.generate import prompt_units
    from avclm.stream import decode_annexb

    res = json.loads((evaluated / "results.json").read_text())
    psnr = {j: [] for j in range(K, K + M)}
    streams = _streams(evaluated)
    assert len(streams) == 4
    for p in streams:
        ref = (evaluated / "reference" / p.name).read_bytes()
        head, n = prompt_units(TINY, ref, K)
        data = p.read_bytes()
        assert n == K and data.startswith(b"".join(head))
        frames = decode_annexb(data, TINY, strict=False)
        gt = decode_annexb(ref, TINY, strict=True)
        assert len(frames) == K + M
        for j in range(K):
            assert np.array_equal(frames[j], gt[j])
        for j in range(K, K + M):
            psnr[j].append(metrics.psnr(gt[j], frames[j]))
        meta = json.loads(p.with_suffix(".json").read_text())
        assert meta["seed"] == int(p.parent.name[4:])
    for j in range(K, K + M):
        assert res["psnr_by_frame"][str(j)]["mean"] == pytest.approx(np.mean(psnr[j]))


def test_rerun_regenerates_nothing(setup, evaluated, monkeypatch):
    before = _streams(evaluated)
    monkeypatch.delenv(extractors.WEIGHTS_ENV, raising=False)
    # auto without weights: no FID, and still nothing regenerated
    assert main(_args(setup, evaluated, extractor="auto")) == 0
    assert _streams(evaluated) == before
    res = json.loads((evaluated / "results.json").read_text())
    assert res["samples"]["generated_this_run"] == 0
    assert res["fid"] is None
    assert "not computed" in (evaluated / "results.md").read_text()


def test_missing_weights_is_one_line(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(extractors.WEIGHTS_ENV, raising=False)
    out = tmp_path / "o"
    assert main(_args(setup, out, extractor="inception")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("avclm: error:")
    assert inception.WEIGHTS_FILE in err and extractors.WEIGHTS_ENV in err
    assert not (out / "samples").exists()


def test_clip_too_short_for_the_protocol(setup, tmp_path, capsys):
    args = _args(setup, tmp_path / "o")
    args[args.index("--prompt-frames") + 1] = str(TINY.frames)
    assert main(args) == 1
    assert "frames" in capsys.readouterr().err


def test_the_protocol_is_a_library_call(setup, evaluated):
    """`avclm.evaluate_continuation` returns what the verb wrote (same samples, nothing
    regenerated), as a dict a caller can extend."""
    import avclm

    config = avclm.ContinueConfig(prompt_frames=K, frames=M, seeds=[0, 1], extractor="none",
                                  max_nal_tokens=4, max_attempts=1, quiet=True)
    res = avclm.evaluate_continuation(setup["model"], setup["videos"], evaluated, config)
    on_disk = json.loads((evaluated / "results.json").read_text())
    res = json.loads(json.dumps(res))
    for key in ("model", "protocol", "psnr_by_frame", "ssim_by_frame", "validity", "verifier",
                "baseline_repeat_last_prompt_frame"):
        assert res[key] == on_disk[key], key
    assert res["fid"] is None and res["samples"]["generated_this_run"] == 0
