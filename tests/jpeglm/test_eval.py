"""`jpeglm eval complete` / `uncond` end to end on a tiny random model (CPU, pixels features)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codeclm.eval import extractors, inception
from jpeglm import codec
from jpeglm.cli import main
from jpeglm.profile import PROFILES

TINY = PROFILES["tiny"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, random_model_dir):
    """4 images in 2 class folders, a tiny random Llama with a BPE tokenizer trained on
    their canonical encodings, and held-out shards of those encodings."""
    from codeclm.profile import save_profile
    from codeclm.tokenizer import ByteTokenizer
    from data_tools.shards import write_shards

    root = tmp_path_factory.mktemp("jpeg_eval")
    images = root / "images"
    samples = []
    for i in range(4):
        rng = np.random.default_rng(i)
        img = np.zeros((80, 72, 3), np.uint8)
        img[:] = rng.integers(0, 256, 3)
        x, y = rng.integers(0, 40, 2)
        img[y:y + 30, x:x + 30] = rng.integers(0, 256, 3)
        p = images / f"class{i % 2}" / f"img{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
        samples.append(codec.encode_image(p, TINY))
    model = random_model_dir(samples, 300, "jpeg", TINY, 512, root / "model")
    tok = ByteTokenizer.load(model)
    shards = root / "shards"
    write_shards([np.asarray(x, np.int64) for x in tok.encode_batch(samples)], shards,
                 tok.vocab_size)
    tok.save(shards / "tokenizer.json")
    save_profile(TINY, shards)
    return {"root": root, "images": images, "model": model, "shards": shards, "samples": samples}


def _complete_args(s, out, *extra):
    return ["eval", "complete", "--model", str(s["model"]), "--images", str(s["images"]),
            "-o", str(out), "--ratios", "0.25", "0.75", "--seeds", "0", "1",
            "--extractor", "pixels", "--max-tokens", "12", "--no-progress", *extra]


@pytest.fixture(scope="module")
def completed(setup):
    out = setup["root"] / "complete"
    assert main(_complete_args(setup, out, "--shards", str(setup["shards"]))) == 0
    return out


def _sample_files(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted((out / "samples").rglob("*.jpg"))}


def test_complete_outputs(setup, completed):
    res = json.loads((completed / "results.json").read_text())
    assert res["comparable_to_published"] is False
    assert res["feature_extractor"]["name"] == "pixels"
    assert res["protocol"]["prompt_mcus"] == {"0.25": 4, "0.75": 12}
    for r in ("0.25", "0.75"):
        fid = res["fid"][r]
        assert set(fid["by_seed"]) == {"0", "1"}
        assert all(math.isfinite(v) and v >= 0 for v in fid["by_seed"].values())
        assert 0.0 <= res["validity"][r]["mean"] <= 1.0
    # more of the real image in the prompt: closer to the real set
    assert res["fid"]["0.75"]["mean"] < res["fid"]["0.25"]["mean"]
    assert res["intact_mcu_fraction"]["0.75"]["mean"] >= 0.75
    assert res["codec_roundtrip_fid"] < res["fid"]["0.75"]["mean"]
    assert res["samples"] == {"total": 16, "generated_this_run": 16, "skipped_images": []}

    bpb = res["bits_per_byte"]
    assert bpb["tokens"] > 0 and bpb["bytes"] > 0 and bpb["blocks"] >= 1
    assert bpb["bpb"] == pytest.approx(bpb["loss"] * bpb["tokens"] / bpb["bytes"] / math.log(2))

    md = (completed / "results.md").read_text()
    assert "| Model | r = 0.25 | r = 0.75 |" in md and "not comparable" in md
    rows = (completed / "per_class_fid.csv").read_text().splitlines()
    assert rows[0] == "r,class,n,fid,class_frequency"
    assert sorted(r.split(",")[1] for r in rows[1:]) == ["class0", "class0", "class1", "class1"]
    assert all(r.endswith(",0.500000") for r in rows[1:])
    with Image.open(completed / "fid_vs_r.png") as im:
        assert im.format == "PNG"


def test_completions_keep_their_prompt(setup, completed):
    """Each sample is a standalone JPEG whose first floor(r * MCUs) units are the real
    image's; the prompt decodes intact."""
    files = _sample_files(completed)
    assert len(files) == 4 * 2 * 2
    real = {f"class{i % 2}__img{i}": s for i, s in enumerate(setup["samples"])}
    for p in files:
        r = float(p.parent.name.split("_")[0][1:])
        k = int(r * TINY.mcu_count)
        data = p.read_bytes()
        assert data.startswith(codec.full_header(TINY))  # tables attached: any viewer opens it
        with Image.open(p) as im:
            assert im.size == TINY.size
        got = codec.split_mcus(codec.to_modeled(data, TINY))[1][:k]
        assert got == codec.split_mcus(real[p.stem])[1][:k]
        assert codec.intact_units(data, TINY) >= k


