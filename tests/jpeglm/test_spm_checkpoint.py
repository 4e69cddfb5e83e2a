"""The published JPEG-LM checkpoint's directory format used as it is by `jpeglm`.

``spm_checkpoint`` (tests/conftest.py) is such a directory built offline: SentencePiece
BPE ``tokenizer.model`` trained on braille-mapped canonical JPEG bytes, the tokenizer
config files of ``LlamaTokenizer``, a small random ``LlamaForCausalLM`` in sharded
safetensors, no ``profile.json``. Generation from a random model at the paper profile
needs more tokens than a test should spend, so the generating tests add a ``tiny``
``profile.json`` to a copy; the paper profile is checked for what it changes (the
inferred profile, the note, the prompt ids).
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys

import pytest
from PIL import Image, ImageOps

from avclm.cli import main as avclm_main
from codeclm.generation.sampling_config import SamplingConfig
from codeclm.model_dir import load_model_dir
from codeclm.profile import save_profile
from jpeglm import codec
from jpeglm.cli import main
from jpeglm.profile import PROFILES

PAPER, TINY = PROFILES["paper"], PROFILES["tiny"]
NOTE = "SentencePiece model directory without profile.json: using the `paper` JPEG profile"


@pytest.fixture
def as_is(tmp_path, spm_checkpoint):
    """A private copy (the profile note is said once per directory and process)."""
    return shutil.copytree(spm_checkpoint, tmp_path / "jpeg-lm-reimplementation")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, spm_checkpoint):
    d = shutil.copytree(spm_checkpoint, tmp_path_factory.mktemp("spm") / "tiny")
    save_profile(TINY, d)
    return d


def _strictly_valid(path, profile):
    data = path.read_bytes()
    codec.check(data, profile)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == profile.size
        im.load()
    return data


# ---------------------------------------------------------------- as it is: the paper profile
def test_as_is_loads_with_the_paper_profile_and_says_so_once(as_is, caplog):
    assert not (as_is / "profile.json").exists()
    assert (as_is / "model.safetensors.index.json").is_file()  # sharded weights
    with caplog.at_level(logging.WARNING, logger="codeclm"):
        lm = load_model_dir(as_is, "jpeg")
        again = load_model_dir(as_is, "jpeg")
    assert lm.profile == again.profile == PAPER
    assert [r.getMessage() for r in caplog.records] == [
        f"{as_is}: {NOTE} (256x256, quality 25, 4:2:0, a restart marker after every MCU)"]
    assert type(lm.tokenizer).__name__ == "SpmTokenizer" and lm.tokenizer.vocab_size == 600
    assert lm.model.config._attn_implementation == "sdpa"


def test_cli_as_is(as_is, tmp_path):
    """The real command in a fresh process: the note once on stderr, a valid JPEG written
    (a random model does not finish a 256x256 scan in 4 tokens: the rest is repaired)."""
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "jpeglm.cli", "generate", "--model", str(as_is),
                        "-n", "1", "--max-tokens", "4", "--seed", "0", "-o", str(out), "--quiet"],
                       check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(NOTE) == 1 and "Traceback" not in r.stderr
    _strictly_valid(out / "0.jpg", PAPER)


# ---------------------------------------------------------------- their prompt convention
def their_prompt_ids(tokenizer, image: Image.Image, n_markers: int) -> list[int]:
    """The oracle: the reference script's prompt. The 256x256 image saved by Pillow as an
    abbreviated quality-25 stream with a restart marker after every MCU, bytes mapped to
    U+2800 + b, cut after the ``n_markers``-th ``FF D7`` (8 MCUs each), tokenized by
    ``AutoTokenizer(use_fast=False, add_eos_token=True)`` and the trailing ``</s>`` dropped."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=25, subsampling="4:2:0", streamtype=2,
               restart_marker_blocks=1)
    text = "".join(chr(0x2800 + b) for b in buf.getvalue())
    marker, end = chr(0x2800 + 0xFF) + chr(0x2800 + 0xD7), 0
    for _ in range(n_markers):
        end = text.index(marker, end) + len(marker)
    ids = tokenizer(text[:end])["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    return ids[:-1]


@pytest.mark.parametrize(("profile", "ratio", "n_markers"), [
    (PAPER, 0.25, 8), (PAPER, 0.375, 12), (PAPER, 0.5, 16), (PAPER, 0.75, 24), (TINY, 0.5, 1)])
def test_prompt_ids_equal_their_convention(spm_checkpoint, samples, profile, ratio, n_markers):
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(spm_checkpoint, use_fast=False, add_eos_token=True)
    tok = load_model_dir(spm_checkpoint, "jpeg").tokenizer
    for path in samples[:3]:
        with Image.open(path) as im:
            image = ImageOps.fit(im.convert("RGB"), profile.size)
        prompt = codec.prompt_prefix(codec.encode_image(image, profile), ratio, profile)
        # what jpeglm.generate feeds the model for this prompt
        assert tok.encode(prompt, bos=True, eos=False) == their_prompt_ids(ref, image, n_markers)


# ---------------------------------------------------------------- generation is valid
def test_cli_generate_gives_strictly_valid_jpegs(tiny_dir, tmp_path):
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(tiny_dir), "-n", "2", "--batch", "2", "--seed", "3",
                 "-o", str(out), "--quiet"]) == 0
    assert _strictly_valid(out / "0.jpg", TINY) != _strictly_valid(out / "1.jpg", TINY)


