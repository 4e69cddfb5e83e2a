"""A Llama forward with a static, per-row KV cache (:class:`KVCacheLM`).

Runs on :class:`codeclm.llama_weights.LlamaWeights` (read from ``config.json`` +
``model.safetensors`` with no ``transformers`` import) or on a ``transformers``
``LlamaForCausalLM``'s tensors (no copy unless fusing a small model's projections, which
are then stored transposed for plain ``mm``, once per :class:`LlamaWeights`: every session
over the same weights reuses them) and keeps keys and values side by side in one
preallocated tensor ``[layers, 2, batch, kv_heads, max_length, head_dim]``. Every row has
its *own* length, so rows need no padding, start at different prompt lengths and can be
cut back independently (rollback: a row's length is only what its owner feeds next). The
decode step is fixed-shape: one token per row. It is checked against the Hugging Face
forward in tests (greedy decode equals a no-cache reference token for token).

Interface: ``prefill(row, ids, start)`` writes one row's prompt, ``decode(tokens,
positions)`` feeds one token per row; ``copy_row(dst, src, n)`` copies a row's first
``n`` cache slots (same prompt, or a wrapper presenting B rows over 2B cache rows).

Why not ``transformers``' own caches: on CPU the per-step cost of a tiny model is
Python and dispatch overhead, not FLOPs. ``LlamaForCausalLM.forward`` with a
``DynamicCache`` builds masks, position ids and cache bookkeeping every step (measured
1.0-1.7x of ``model.generate`` for the tiny/small presets), a ``StaticCache`` adds the
same per-layer bookkeeping without per-row lengths. The forward here is ~20 tensor ops
per layer, writes one cache slot per row in place, attends over ``cache[:, :, :max_pos+1]``
(no mask when all rows are at the same position; on one CPU thread the C kernel of
:mod:`.native`, which takes each row's slot count instead), fuses QKV and gate/up projections for
small models (stored ``[in, out]``: the decode step is 2-D ``mm``, 15-35% faster than
``F.linear`` on 3-D inputs at these sizes), folds the residual adds into ``addmm`` and
computes RMSNorm as one ``layer_norm`` (:meth:`KVCacheLM._rms`; see
``bench/bench_sampler.py`` for numbers). At batch 8 on CPU what is left is mostly the
matmuls and the attention reading the fp32 weights and the cache (~80% of the step with
torch's kernels): on one thread the projections of 1-8 rows run the native skinny
product over packed weights (:mod:`.native`, ~2x MKL there).

``compile=True`` runs the step where all rows sit at one slot through ``torch.compile``
(:mod:`.compiled`: opt-in, ~20 s to compile cold; the other steps stay eager).
On GPU it runs the same code in bf16; CUDA graphs are not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..llama_weights import ACTIVATIONS, LlamaWeights
from . import native
from .compiled import compiled_call

#: models up to this many parameters get fused QKV and gate/up projections (a copy of
#: those weights: worth it on CPU where per-op overhead dominates, too big beyond)
FUSE_MAX_PARAMS = 300_000_000
#: fused float32 CPU models up to this many parameters also keep their projections
#: packed for the native skinny product of the decode step (:mod:`.native`; one more
#: copy of those weights, so a cap on the memory it costs)
NATIVE_MAX_PARAMS = 100_000_000
#: ... and only projections of at least this many weights: below it MKL, hot in cache,
#: is as fast and the call costs less (measured at 1 and 8 rows, one thread: 128 x 384
#: is about where the kernel starts to win at 1 row)
NATIVE_MIN_WEIGHTS = 40_000
_HAS_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")


@runtime_checkable
class CachedForward(Protocol):
    """What :class:`~codeclm.generation.session.Session` drives: :class:`KVCacheLM`, or a
    wrapper with its interface (``codeclm.guidance.GuidedLM``, B rows over 2B cache rows).
    Logits are ``[B, vocab_size]`` float32 rows."""

    batch_size: int
    vocab_size: int
    max_length: int
    device: torch.device

    def prefill(self, row: int, ids: torch.Tensor, start: int = 0) -> torch.Tensor: ...

    def decode(self, tokens: torch.Tensor, positions: Sequence[int]) -> torch.Tensor: ...

    def copy_row(self, dst: int, src: int, n: int) -> None: ...


class KVCacheLM:
    """A Llama forward over a ``LlamaForCausalLM``'s weights with a static, per-row KV cache.

    ``max_length``: cache slots per row (tokens), at most the model's context.
    ``compile``: run same-slot decode steps through ``torch.compile`` (:mod:`.compiled`).
    Positions are slot indices; row ``r`` holds its tokens in slots ``0..len_r-1``.
    Runs on the model's device and dtype (fp32 on CPU, bf16 on GPU by convention).
    """

    def __init__(self, model, batch_size: int, max_length: int | None = None,
                 compile: bool = False):
        w = model if isinstance(model, LlamaWeights) else LlamaWeights.from_hf(model)
        cfg = w.config
        ctx = cfg.max_position_embeddings
        self.max_length = min(max_length or ctx, ctx)
        if self.max_length < 2:
            raise ConfigError(f"max_length {self.max_length} is too short")
        self.batch_size = batch_size
        self.compile = compile  # torch.compile the same-slot step (see .compiled)
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.eps = cfg.rms_norm_eps
        self.vocab_size = cfg.vocab_size
        self.act = ACTIVATIONS[cfg.hidden_act]
        emb = w["model.embed_tokens.weight"]
        self.device, self.dtype = emb.device, emb.dtype
        self.embed = emb
        self.norm = self._norm_gain(w, "model.norm.weight")
        n_params = w.num_parameters()
        fuse = n_params <= FUSE_MAX_PARAMS
        # the C kernels (:mod:`.native`) run the decode step's attention and, for steps of
        # <= native.MAX_ROWS rows, its projections of >= NATIVE_MIN_WEIGHTS weights, on one
        # thread (with more, torch's parallel kernels); not under torch.compile
        self.native_kernels = (native.available() and not compile and self.device.type == "cpu"
                       and self.dtype == torch.float32)
        pack = self.native_kernels and fuse and n_params <= NATIVE_MAX_PARAMS
        if fuse:
            head_t = w.derive("lm_head^T", lambda: w.lm_head.t().contiguous())
            self.head = (head_t, None, True, self._packed(w, "lm_head", head_t, pack))
        else:
            self.head = (w.lm_head, None, False, None)
        self.layers = [self._layer(w, f"model.layers.{i}.", fuse, pack)
                       for i in range(cfg.num_hidden_layers)]
        cos, sin = w.rope(self.max_length)  # [T, D]
        h = self.head_dim // 2
        # RoPE as x * cos + roll(x, D/2) * sin_signed: roll gives (x2, x1), and sin_signed
        # = (-sin_lo, sin_hi) makes that rotate_half(x) * sin, bit for bit (the sign moves
        # from one factor to the other). [T, 1, 1, D]: one index gives a decode row's [1, 1, D].
        self.cos = cos[:, None, None]
        self.sin_signed = torch.cat((-sin[:, :h], sin[:, h:]), -1)[:, None, None]
        # keys and values in one tensor, [layers, 2, batch, kv_heads, max_length, head_dim]:
        # a decode step writes the new keys and values with one copy per layer
        shape = (len(self.layers), 2, batch_size, self.n_kv, self.max_length, self.head_dim)
        self.kv = torch.zeros(shape, device=self.device, dtype=self.dtype)
        self._kv_layers = self.kv.unbind(0)  # views per layer
        self._slots = torch.arange(self.max_length, device=self.device)
        self._rows = torch.arange(batch_size, device=self.device)
        self._gqa = {"enable_gqa": True} if self.n_kv != self.n_heads and _HAS_GQA else {}

    @staticmethod
    def _packed(w: LlamaWeights, key: str, weight_t: torch.Tensor,
                pack: bool) -> torch.Tensor | None:
        """``weight_t`` ``[in, out]`` packed for :func:`.native.skinny_mm` (once per
        weights, under ``key``), or None without ``pack`` or below
        :data:`NATIVE_MIN_WEIGHTS`."""
        if not pack or weight_t.numel() < NATIVE_MIN_WEIGHTS:
            return None
        return w.derive(key + "^packed", lambda: native.pack(weight_t))

    @staticmethod
    def _layer(w: LlamaWeights, p: str, fuse: bool, pack: bool = False) -> dict:
        """One decoder layer (prefix ``p``): norm gains and projections ``(weight, bias,
        transposed, packed)``. With ``fuse`` the q/k/v and the gate/up weights are
        concatenated (one matmul each instead of three and two) and every projection is
        stored transposed, ``[in, out]`` contiguous: ``x @ W^T`` as a plain ``mm`` is
        15-35% faster than ``F.linear`` for the small row counts of a decode step on CPU
        (measured with MKL, 1 thread). With ``pack`` too, each is also kept packed for
        the native kernel of the decode step (:mod:`.native`; else ``packed`` is None).
        Without ``fuse`` (big models) the checkpoint's tensors are used as they are (no
        copy)."""
        a, m = p + "self_attn.", p + "mlp."

        def proj(names: str, prefixes: dict) -> tuple:
            ws = [w[prefixes[n] + ".weight"] for n in names]
            bs = [w.get(prefixes[n] + ".bias") for n in names]
            b = None if bs[0] is None else torch.cat(bs)
            if not fuse:
                return ws[0], b, False, None
            key = f"{p}{names}^T"  # computed once per weights, shared by every session
            weight_t = w.derive(key, lambda: torch.cat(ws).t().contiguous())
            return weight_t, b, True, KVCacheLM._packed(w, key, weight_t, pack and b is None)

        parts = {"q": a + "q_proj", "k": a + "k_proj", "v": a + "v_proj", "o": a + "o_proj",
                 "g": m + "gate_proj", "u": m + "up_proj", "d": m + "down_proj"}
        d = {"ln1": KVCacheLM._norm_gain(w, p + "input_layernorm.weight"),
             "ln2": KVCacheLM._norm_gain(w, p + "post_attention_layernorm.weight"),
             "o": proj("o", parts), "d": proj("d", parts)}
        if fuse:
            d["qkv"], d["gu"] = proj("qkv", parts), proj("gu", parts)
        else:
            for n in "qkvgu":
                d[n] = proj(n, parts)
        return d

    # ---------------------------------------------------------------- pieces
    @staticmethod
    def _proj(x: torch.Tensor, wbt: tuple) -> torch.Tensor:
        """``x @ W^T + b`` for a projection ``(weight, bias, transposed, packed)`` (see
        _layer): the native kernel for a decode step's few rows where packed."""
        weight, bias, transposed, packed = wbt
        if not transposed:
            return F.linear(x, weight, bias)
        if x.dim() == 2:
            if packed is not None and native.usable(x):
                return native.skinny_mm(x, packed, weight.shape[1])
            return torch.mm(x, weight) if bias is None else torch.addmm(bias, x, weight)
        y = torch.matmul(x, weight)
        return y if bias is None else y + bias

    @classmethod
    def _residual_proj(cls, x: torch.Tensor, h: torch.Tensor, wbt: tuple) -> torch.Tensor:
        """``x + h @ W^T (+ b)``: one ``addmm`` or native call (no separate add) for a 2-D
        ``h`` and a transposed weight without bias (the decode step of a fused model)."""
        weight, bias, transposed, packed = wbt
        if transposed and bias is None and h.dim() == 2:
            if packed is not None and native.usable(h) and x.is_contiguous():
                return native.skinny_mm(h, packed, weight.shape[1], add=x)
            return torch.addmm(x, h, weight)
        return x + cls._proj(h, wbt)

    @staticmethod
    def _norm_gain(w: LlamaWeights, name: str) -> torch.Tensor:
        """An RMSNorm gain as :meth:`_rms` takes it: in float32 the gain twice (``[2H]``,
        computed once per weights), else as stored (``[H]``)."""
        gain = w[name]
        if gain.dtype != torch.float32:
            return gain
        return w.derive(name + "^2", lambda: torch.cat((gain, gain)))

    def _rms(self, x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """RMSNorm of ``x`` ``[..., H]`` (Llama's: ``gain * x / sqrt(mean(x^2) + eps)``).

        float32: ``layer_norm`` of ``[x, -x]`` (``[..., 2H]``, mean 0 up to rounding, so
        its variance is ``mean(x^2)``), first half, ``gain`` given twice (see
        :meth:`_norm_gain`): two fast kernels instead of the ~7 of ``F.rms_norm`` on CPU
        (which has no fused kernel there); the decode loop of the ``small`` preset at
        batch 8 got 5-9% faster (measured alternating, 1 thread). Equal to
        ``LlamaRMSNorm`` to ~1e-6, not bit for bit. Other dtypes: Llama's code (normalise
        in float32, cast, then scale)."""
        if x.dtype == torch.float32:
            doubled = torch.cat((x, x.neg()), -1)
            return F.layer_norm(doubled, gain.shape, gain, None, self.eps).narrow(
                -1, 0, x.shape[-1])
        xf = x.float()
        return gain * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
        """RoPE on ``x`` [..., D] (Hugging Face's ``x * cos + rotate_half(x) * sin``, the same
        bits): ``cos``/``sin_signed`` rows of :attr:`cos` / :attr:`sin_signed`."""
        return x * cos + torch.roll(x, self.head_dim // 2, -1) * sin_signed

    def _qkv(self, L: dict, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Projections and RoPE: ``h`` [..., hidden] -> ``q`` [..., heads, head_dim] and
        ``kv`` [..., 2, kv_heads, head_dim] (key, then value; the leading dims kept: [B, S]
        in prefill, [B] in decode). ``cos``/``sin`` broadcast over that. With fused weights
        q, k and v are adjacent in one output: q and k get RoPE in one pass, in place (the
        same bits as :meth:`_rope`), and ``kv`` is a view of that output."""
        lead = h.shape[:-1]
        Hq, Hkv, D = self.n_heads, self.n_kv, self.head_dim
        if "qkv" in L:  # narrow/view, not [...] indexing: fewer Python-level steps per token
            qkv = self._proj(h, L["qkv"]).view(*lead, Hq + 2 * Hkv, D)
            qk = qkv.narrow(-2, 0, Hq + Hkv)
            rotated = torch.roll(qk, D // 2, -1).mul_(sin)
            qk.mul_(cos).add_(rotated)  # = x * cos + roll(x) * sin_signed
            return qkv.narrow(-2, 0, Hq), qkv.narrow(-2, Hq, 2 * Hkv).unflatten(-2, (2, Hkv))
        q = self._rope(self._proj(h, L["q"]).view(*lead, Hq, D), cos, sin)
        k = self._rope(self._proj(h, L["k"]).view(*lead, Hkv, D), cos, sin)
        v = self._proj(h, L["v"]).view(*lead, Hkv, D)
        return q, torch.stack((k, v), -3)

    def _attend(self, q, keys, values, mask, causal=False):
        if not self._gqa and self.n_kv != self.n_heads:
            rep = self.n_heads // self.n_kv
            keys, values = keys.repeat_interleave(rep, 1), values.repeat_interleave(rep, 1)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                              is_causal=causal, **self._gqa)

    def copy_row(self, dst: int, src: int, n: int) -> None:
        """Copy cache row ``src``'s first ``n`` slots (keys and values) into row ``dst``."""
        self.kv[:, :, dst, :, :n] = self.kv[:, :, src, :, :n]

    # ---------------------------------------------------------------- forward passes
    def prefill(self, row: int, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Write the KV of ``ids`` ``[S]`` into row ``row``'s slots ``start..start+S-1``
        (earlier slots must hold that row's earlier tokens). Returns the logits ``[V]``
        after the last token (float32)."""
        return self.prefill_rows([row], ids[None], start)[0]

    @torch.inference_mode()
    def prefill_rows(self, rows: Sequence[int], ids: torch.Tensor,
                     start: int = 0) -> torch.Tensor:
        """:meth:`prefill` of several rows in one forward: ``ids`` ``[R, S]``, one prompt
        (part) per row of ``rows``, all at slots ``start..start+S-1``. Returns the logits
        ``[R, V]`` after each row's last token (float32)."""
        R, S = ids.shape
        end = start + S
        if end > self.max_length:
            raise ConfigError(f"prompt of {end} tokens does not fit the "
                              f"{self.max_length}-token cache")
        x = F.embedding(ids.to(self.device), self.embed)  # [R, S, hidden]
        cos, sin = self.cos[start:end].transpose(0, 1), self.sin_signed[start:end].transpose(0, 1)
        mask = None
        if start > 0:  # causal with an offset: query i sees slots <= start + i
            mask = self._slots[None, :end] <= (self._slots[:S, None] + start)
        index = torch.tensor(list(rows), device=self.device)
        for L, cache in zip(self.layers, self._kv_layers):  # cache: [2, B, kv_heads, T, D]
            q, kv = self._qkv(L, self._rms(x, L["ln1"]), cos, sin)  # [R, S, (2,) heads, D]
            kv = kv.permute(2, 0, 3, 1, 4)  # [2, R, kv_heads, S, D]
            if R == 1:  # a view of the row (no gather)
                own = cache.narrow(1, rows[0], 1)
                own[:, :, :, start:end] = kv
                own = own.narrow(3, 0, end)
            else:
                cache[:, index, :, start:end] = kv
                own = cache[:, index, :, :end]  # (a copy of those rows' first slots)
            keys, values = own.unbind(0)
            o = self._attend(q.transpose(1, 2), keys, values, mask, causal=start == 0)
            x = self._residual_proj(x, o.transpose(1, 2).reshape(R, S, -1), L["o"])
            x = self._mlp_block(L, x)
        return self._logits(x[:, -1])

    @torch.inference_mode()
    def extend(self, row: int, ids: torch.Tensor, start: int) -> torch.Tensor:
        """:meth:`prefill` of a few tokens ``ids`` ``[S]`` at row ``row``'s slots
        ``start..start+S-1`` (jump-forward: forced tokens fed together), as one decode
        step of ``S`` queries over that row's cache: token ``j`` sees slots
        ``<= start + j``. In the C kernel where it runs (a view that repeats the row,
        no copy), else by :meth:`prefill`. Returns the logits ``[V]`` after the last."""
        S = ids.shape[0]
        end = start + S
        if not self._native_attention() or end > self.max_length:
            return self.prefill(row, ids, start)
        pos = torch.arange(start, end, device=self.device)
        cos, sin = self.cos[pos][:, 0], self.sin_signed[pos][:, 0]  # [S, 1, D]
        x = F.embedding(ids.to(self.device), self.embed)  # [S, hidden]
        for L, cache in zip(self.layers, self._kv_layers):  # cache: [2, B, kv_heads, T, D]
            q, kv = self._qkv(L, self._rms(x, L["ln1"]), cos, sin)  # [S, heads, D], [S, 2, ..]
            cache[:, row, :, start:end] = kv.permute(1, 2, 0, 3)  # [2, kv_heads, S, D]
            own = cache.narrow(1, row, 1).narrow(3, 0, end)
            own = own.expand(-1, S, -1, -1, -1)  # [2, S, kv_heads, end, D]: the row S times
            x = self._attention_block(L, x, q, own, None, pos + 1)
            x = self._mlp_block(L, x)
        return self._logits(x[-1:])[0]

    def decode(self, tokens: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
        """One token per row: ``tokens`` ``[B]`` at slots ``positions`` (one int per row);
        returns logits ``[B, V]`` (float32). Each row attends to its slots ``0..pos``."""
        if torch.is_inference_mode_enabled():  # (the session's step already is)
            return self._decode(tokens, positions)
        with torch.inference_mode():
            return self._decode(tokens, positions)

    def _native_attention(self) -> bool:
        """Whether this step's attention runs in the C kernel (:func:`.native.attend`)."""
        return self.native_kernels and native.attention_usable(self.head_dim)

    def _decode(self, tokens: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
        B = tokens.shape[0]
        n = max(positions) + 1
        tokens = tokens.to(self.device)
        if min(positions) == n - 1:  # every row at the same slot: no mask, one cos/sin row
            cos, sin = self.cos[n - 1], self.sin_signed[n - 1]  # [1, 1, D]
            slots = self._slots.narrow(0, 0, n)
            if self.compile and n >= 2:
                logits = compiled_call(KVCacheLM.step_at, self, tokens, slots, cos, sin)
                if logits is not None:
                    return logits
            return self.step_at(tokens, slots, cos, sin)
        pos = torch.tensor(positions, device=self.device)
        cos, sin = self.cos[pos][:, 0], self.sin_signed[pos][:, 0]  # [B, 1, D]
        if self._native_attention():  # each row's slot count instead of a mask
            mask, slots = None, pos + 1
        else:
            mask, slots = (self._slots[None, :n] <= pos[:, None])[:, None, None], None
        x = F.embedding(tokens, self.embed)  # [B, hidden]
        for L, cache in zip(self.layers, self._kv_layers):  # cache: [2, B, kv_heads, T, D]
            q, kv = self._qkv(L, self._rms(x, L["ln1"]), cos, sin)  # [B, heads, D], [B, 2, ..]
            if B != self.batch_size:
                cache = cache.narrow(1, 0, B)
            cache[:, self._rows[:B], :, pos] = kv  # (indexed dims first: [B, 2, ...])
            x = self._attention_block(L, x, q, cache.narrow(3, 0, n), mask, slots)
            x = self._mlp_block(L, x)
        return self._logits(x)

    def step_at(self, tokens: torch.Tensor, slots: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor) -> torch.Tensor:
        """The decode step with every row at one slot ``p = n - 1``: ``tokens`` ``[B]``,
        ``slots`` the ``[n]`` slot indices ``0..p`` (only its length is used: the dynamic
        size :mod:`.compiled` marks), ``cos``/``sin`` rows ``p`` of :attr:`cos` /
        :attr:`sin_signed` (``[1, 1, D]``). Returns logits ``[B, V]`` (float32)."""
        B, n = tokens.shape[0], slots.shape[0]
        x = F.embedding(tokens, self.embed)  # [B, hidden]
        slots = True if self._native_attention() else None  # (see _attention_block)
        for L, cache in zip(self.layers, self._kv_layers):  # cache: [2, B, kv_heads, T, D]
            q, kv = self._qkv(L, self._rms(x, L["ln1"]), cos, sin)  # [B, heads, D], [B, 2, ..]
            if B != self.batch_size:
                cache = cache.narrow(1, 0, B)
            cache.select(3, n - 1).copy_(kv.transpose(0, 1))
            x = self._attention_block(L, x, q, cache.narrow(3, 0, n), None, slots)
            x = self._mlp_block(L, x)
        return self._logits(x)

    def _attention_block(self, L: dict, x: torch.Tensor, q: torch.Tensor, kv: torch.Tensor,
                         mask: torch.Tensor | None,
                         slots: torch.Tensor | bool | None = None) -> torch.Tensor:
        """``x`` ``[B, hidden]`` plus the attention output of one decode token per row:
        ``q`` ``[B, heads, D]``, ``kv`` the layer's cache ``[2, B, kv_heads, n, D]``.
        ``slots`` None: ``scaled_dot_product_attention`` with ``mask`` (None or
        ``[B, 1, 1, n]``, row b sees the slots where True); else the C kernel
        (:func:`.native.attend`), ``slots`` True (every row sees all ``n`` slots) or each
        row's slot count (int64 ``[B]``)."""
        keys, values = kv.unbind(0)
        if slots is None:
            o = self._attend(q.unsqueeze(2), keys, values, mask)  # [B, H, 1, D]
        else:
            o = native.attend(q, keys, values, None if slots is True else slots)
        return self._residual_proj(x, o.reshape(x.shape[0], -1), L["o"])

    def _mlp_block(self, L: dict, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., hidden]`` plus the layer's MLP of its normed ``x``."""
        h = self._rms(x, L["ln2"])
        if "gu" in L:
            g, u = self._proj(h, L["gu"]).chunk(2, -1)
        else:
            g, u = self._proj(h, L["g"]), self._proj(h, L["u"])
        return self._residual_proj(x, self.act(g).mul_(u), L["d"])

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._proj(self._rms(x, self.norm), self.head).float()