def test_rerun_regenerates_nothing(setup, completed):
    before = _sample_files(completed)
    fast = ("--fid-backend", "fast")  # the same numbers, without torchmetrics' eigvals
    assert main(_complete_args(setup, completed, *fast)) == 0
    assert _sample_files(completed) == before  # same files, same mtimes
    res = json.loads((completed / "results.json").read_text())
    assert res["samples"]["generated_this_run"] == 0

    # a lost sample is regenerated alone, with its own seed: the same bytes as before
    victim = sorted(before)[3]
    old = victim.read_bytes()
    victim.unlink()
    assert main(_complete_args(setup, completed, *fast)) == 0
    after = _sample_files(completed)
    res = json.loads((completed / "results.json").read_text())
    assert res["samples"]["generated_this_run"] == 1
    assert victim.read_bytes() == old
    assert {p: t for p, t in after.items() if p != victim} == {
        p: t for p, t in before.items() if p != victim}


def test_missing_inception_weights_is_one_line(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(extractors.WEIGHTS_ENV, raising=False)
    out = tmp_path / "o"
    args = [a if a != "pixels" else "inception" for a in _complete_args(setup, out)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("jpeglm: error:")
    assert inception.WEIGHTS_FILE in err and "--weights" in err and extractors.WEIGHTS_ENV in err
    assert not (out / "samples").exists()  # failed before generating anything


def test_bad_ratio_is_an_error(setup, tmp_path, capsys):
    args = _complete_args(setup, tmp_path / "o")
    args[args.index("0.75")] = "1.5"
    assert main(args) == 1
    assert "--ratios" in capsys.readouterr().err


def test_uncond(setup, tmp_path):
    out = tmp_path / "uncond"
    args = ["eval", "uncond", "--model", str(setup["model"]), "--images", str(setup["images"]),
            "-o", str(out), "--samples", "3", "--seeds", "5", "--batch", "2",
            "--extractor", "pixels", "--max-tokens", "8", "--fid-backend", "fast", "--no-progress"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert math.isfinite(res["fid"]["mean"]) and res["fid"]["mean"] > 0
    assert res["protocol"]["real_images"] == 4 and res["comparable_to_published"] is False
    files = sorted((out / "samples" / "uncond_seed5").glob("*.jpg"))
    assert [p.name for p in files] == ["00000.jpg", "00001.jpg", "00002.jpg"]
    for p in files:
        assert p.read_bytes().startswith(codec.full_header(TINY))
    assert "| Model | FID | validity (strict decode) |" in (out / "results.md").read_text()
    mtimes = [p.stat().st_mtime_ns for p in files]
    assert main(args) == 0
    assert [p.stat().st_mtime_ns for p in files] == mtimes


def test_complete_skips_an_image_whose_prompt_fills_the_context(setup, tmp_path):
    """A noise image's prompt is longer than the 512-token context at r = 0.75: it is
    skipped by name, with the reason, and the other images are evaluated."""
    import shutil

    images = tmp_path / "images"
    shutil.copytree(setup["images"], images)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(images / "class0" / "noise.png")
    out = tmp_path / "out"
    args = _complete_args(setup, out)
    args[args.index("--images") + 1] = str(images)
    args[args.index("--seeds") + 1:args.index("--seeds") + 3] = ["0"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    (skip,) = res["samples"]["skipped_images"]
    assert skip["id"].endswith("noise") and "fills the model's 512-token context" in skip["reason"]
    assert res["protocol"]["images"] == 4
    assert not list((out / "samples").rglob("*noise*"))


def test_uncond_default_count_fits_a_cpu(setup, tmp_path, capsys):
    """Without --samples a CPU run makes 50 images per seed (not the paper's 1000) and
    says so before it starts."""
    from jpeglm.commands.eval import UNCOND_SAMPLES

    out = tmp_path / "uncond"
    assert main(["eval", "uncond", "--model", str(setup["model"]), "--images",
                 str(setup["images"]), "-o", str(out), "--seeds", "1", "--batch", "25",
                 "--device", "cpu", "--extractor", "pixels", "--max-tokens", "4",
                 "--fid-backend", "fast"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"]["generated_per_seed"] == UNCOND_SAMPLES["cpu"] == 50
    err = capsys.readouterr().err
    assert "50 images per seed x 1 seeds on cpu" in err and "--samples 1000" in err


def test_the_protocol_is_a_library_call(setup, completed):
    """`jpeglm.evaluate_completion` returns what the verb wrote (same samples, nothing
    regenerated), as a dict a caller can extend."""
    import jpeglm

    config = jpeglm.CompleteConfig(ratios=[0.25, 0.75], seeds=[0, 1], extractor="pixels",
                                   max_tokens=12, fid_backend="fast", quiet=True)
    res = jpeglm.evaluate_completion(setup["model"], setup["images"], completed, config)
    on_disk = json.loads((completed / "results.json").read_text())
    res = json.loads(json.dumps(res))  # float ratio keys -> strings, as in the file
    for key in ("model", "protocol", "feature_extractor", "validity", "intact_mcu_fraction"):
        assert res[key] == on_disk[key], key
    assert res["samples"]["generated_this_run"] == 0
    assert res["samples"]["total"] == on_disk["samples"]["total"] == 16  # 2 r x 2 seeds x 4
