"""Native model loading (config.json + safetensors, no transformers) and thread choice.

Real checkpoints written by ``save_pretrained`` are read back; the sampler's forward on
the native weights must give the same logits as the Hugging Face model, and every kind
of damaged or mismatched directory must be a ModelError, never a half-loaded model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from codeclm.errors import ConfigError, ModelError
from codeclm.generation.forward import KVCacheLM
from codeclm.llama_weights import LlamaSpec, LlamaWeights, UnsupportedConfig, load_weights
from codeclm.models import llama_config
from codeclm.threads import SMALL_MODEL_PARAMS, choose_threads


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A saved random Llama (2 layers, GQA 4/2 heads, untied) as save_pretrained writes it."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    cfg = llama_config("tiny", 300, 64, hidden_size=32, intermediate_size=64)
    cfg.num_key_value_heads = max(1, cfg.num_attention_heads // 2)
    model = LlamaForCausalLM(cfg).eval()
    out = tmp_path_factory.mktemp("hf") / "m"
    model.save_pretrained(out, safe_serialization=True)
    return out, model


def _copy(src, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    return dst


def test_native_weights_give_the_hf_logits(hf_dir):
    path, model = hf_dir
    w = load_weights(path)
    assert w.config.num_key_value_heads < w.config.num_attention_heads
    ids = torch.randint(3, 300, (20,), generator=torch.Generator().manual_seed(1))
    native, viewed = KVCacheLM(w, 1), KVCacheLM(model, 1)
    got, ref = native.prefill(0, ids), viewed.prefill(0, ids)
    with torch.inference_mode():
        hf = model(ids[None]).logits[0, -1]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)  # same math; alignment may differ
    torch.testing.assert_close(got, hf, rtol=1e-4, atol=1e-5)
    step = torch.tensor([7])
    torch.testing.assert_close(native.decode(step, [20]), viewed.decode(step, [20]))


def test_dtype_and_parameter_count(hf_dir):
    path, model = hf_dir
    w = load_weights(path, dtype=torch.bfloat16)
    assert {t.dtype for t in w.parameters()} == {torch.bfloat16}
    assert w.num_parameters() == sum(p.numel() for p in model.parameters())


def test_sharded_safetensors_load(hf_dir, tmp_path):
    path, _ = hf_dir
    d = _copy(path, tmp_path)
    state = load_file(d / "model.safetensors")
    (d / "model.safetensors").unlink()
    names = sorted(state)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half],
              "model-00002-of-00002.safetensors": names[half:]}
    for fname, keys in shards.items():
        save_file({k: state[k] for k in keys}, d / fname, metadata={"format": "pt"})
    index = {"weight_map": {k: f for f, ks in shards.items() for k in ks}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    w = load_weights(d)
    assert all(torch.equal(w[k], state[k]) for k in names)


def _mutate_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def _rewrite_weights(d, fn):
    state = load_file(d / "model.safetensors")
    fn(state)
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})


DAMAGE = {
    "more layers in config than in weights": (
        lambda d: _mutate_config(d, num_hidden_layers=3), "missing"),
    "fewer layers in config": (lambda d: _mutate_config(d, num_hidden_layers=1), "unexpected"),
    "hidden size mismatch": (lambda d: _mutate_config(d, intermediate_size=65), "shape"),
    "vocab mismatch": (lambda d: _mutate_config(d, vocab_size=301), "shape"),
    "extra tensor": (lambda d: _rewrite_weights(d, lambda s: s.update(x=torch.zeros(1))),
                     "unexpected"),
    "dropped tensor": (lambda d: _rewrite_weights(d, lambda s: s.pop("model.norm.weight")),
                       "missing"),
    "empty weights file": (lambda d: (d / "model.safetensors").write_bytes(b""), "empty"),
    "truncated weights file": (lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:1000]), "truncated"),
    "random bytes": (lambda d: (d / "model.safetensors").write_bytes(bytes(range(256)) * 8),
                     "not a safetensors file"),
    "pickled .bin only": (lambda d: ((d / "model.safetensors").rename(d / "pytorch_model.bin")),
                          "pickled"),
    "no weights": (lambda d: (d / "model.safetensors").unlink(), "missing model.safetensors"),
    "config not JSON": (lambda d: (d / "config.json").write_text("{oops"), "JSON"),
    "config missing a size": (lambda d: _mutate_config(d, hidden_size=None), "bad value"),
    "not a llama": (lambda d: _mutate_config(d, model_type="gpt2"), "Llama"),
    "shard named by the index is missing": (lambda d: (
        (d / "model.safetensors").unlink(),
        (d / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"a": "model-1.safetensors"}}))), "missing"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_directories_are_model_errors(hf_dir, tmp_path, case):
    damage, words = DAMAGE[case]
    d = _copy(hf_dir[0], tmp_path)
    damage(d)
    with pytest.raises(ModelError, match=words):
        load_weights(d)


def test_scaled_rope_is_refused_not_ignored(hf_dir, tmp_path):
    d = _copy(hf_dir[0], tmp_path)
    _mutate_config(d, rope_parameters={"rope_type": "linear", "factor": 2.0,
                                       "rope_theta": 10000.0})
    with pytest.raises(UnsupportedConfig):
        load_weights(d)


def test_tied_embeddings(hf_dir):
    path, model = hf_dir
    cfg = dict(model.config.to_dict(), tie_word_embeddings=True)
    spec = LlamaSpec.from_config_dict(cfg)
    assert "lm_head.weight" not in spec.tensor_shapes()
    w = LlamaWeights(spec, {k: v for k, v in load_weights(path).tensors.items()
                            if k != "lm_head.weight"})
    assert w.lm_head is w["model.embed_tokens.weight"]


def test_thread_rule(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert choose_threads(1_000_000) == 1
    assert choose_threads(SMALL_MODEL_PARAMS * 2) >= 1
    assert choose_threads(1_000_000, requested=3) == 3
    with pytest.raises(ConfigError):
        choose_threads(1_000_000, requested=0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads(1_000_000) is None  # the environment decided
    assert choose_threads(1_000_000, env=False) == 1  # the rule without it (bench_sampler)


def test_generation_does_not_import_transformers_and_uses_one_thread(tmp_path):
    """The bundled image model generates with none of the heavy training / video stacks
    imported (transformers, lightning, litdata, PyAV: the start-up goal, time to the first
    image <= 2x ``import torch``, rests on it), and torch set to one thread for it (no
    OMP_NUM_THREADS in the environment)."""
    heavy = ["transformers", "lightning", "pytorch_lightning", "litdata", "av"]
    code = (
        "import sys, torch; from jpeglm.cli import main; "
        f"rc = main(['generate', '-n', '1', '--seed', '0', '--quiet', '-o', r'{tmp_path / 'o'}']); "
        f"print(rc, [m for m in {heavy!r} if m in sys.modules], torch.get_num_threads())"
    )
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out == ["0", "[]", "1"]
    assert (tmp_path / "o").is_dir()


def test_gpu_bench_skips_cleanly_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: `make bench-gpu` runs for real there")
    done = subprocess.run([sys.executable, "-m", "bench.gpu"], check=False,
                          capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.strip() == "bench-gpu: skipped: no CUDA device (run it on a GPU machine)"
    assert done.stderr == ""
