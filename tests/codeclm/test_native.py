"""The native skinny product of the CPU decode step (``codeclm/_native.c`` through
:mod:`codeclm.generation.native`): against ``torch.mm`` for every row count it takes,
shapes that are not multiples of its block, strided rows and the residual add; its
errors; and the decode step with it against the decode step without it."""

from __future__ import annotations

import pytest
import torch

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


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
        assert kv.native == (enabled == "1")
        packed = [p[3] is not None for p in (*kv.layers[0].values(), kv.head) if len(p) == 4]
        # gate/up, down and the head (and qkv with 4 KV heads: 2 leave it too small)
        assert packed.count(True) == (0 if not kv.native else 4 if kv_heads == 4 else 3)
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
