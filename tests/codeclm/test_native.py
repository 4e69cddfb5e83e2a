"""The native kernels of the CPU decode step (``codeclm/_native.c`` through
:mod:`codeclm.generation.native`): the skinny product against ``torch.mm`` for every
row count it takes, shapes that are not multiples of its block, strided rows and the
residual add; the attention against ``scaled_dot_product_attention`` (grouped heads,
per-row slot counts); their errors; and the decode step with them against the decode
step without them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codeclm.generation import native

pytestmark = pytest.mark.skipif(
    native.isa() is None, reason="codeclm._native was not built (no C compiler at install)")


@pytest.mark.parametrize("rows", range(1, native.MAX_ROWS + 1))
@pytest.mark.parametrize("k,n", [(1, 1), (7, 5), (32, 96), (64, 176), (256, 768), (33, 1001)])
def test_skinny_mm_equals_torch_mm(rows, k, n):
    g = torch.Generator().manual_seed(rows * 1000 + k + n)
    x = torch.randn(rows, 2 * k + 3, generator=g)[:, 3:k + 3]  # rows apart, not contiguous
    w = torch.randn(k, n, generator=g)
    add = torch.randn(rows, n, generator=g)
    packed = native.pack(w)
    assert packed.shape == (-(-n // native.BLOCK), k, native.BLOCK)
    assert native.usable(x) == (torch.get_num_threads() == 1)
    ref = x @ w
    torch.testing.assert_close(native.skinny_mm(x, packed, n), ref, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(native.skinny_mm(x, packed, n, add=add), ref + add,
                               atol=1e-4, rtol=1e-5)


def test_pack_keeps_every_weight_and_pads_with_zeros():
    w = torch.arange(3 * 11, dtype=torch.float32).view(3, 11) + 1
    p = native.pack(w)
    assert p.shape == (2, 3, 8) and p.is_contiguous()
    assert torch.equal(p.transpose(0, 1).reshape(3, 16)[:, :11], w)
    assert not p.transpose(0, 1).reshape(3, 16)[:, 11:].any()


def test_skinny_mm_refuses_what_does_not_fit():
    x = torch.randn(2, 8)
    packed = native.pack(torch.randn(8, 16))
    with pytest.raises(ValueError, match="does not fit"):
        native.skinny_mm(torch.randn(2, 9), packed, 16)
    with pytest.raises(ValueError, match="does not fit"):
        native.skinny_mm(x, packed, 17)
    with pytest.raises(ValueError, match="contiguous"):
        native.skinny_mm(x, packed, 16, add=torch.randn(16, 2).t())
    with pytest.raises(ValueError, match="float32 CPU matrix"):
        native.skinny_mm(x.double(), packed, 16)
    with pytest.raises(ValueError, match="float32 CPU matrix"):
        native.skinny_mm(torch.randn(8, 2).t(), packed, 16)  # rows apart, columns too
    with pytest.raises(ValueError, match="bad shape"):  # the C side's own check
        native._native.skinny_mm(x.data_ptr(), 8, packed.data_ptr(), 0, x.data_ptr(),
                                 native.MAX_ROWS + 1, 8, 16)


def test_usable_only_for_few_contiguous_rows_on_one_thread(monkeypatch):
    assert not native.usable(torch.randn(native.MAX_ROWS + 1, 4))
    assert not native.usable(torch.randn(4, 2).t())  # columns apart
    assert not native.usable(torch.randn(2, 3, 4))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert not native.usable(torch.randn(2, 4))


def test_env_turns_it_off(monkeypatch):
    monkeypatch.setenv(native.ENV, "0")
    assert not native.available()
    monkeypatch.setenv(native.ENV, "1")
    assert native.available()


@pytest.mark.parametrize("b,hq,hkv,d,n", [(1, 4, 4, 32, 1), (1, 4, 4, 32, 300), (8, 8, 8, 32, 77),
                                         (3, 4, 2, 8, 40), (2, 6, 3, 16, 9), (2, 2, 1, 64, 130)])
def test_attend_equals_sdpa(b, hq, hkv, d, n):
    """Views of a cache as the decode step has them: q inside a fused qkv output, keys
    and values the first n slots of a longer cache; all slots, and per-row slot counts
    against sdpa with the matching mask."""
    g = torch.Generator().manual_seed(b * 100 + n)
    cache = torch.randn(2, b, hkv, n + 50, d, generator=g) * 3
    keys, values = cache.narrow(3, 0, n).unbind(0)
    q = torch.randn(b, hq + 2 * hkv, d, generator=g).narrow(1, 0, hq) * 3
    gqa = {"enable_gqa": True} if hq != hkv else {}
    ref = F.scaled_dot_product_attention(q.unsqueeze(2), keys, values, **gqa)
    torch.testing.assert_close(native.attend(q, keys, values), ref.reshape(b, -1),
                               atol=1e-5, rtol=1e-5)
    lengths = torch.randint(1, n + 1, (b,), generator=g)
    mask = (torch.arange(n)[None] < lengths[:, None])[:, None, None]
    ref = F.scaled_dot_product_attention(q.unsqueeze(2), keys, values, attn_mask=mask, **gqa)
    torch.testing.assert_close(native.attend(q, keys, values, lengths), ref.reshape(b, -1),
                               atol=1e-5, rtol=1e-5)


def test_attend_refuses_what_it_cannot_read():
    cache = torch.randn(2, 2, 2, 10, 8)
    keys, values = cache.unbind(0)
    q = torch.randn(2, 2, 8)
    for lengths in ([0, 3], [3, 11]):
        with pytest.raises(ValueError, match="sees"):
            native.attend(q, keys, values, torch.tensor(lengths))
    with pytest.raises(ValueError, match="int64"):
        native.attend(q, keys, values, torch.tensor([3, 3], dtype=torch.int32))
    with pytest.raises(ValueError, match="float32 CPU"):
        native.attend(q.double(), keys.double(), values.double())
    with pytest.raises(ValueError, match="laid out"):
        native.attend(q, keys.transpose(2, 3), values.transpose(2, 3))
    with pytest.raises(ValueError, match="bad shape"):  # D not a multiple of 8
        native.attend(torch.randn(2, 2, 4), *torch.randn(2, 2, 2, 10, 4).unbind(0))
    assert not native.attention_usable(12) and not native.attention_usable(256)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_decode_step_with_and_without_the_kernel(kv_heads, one_thread, monkeypatch):
    """A batch of 8 rows at different positions (the masked step) and at one position
    (the same-slot step): the logits with the kernel equal those of torch.mm."""
    from transformers import LlamaForCausalLM

    from codeclm.generation.forward import KVCacheLM
    from codeclm.models import llama_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(
        "tiny", 600, 128, hidden_size=128, intermediate_size=344, num_attention_heads=4,
        num_key_value_heads=kv_heads)).eval()
    ids = torch.randint(3, 600, (8, 20), generator=torch.Generator().manual_seed(1))
    lengths = [20, 13, 7, 20, 5, 9, 16, 11]

    def run(enabled: str) -> list[torch.Tensor]:
        monkeypatch.setenv(native.ENV, enabled)
        kv = KVCacheLM(model, 8)
        assert kv.native_kernels == (enabled == "1")
        packed = [p[3] is not None for p in (*kv.layers[0].values(), kv.head) if len(p) == 4]
        # gate/up, down and the head (and qkv with 4 KV heads: 2 leave it too small)
        assert packed.count(True) == (0 if not kv.native_kernels else 4 if kv_heads == 4 else 3)
        for r, n in enumerate(lengths):
            kv.prefill(r, ids[r, :n - 1])
        uneven = kv.decode(ids[torch.arange(8), torch.tensor(lengths) - 1],
                           [n - 1 for n in lengths])
        for r in range(8):
            kv.prefill(r, ids[r, :19])
        even = kv.decode(ids[:, 19], [19] * 8)
        return [uneven, even]

    for got, ref in zip(run("1"), run("0"), strict=True):
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_the_baseline_build_agrees_too(tmp_path):
    """The kernels as a CPU without AVX2 (or an ARM laptop) runs them
    (``CODECLM_NATIVE_ISA=generic``), in a fresh process: against torch as above."""
    import os
    import subprocess
    import sys

    code = """
import torch, torch.nn.functional as F
from codeclm.generation import native
assert native.isa() == "generic", native.isa()
g = torch.Generator().manual_seed(0)
for rows, k, n in [(1, 64, 100), (3, 33, 17), (8, 256, 768)]:
    x, w = torch.randn(rows, k, generator=g), torch.randn(k, n, generator=g)
    add = torch.randn(rows, n, generator=g)
    got = native.skinny_mm(x, native.pack(w), n, add=add)
    torch.testing.assert_close(got, x @ w + add, atol=1e-4, rtol=1e-5)
cache = torch.randn(2, 3, 2, 60, 16, generator=g)
keys, values = cache.narrow(3, 0, 41).unbind(0)
q = torch.randn(3, 4, 16, generator=g)
lengths = torch.tensor([41, 7, 1])
mask = (torch.arange(41)[None] < lengths[:, None])[:, None, None]
ref = F.scaled_dot_product_attention(q.unsqueeze(2), keys, values, attn_mask=mask,
                                     enable_gqa=True).reshape(3, -1)
got = native.attend(q, keys, values, lengths)
torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
print("ok")
"""
    env = dict(os.environ, CODECLM_NATIVE_ISA="generic", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