def test_cli_complete_gives_strictly_valid_jpegs(tiny_dir, tmp_path, samples):
    out = tmp_path / "comp"
    photos = [p for p in samples if p.suffix.lower() in (".jpg", ".jpeg", ".png")][:2]
    assert main(["complete", *map(str, photos), "--model", str(tiny_dir), "--prefix-ratio",
                 "0.375", "--seed", "0", "-o", str(out), "--quiet"]) == 0
    for i, photo in enumerate(photos):
        data = _strictly_valid(out / f"{i}_{photo.stem}.jpg", TINY)
        prompt = codec.prompt_prefix(codec.encode_image(photo, TINY), 0.375, TINY)
        assert codec.to_modeled(data, TINY).startswith(prompt)  # 6 of 16 MCUs kept


def test_cli_eval_runs_on_the_directory(tiny_dir, tmp_path, samples):
    images = tmp_path / "images"
    images.mkdir()
    for p in samples[:2]:
        shutil.copy(p, images / p.name)
    out = tmp_path / "eval"
    assert main(["eval", "complete", "--model", str(tiny_dir), "--images", str(images), "-o",
                 str(out), "--ratios", "0.5", "--seeds", "0", "--extractor", "pixels",
                 "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert "0.5" in json.dumps(results) and "valid" in json.dumps(results)
    jpgs = sorted(out.glob("samples/*/*.jpg"))
    assert len(jpgs) == 2
    for j in jpgs:
        _strictly_valid(j, TINY)


def test_half_precision_weights_pass_through(tiny_dir):
    """The dtype the caller asks for (bf16 by default on a GPU; `eval --dtype`) is the
    weights' dtype, and the shared KV-cache sampler runs in it."""
    import torch

    from jpeglm.generate import ImageEvent, generate_images

    lm = load_model_dir(tiny_dir, "jpeg", dtype=torch.bfloat16)
    assert lm.model.dtype == torch.bfloat16
    (img,) = [e for e in generate_images(lm, 1, config=SamplingConfig(seed=0))
              if isinstance(e, ImageEvent)]
    assert img.valid
    codec.check(img.data, TINY)


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gpu_half_precision_sdpa(tiny_dir, dtype):
    import torch

    from codeclm.generation.loading import load_model
    from jpeglm.generate import ImageEvent, generate_images

    lm = load_model(str(tiny_dir), "jpeg", "cuda", getattr(torch, dtype))
    assert lm.model.dtype == getattr(torch, dtype) and lm.model.device.type == "cuda"
    assert lm.model.config._attn_implementation == "sdpa"
    images = [e for e in generate_images(lm, 2, batch=2, config=SamplingConfig(seed=0))
              if isinstance(e, ImageEvent)]
    assert len(images) == 2 and all(e.valid for e in images)
    for e in images:
        codec.check(e.data, TINY)


# ---------------------------------------------------------------- bad directories
def _break(d, how):
    if how == "no tokenizer.model":
        (d / "tokenizer.model").unlink()
    elif how == "garbage tokenizer.model":
        (d / "tokenizer.model").write_bytes(b"\x00\x01 not a model")
    elif how == "no config.json":
        (d / "config.json").unlink()
    elif how == "not llama":
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    elif how == "vocabulary too small":
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, "vocab_size": 300}))
    elif how == "pickled weights":
        for f in d.glob("model*.safetensors*"):
            f.unlink()
        (d / "pytorch_model.bin").write_bytes(b"never unpickled")
    elif how == "missing shard":
        min(d.glob("model-*.safetensors")).unlink()
    elif how == "truncated shard":
        shard = max(d.glob("model-*.safetensors"))
        shard.write_bytes(shard.read_bytes()[:100])


@pytest.mark.parametrize(("how", "message"), [
    ("no tokenizer.model", "incomplete SentencePiece model directory (missing tokenizer.model)"),
    ("garbage tokenizer.model", "not a SentencePiece model"),
    ("no config.json", "incomplete SentencePiece model directory (missing config.json)"),
    ("not llama", "expected a Llama model, got model_type 'gpt2'"),
    ("vocabulary too small", "model vocabulary (300) is smaller than tokenizer.model's (600"),
    ("pickled weights", "the weights are PyTorch pickles"),
    ("missing shard", "names a missing weights file"),
    ("truncated shard", "truncated"),
])
def test_bad_directories_are_one_line_errors(as_is, tmp_path, capsys, how, message):
    _break(as_is, how)
    assert main(["generate", "--model", str(as_is), "-n", "1", "-o", str(tmp_path / "o"),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("jpeglm: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_an_image_model_is_refused_by_avclm(spm_checkpoint, tmp_path, capsys):
    assert avclm_main(["generate", "--model", str(spm_checkpoint), "--frames", "1", "-o",
                       str(tmp_path / "v.mp4"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("avclm: error: ") and "this is a jpeg model" in err
    assert err.count("\n") == 1
