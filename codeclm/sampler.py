"""The shared sampler: prefill + decode loop over a static KV cache (the gpt-fast shape).

Three layers, each usable alone:

1. **Logits -> token** (:func:`filter_logits`, :func:`sample_tokens`): temperature,
   top-k, top-p, in that order (as Hugging Face's processors apply them), then one
   draw per row from that row's own ``torch.Generator`` (exponential race:
   ``argmax(p / E)``, ``E ~ Exp(1)``, which samples exactly from ``p``). With top-k
   the draw is over the k candidates only (no vocabulary sort).
2. **A Llama forward with a static KV cache** (:class:`KVCacheLM`): runs on
   :class:`codeclm.llama_weights.LlamaWeights` (read from ``config.json`` +
   ``model.safetensors`` with no ``transformers`` import) or on a ``transformers``
   ``LlamaForCausalLM``'s tensors (no copy unless fusing a small model's projections,
   which are then stored transposed for plain ``mm``) and keeps keys/values in preallocated tensors
   ``[layers, batch, kv_heads, max_length, head_dim]``. Every row has its *own*
   length, so rows need no padding, start at different prompt lengths and can be cut
   back independently (rollback). The decode step is fixed-shape: one token per row.
   It is checked against the Hugging Face forward in tests (greedy decode equals a
   no-cache reference token for token).
3. **A batch of streams** (:class:`Session`, :func:`generate`): per-row prompts, stop
   on EOS / ``max_new_tokens`` / a unit verdict, a per-row constraint (grammar) that
   masks logits, unit splitting (:mod:`codeclm.streaming`), callbacks per token and per
   unit, and rollback: a unit verdict of :class:`Reject` cuts the row's cache back to
   the unit's first token and samples it again (optionally substituting bytes).
   ``<pad>``, ``<s>`` and the reserved ids are never sampled (a codec stream has no use
   for them); EOS is, unless ``min_new_tokens`` holds it back.

Seeds: row ``r`` of a run with seed ``s`` draws from ``torch.Generator().manual_seed(s + r)``
and consumes exactly one draw per sampled token, so row ``r`` of a batch gives the same
tokens as a batch-1 run with seed ``s + r`` and the same prompt (up to float rounding of
batched matmuls, which has not flipped a token in our tests).

Why not ``transformers``' own caches: on CPU the per-step cost of a tiny model is
Python and dispatch overhead, not FLOPs. ``LlamaForCausalLM.forward`` with a
``DynamicCache`` builds masks, position ids and cache bookkeeping every step (measured
1.0-1.7x of ``model.generate`` for the tiny/small presets), a ``StaticCache`` adds the
same per-layer bookkeeping without per-row lengths. The forward here is ~25 tensor ops
per layer, writes one cache slot per row in place, attends over ``cache[:, :, :max_pos+1]``
(no mask when all rows are at the same position), fuses QKV and gate/up projections for
small models (stored ``[in, out]``: the decode step is 2-D ``mm``, 15-35% faster than
``F.linear`` on 3-D inputs at these sizes) and uses one fused ``rms_norm`` (see
``bench/bench_sampler.py`` for numbers).
On GPU it runs the same code in bf16; CUDA graphs / ``torch.compile`` are not used.

Rollback works at any batch size: cache rows are independent, so cutting one row back
only changes that row's length. A rejected unit costs the tokens re-sampled plus one
re-fed token. Rows that finish early keep computing a dummy token per step (the batch
shape is fixed) until every row is done.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

from .errors import ConfigError, ModelError
from .llama_weights import ACTIVATIONS, LlamaWeights
from .modality import find as find_modality
from .streaming import Unit, UnitSplitter

#: models up to this many parameters get fused QKV and gate/up projections (a copy of
#: those weights: worth it on CPU where per-op overhead dominates, too big beyond)
FUSE_MAX_PARAMS = 300_000_000
#: a unit rejected this many times in a row is a verifier bug: raise instead of looping
MAX_ATTEMPTS = 10_000
_HAS_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")


# ====================================================================== settings
@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn. ``temperature`` 0 means greedy; ``top_k`` 0/None and
    ``top_p`` 1.0/None switch those filters off. Defaults are the JPEG-LM public code's
    (T=1.0, top-k 50, top-p 0.9); the paper also reports top-k 40/80, top-p 0.9/1.0.
    ``seed`` None draws a fresh seed (reported in the stats)."""

    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 0.9
    seed: int | None = None

    def __post_init__(self):
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise ConfigError(f"top-k must be >= 0, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top-p must be in (0, 1], got {self.top_p}")


# ====================================================================== layer 1: logits -> token
def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Scale and mask logits ``[B, V]``; removed entries become ``-inf``.

    Order and tie rules follow Hugging Face: divide by ``temperature`` (ignored if 0);
    top-k keeps every token whose logit is >= the k-th largest (ties kept); top-p keeps,
    in descending order, each token whose *preceding* probability mass is < ``top_p``
    (so the smallest prefix with mass >= top_p, and always the top token).
    """
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    V = logits.shape[-1]
    if top_k and top_k < V:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs
        remove = before >= top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


def _top_p_sorted(sorted_logits: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Top-p on logits already sorted in descending order (same rule as filter_logits)."""
    if top_p is None or top_p >= 1.0:
        return sorted_logits
    probs = sorted_logits.softmax(-1)
    remove = (probs.cumsum(-1) - probs) >= top_p
    remove[..., 0] = False
    return sorted_logits.masked_fill(remove, float("-inf"))


def candidates(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The distribution one draw is made from: ``(probs [B, C], ids [B, C] or None)``.

    With top-k the C = k candidates come from one ``topk`` (sorted), and top-p runs on
    those k only (cheaper than sorting the vocabulary); exactly k are kept, so a tie at
    the k-th logit is broken by ``topk`` where :func:`filter_logits` keeps both. Without
    top-k, C = V and ``ids`` is None (the candidates are the vocabulary).
    """
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    V = logits.shape[-1]
    if top_k and top_k < V:
        vals, ids = torch.topk(logits, top_k, dim=-1)
        return _top_p_sorted(vals, top_p).softmax(-1, dtype=torch.float32), ids
    return filter_logits(logits, 1.0, None, top_p).softmax(-1, dtype=torch.float32), None


def token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None) -> torch.Tensor:
    """``[B, V]`` probabilities :func:`sample_tokens` draws from (for tests and analysis)."""
    probs, ids = candidates(logits, temperature, top_k, top_p)
    if ids is None:
        return probs
    return torch.zeros(logits.shape, dtype=probs.dtype, device=probs.device).scatter(-1, ids, probs)


def make_generators(seed: int, n: int, device="cpu") -> list[torch.Generator]:
    """One generator per row: row ``r`` is seeded ``seed + r``."""
    return [torch.Generator(device=device).manual_seed(seed + r) for r in range(n)]


def sample_tokens(logits: torch.Tensor, generators: Sequence[torch.Generator | None],
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
    """Draw one token per row from logits ``[B, V]`` after temperature/top-k/top-p;
    returns ``[B]`` long.

    Each row uses its own generator (one ``Exp(1)`` draw per candidate per row), so a
    row's tokens do not depend on the other rows. ``temperature == 0``: argmax, no
    draw. Rows whose generator is None are not drawn (their result is arbitrary).
    ``noise``: an optional preallocated float32 buffer with at least as many elements.
    """
    if temperature == 0:
        return logits.argmax(-1)
    probs, ids = candidates(logits, temperature, top_k, top_p)
    if noise is None or noise.numel() < probs.numel():
        noise = torch.empty_like(probs)
    else:
        noise = noise.view(-1)[:probs.numel()].view(probs.shape)
    for r, g in enumerate(generators):
        if g is not None:
            noise[r].exponential_(generator=g)
    choice = (probs / noise).argmax(-1, keepdim=True)
    return (choice if ids is None else ids.gather(-1, choice))[:, 0]


# ====================================================================== layer 2: model + cache
class KVCacheLM:
    """A Llama forward over a ``LlamaForCausalLM``'s weights with a static, per-row KV cache.

    ``max_length``: cache slots per row (tokens), at most the model's context.
    Positions are slot indices; row ``r`` holds its tokens in slots ``0..len_r-1``.
    Runs on the model's device and dtype (fp32 on CPU, bf16 on GPU by convention).
    """

    def __init__(self, model, batch_size: int, max_length: int | None = None):
        w = model if isinstance(model, LlamaWeights) else LlamaWeights.from_hf(model)
        cfg = w.config
        ctx = cfg.max_position_embeddings
        self.max_length = min(max_length or ctx, ctx)
        if self.max_length < 2:
            raise ConfigError(f"max_length {self.max_length} is too short")
        self.batch_size = batch_size
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.eps = cfg.rms_norm_eps
        self.vocab_size = cfg.vocab_size
        self.act = ACTIVATIONS[cfg.hidden_act]
        emb = w["model.embed_tokens.weight"]
        self.device, self.dtype = emb.device, emb.dtype
        self.embed = emb
        self.norm = w["model.norm.weight"]
        fuse = w.num_parameters() <= FUSE_MAX_PARAMS
        self.head = (w.lm_head.t().contiguous(), None, True) if fuse else (w.lm_head, None, False)
        self.layers = [self._layer(w, f"model.layers.{i}.", fuse)
                       for i in range(cfg.num_hidden_layers)]
        self.cos, self.sin = w.rope(self.max_length)  # [T, D]
        shape = (len(self.layers), batch_size, self.n_kv, self.max_length, self.head_dim)
        self.k = torch.zeros(shape, device=self.device, dtype=self.dtype)
        self.v = torch.zeros(shape, device=self.device, dtype=self.dtype)
        self._slots = torch.arange(self.max_length, device=self.device)
        self._rows = torch.arange(batch_size, device=self.device)
        self._gqa = {"enable_gqa": True} if self.n_kv != self.n_heads and _HAS_GQA else {}

    @staticmethod
    def _layer(w: LlamaWeights, p: str, fuse: bool) -> dict:
        """One decoder layer (prefix ``p``): norm gains and projections ``(weight, bias,
        transposed)``. With ``fuse`` the q/k/v and the gate/up weights are concatenated
        (one matmul each instead of three and two) and every projection is stored
        transposed, ``[in, out]`` contiguous: ``x @ W^T`` as a plain ``mm`` is 15-35%
        faster than ``F.linear`` for the small row counts of a decode step on CPU
        (measured with MKL, 1 thread). Without ``fuse`` (big models) the checkpoint's
        tensors are used as they are (no copy)."""
        a, m = p + "self_attn.", p + "mlp."

        def proj(names: str, prefixes: dict) -> tuple:
            ws = [w[prefixes[n] + ".weight"] for n in names]
            bs = [w.get(prefixes[n] + ".bias") for n in names]
            b = None if bs[0] is None else torch.cat(bs)
            if not fuse:
                return ws[0], b, False
            return torch.cat(ws).t().contiguous(), b, True

        parts = {"q": a + "q_proj", "k": a + "k_proj", "v": a + "v_proj", "o": a + "o_proj",
                 "g": m + "gate_proj", "u": m + "up_proj", "d": m + "down_proj"}
        d = {"ln1": w[p + "input_layernorm.weight"], "ln2": w[p + "post_attention_layernorm.weight"],
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
        """``x @ W^T + b`` for a projection ``(weight, bias, transposed)`` (see _layer)."""
        weight, bias, transposed = wbt
        if not transposed:
            return F.linear(x, weight, bias)
        if x.dim() == 2:
            return torch.mm(x, weight) if bias is None else torch.addmm(bias, x, weight)
        y = torch.matmul(x, weight)
        return y if bias is None else y + bias

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one fused op; same math as LlamaRMSNorm in fp32
            return F.rms_norm(x, w.shape, w, self.eps)
        xf = x.float()  # LlamaRMSNorm: normalise in fp32, cast, then scale
        return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., h:], x[..., :h]), -1) * sin

    def _qkv(self, L: dict, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Projections and RoPE: ``h`` [..., hidden] -> q, k, v as [..., heads, head_dim]
        (the leading dims kept: [B, S] in prefill, [B] in decode). ``cos``/``sin``
        broadcast over that. With fused weights q and k are adjacent in one output and get
        RoPE in one pass."""
        lead = h.shape[:-1]
        Hq, Hkv, D = self.n_heads, self.n_kv, self.head_dim
        if "qkv" in L:
            qkv = self._proj(h, L["qkv"])
            qk = self._rope(qkv[..., :(Hq + Hkv) * D].view(*lead, Hq + Hkv, D), cos, sin)
            q, k = qk[..., :Hq, :], qk[..., Hq:, :]
            v = qkv[..., (Hq + Hkv) * D:].view(*lead, Hkv, D)
        else:
            q = self._rope(self._proj(h, L["q"]).view(*lead, Hq, D), cos, sin)
            k = self._rope(self._proj(h, L["k"]).view(*lead, Hkv, D), cos, sin)
            v = self._proj(h, L["v"]).view(*lead, Hkv, D)
        return q, k, v

    def _mlp(self, L: dict, h: torch.Tensor) -> torch.Tensor:
        if "gu" in L:
            g, u = self._proj(h, L["gu"]).chunk(2, -1)
        else:
            g, u = self._proj(h, L["g"]), self._proj(h, L["u"])
        return self._proj(self.act(g) * u, L["d"])

    def _attend(self, q, keys, values, mask, causal=False):
        if not self._gqa and self.n_kv != self.n_heads:
            rep = self.n_heads // self.n_kv
            keys, values = keys.repeat_interleave(rep, 1), values.repeat_interleave(rep, 1)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                              is_causal=causal, **self._gqa)

    # ---------------------------------------------------------------- forward passes
    @torch.inference_mode()
    def prefill(self, row: int, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Write the KV of ``ids`` ``[S]`` into row ``row``'s slots ``start..start+S-1``
        (earlier slots must hold that row's earlier tokens). Returns the logits ``[V]``
        after the last token (float32)."""
        S = ids.shape[0]
        end = start + S
        if end > self.max_length:
            raise ConfigError(f"prompt of {end} tokens does not fit the {self.max_length}-token cache")
        x = F.embedding(ids.to(self.device)[None], self.embed)
        cos, sin = self.cos[start:end][None, :, None], self.sin[start:end][None, :, None]
        mask = None
        if start > 0:  # causal with an offset: query i sees slots <= start + i
            mask = self._slots[None, :end] <= (self._slots[:S, None] + start)
        for i, L in enumerate(self.layers):
            h = self._rms(x, L["ln1"])
            q, k, v = (t.transpose(1, 2) for t in self._qkv(L, h, cos, sin))  # [1, heads, S, D]
            kc, vc = self.k[i, row:row + 1], self.v[i, row:row + 1]
            kc[:, :, start:end] = k
            vc[:, :, start:end] = v
            o = self._attend(q, kc[:, :, :end], vc[:, :, :end], mask, causal=start == 0)
            x = x + self._proj(o.transpose(1, 2).reshape(1, S, -1), L["o"])
            x = x + self._mlp(L, self._rms(x, L["ln2"]))
        return self._proj(self._rms(x[:, -1], self.norm), self.head)[0].float()

    def copy_row(self, dst: int, src: int, n: int) -> None:
        """Copy the first ``n`` cache slots of row ``src`` into row ``dst`` (same prompt)."""
        self.k[:, dst, :, :n] = self.k[:, src, :, :n]
        self.v[:, dst, :, :n] = self.v[:, src, :, :n]

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
        """One token per row: ``tokens`` ``[B]`` at slots ``positions`` (one int per row);
        returns logits ``[B, V]`` (float32). Each row attends to its slots ``0..pos``."""
        B = tokens.shape[0]
        n = max(positions) + 1
        same = min(positions) == n - 1
        if same:  # every row at the same slot: no mask, one cos/sin row
            p = n - 1
            cos, sin = self.cos[p][None, None], self.sin[p][None, None]  # [1, 1, D]
            mask = None
        else:
            pos = torch.tensor(positions, device=self.device)
            cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # [B, 1, D]
            mask = (self._slots[None, :n] <= pos[:, None])[:, None, None]
        x = F.embedding(tokens.to(self.device), self.embed)  # [B, hidden]
        for i, L in enumerate(self.layers):
            q, k, v = self._qkv(L, self._rms(x, L["ln1"]), cos, sin)  # [B, heads, D]
            kc, vc = self.k[i, :B], self.v[i, :B]
            if same:
                kc[:, :, p] = k
                vc[:, :, p] = v
            else:
                kc[self._rows[:B], :, pos] = k
                vc[self._rows[:B], :, pos] = v
            o = self._attend(q[:, :, None], kc[:, :, :n], vc[:, :, :n], mask)  # [B, H, 1, D]
            x = x + self._proj(o.reshape(B, -1), L["o"])
            x = x + self._mlp(L, self._rms(x, L["ln2"]))
        return self._proj(self._rms(x, self.norm), self.head).float()


# ====================================================================== verdicts and hooks
class Accept:
    """Keep the unit (``None`` from a callback means the same)."""

    def __repr__(self) -> str:
        return "ACCEPT"


ACCEPT = Accept()


@dataclasses.dataclass(frozen=True)
class Reject:
    """Discard the unit: the row's cache is cut back to the unit's first token and the
    unit is sampled again. With ``replacement`` (bytes of a whole unit, e.g. a verifier's
    known-good unit) those bytes are forced instead (tokenized, fed, not judged again)
    and count as the accepted unit at that index."""

    replacement: bytes | None = None


@dataclasses.dataclass(frozen=True)
class Stop:
    """Finish the row after this unit; ``keep=False`` drops the unit itself."""

    keep: bool = True


Verdict = Accept | Reject | Stop | None


class Constraint(Protocol):
    """A per-row token constraint (e.g. ``jpeglm.grammar``): ``allowed_mask()`` is a
    ``BoolTensor[vocab]`` of the tokens allowed next, ``advance(token_id)`` moves past a
    token, ``done`` is True once the row may only end (the sampler then forces EOS),
    ``copy()`` snapshots the state (used to roll back with the KV cache)."""

    done: bool

    def allowed_mask(self) -> torch.Tensor: ...

    def advance(self, token_id: int) -> None: ...

    def copy(self) -> Constraint: ...


# ====================================================================== layer 3: rows and session
@dataclasses.dataclass
class Row:
    """Decoding state of one batch row. ``tokens``: prompt + generated token ids;
    ``fed``: how many of them are in the KV cache (normally ``len(tokens) - 1``: the
    last token is fed by the next step)."""

    tokens: list[int]
    n_prompt: int
    fed: int
    generator: torch.Generator | None
    splitter: UnitSplitter | None
    constraint: Constraint | None = None
    forced: collections.deque = dataclasses.field(default_factory=collections.deque)
    skip_bytes: int = 0  # bytes of forced tokens that the splitter has already seen
    units: list[bytes] = dataclasses.field(default_factory=list)  # accepted units
    attempts: int = 0  # rejections of the unit now being generated
    snapshots: dict = dataclasses.field(default_factory=dict)  # unit index -> constraint copy
    sampled: int = 0  # tokens drawn (including ones later rolled back)
    done: bool = False
    reason: str | None = None  # "eos", "length", "stop", "context"

    @property
    def generated(self) -> list[int]:
        return self.tokens[self.n_prompt:]


@dataclasses.dataclass
class StepEvents:
    """What one :meth:`Session.step` produced: ``tokens`` as ``(row, token_id)`` and
    final ``units`` as ``(row, Unit)`` (accepted or replaced), ``finished`` rows."""

    tokens: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    units: list[tuple[int, Unit]] = dataclasses.field(default_factory=list)
    finished: list[int] = dataclasses.field(default_factory=list)


class Session:
    """A batch of rows decoding together over one :class:`KVCacheLM`.

    ``start(prompts)`` prefills; each ``step()`` feeds one token per unfinished row and
    returns the :class:`StepEvents`. Between steps the owner may ``restart(row, ids)``
    (fresh prompt in the same row, e.g. a video continuing past the context) or
    ``finish(row)``. ``on_unit(row, unit) -> Verdict`` judges each unit when it
    completes; ``on_token(row, token_id)`` sees every token added (sampled or forced).
    ``max_unit_tokens``: a unit still open after this many tokens is judged as
    ``truncated`` (a verifier then usually rejects it; accepting closes it as is).
    """

    def __init__(self, model, tokenizer, batch_size: int, config: SamplingConfig | None = None,
                 *, max_length: int | None = None, max_new_tokens: int | None = None,
                 min_new_tokens: int = 0, modality: str | None = None, max_unit_tokens: int | None = None,
                 on_token: Callable[[int, int], None] | None = None,
                 on_unit: Callable[[int, Unit], Verdict] | None = None):
        # a KVCacheLM, or a forward with its interface (codeclm.guidance.GuidedLM)
        kv_like = isinstance(model, KVCacheLM) or hasattr(model, "copy_row")
        self.kv = model if kv_like else KVCacheLM(model, batch_size, max_length)
        if self.kv.batch_size < batch_size:
            raise ConfigError(f"cache holds {self.kv.batch_size} rows, {batch_size} asked")
        if self.kv.vocab_size < tokenizer.vocab_size:
            raise ModelError(f"model vocabulary ({self.kv.vocab_size}) is smaller than the "
                             f"tokenizer's ({tokenizer.vocab_size})")
        self.tok = tokenizer
        self.batch_size = batch_size
        self.config = config = config or SamplingConfig()
        self.seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(4), "little")
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self.modality = modality if modality is not None else getattr(tokenizer, "modality", None)
        if self.modality is not None and find_modality(self.modality) is None:
            raise ConfigError(f"no unit markers for modality {self.modality!r}")
        self.max_unit_tokens = max_unit_tokens
        self.on_token, self.on_unit = on_token, on_unit
        self.rows: list[Row] = []
        self._token_bytes = tokenizer.token_bytes
        self._noise = torch.empty(batch_size * self.kv.vocab_size, device=self.kv.device)
        # never sampled: <pad>, <s>, the reserved ids, and model ids beyond the tokenizer
        banned = sorted(set(tokenizer.special_ids) - {tokenizer.eos_id})
        banned += list(range(tokenizer.vocab_size, self.kv.vocab_size))
        self._banned = torch.tensor(banned, dtype=torch.long, device=self.kv.device)
        self._events = StepEvents()
        self.stats = {"prefill_s": 0.0, "decode_s": 0.0, "steps": 0, "sampled": 0, "rejected": 0,
                      "seed": self.seed}

    # ---------------------------------------------------------------- setup
    def start(self, prompts: Sequence[Sequence[int]], constraints: Sequence[Constraint | None] | None = None):
        """Prefill one prompt per row (token id lists, any lengths, each >= 1 token)."""
        if len(prompts) != self.batch_size:
            raise ConfigError(f"{len(prompts)} prompts for a batch of {self.batch_size}")
        constraints = list(constraints) if constraints is not None else [None] * self.batch_size
        gens = (make_generators(self.seed, self.batch_size, self.kv.device)
                if self.config.temperature > 0 else [None] * self.batch_size)
        self.rows = []
        for r, ids in enumerate(prompts):
            splitter = UnitSplitter(self.modality) if self.modality else None
            self.rows.append(Row([], 0, 0, gens[r], splitter, constraints[r]))
        done_prompts: dict[tuple, int] = {}
        for r, ids in enumerate(prompts):
            key = tuple(ids)
            if key in done_prompts:  # same prompt: copy the cache row instead of recomputing
                self._load(r, list(ids), copy_from=done_prompts[key])
            else:
                self._load(r, list(ids))
                done_prompts[key] = r
        return self

    def restart(self, row: int, ids: Sequence[int], constraint: Constraint | None = None) -> None:
        """Give row ``row`` a fresh prompt (its cache is overwritten from slot 0). Units
        already accepted stay in ``units``; the open unit is dropped; unit numbering goes on."""
        r = self.rows[row]
        r.constraint = constraint
        r.forced.clear()
        r.skip_bytes, r.attempts, r.snapshots = 0, 0, {}
        r.done, r.reason = False, None
        self._load(row, list(ids))

    def _load(self, row: int, ids: list[int], copy_from: int | None = None) -> None:
        if not ids:
            raise ConfigError("a prompt needs at least one token (BOS)")
        if len(ids) >= self.kv.max_length:
            raise ConfigError(f"prompt of {len(ids)} tokens leaves no room in the "
                              f"{self.kv.max_length}-token context")
        bad = [t for t in ids if not 0 <= t < self.tok.vocab_size]
        if bad:
            raise ConfigError(f"prompt token {bad[0]} is outside the vocabulary")
        t0 = time.perf_counter()
        n = len(ids) - 1  # the last prompt token is fed by the first step
        if n:
            if copy_from is not None:
                self.kv.copy_row(row, copy_from, n)
            else:
                self.kv.prefill(row, torch.tensor(ids[:-1]))
        self.stats["prefill_s"] += time.perf_counter() - t0
        r = self.rows[row]
        r.tokens, r.n_prompt, r.fed = ids, len(ids), n
        if r.splitter is not None:
            r.splitter.reset(len(ids))

    def finish(self, row: int, reason: str = "stop") -> None:
        r = self.rows[row]
        if not r.done:
            r.done, r.reason = True, reason
            self._events.finished.append(row)

    @property
    def active(self) -> bool:
        return any(not r.done for r in self.rows)

    # ---------------------------------------------------------------- the decode step
    @torch.inference_mode()
    def step(self) -> StepEvents:
        """Feed one token per unfinished row, pick each row's next token, handle units."""
        self._events = events = StepEvents()
        live = [i for i, r in enumerate(self.rows) if not r.done]
        if not live:
            return events
        t0 = time.perf_counter()
        feed = [r.tokens[r.fed] if not r.done else self.tok.pad_id for r in self.rows]
        pos = [min(r.fed, self.kv.max_length - 1) for r in self.rows]
        logits = self.kv.decode(torch.tensor(feed), pos)
        chosen = self._choose(logits)
        for r in self.rows:
            if not r.done:
                r.fed += 1
        self.stats["decode_s"] += time.perf_counter() - t0
        self.stats["steps"] += 1
        for i in live:
            self._add_token(i, chosen[i])
        return events

    def _choose(self, logits: torch.Tensor) -> list[int]:
        """Next token per row: forced ones, EOS for rows whose constraint is done, else sampled."""
        out = [-1] * len(self.rows)
        draw: list[int] = []
        masks = []
        for i, r in enumerate(self.rows):
            if r.done:
                continue
            if r.forced:
                out[i] = r.forced.popleft()
            elif r.constraint is not None and r.constraint.done:
                out[i] = self.tok.eos_id
            else:
                draw.append(i)
                if r.constraint is not None:
                    masks.append((i, r.constraint.allowed_mask()))
        if not draw:
            return out
        logits.index_fill_(1, self._banned, float("-inf"))  # (step runs in inference mode)
        if self.min_new_tokens:
            early = [i for i in draw if len(self.rows[i].tokens) - self.rows[i].n_prompt < self.min_new_tokens]
            if early:
                logits = logits.clone()
                logits[early, self.tok.eos_id] = float("-inf")
        if masks:
            allowed = torch.ones_like(logits, dtype=torch.bool)
            for i, m in masks:
                allowed[i] = False
                allowed[i, :m.shape[0]] = m.to(logits.device)
                if not bool(allowed[i].any()):
                    raise ConfigError(f"row {i}: the constraint allows no token")
            logits = logits.masked_fill(~allowed, float("-inf"))
        c = self.config
        gens = [self.rows[i].generator if i in draw else None for i in range(len(self.rows))]
        picked = sample_tokens(logits, gens, c.temperature, c.top_k, c.top_p, self._noise).tolist()
        for i in draw:
            out[i] = picked[i]
            self.rows[i].sampled += 1
        self.stats["sampled"] += len(draw)
        return out

    def _add_token(self, i: int, token: int) -> None:
        r = self.rows[i]
        index = len(r.tokens)
        r.tokens.append(token)
        self._events.tokens.append((i, token))
        if self.on_token is not None:
            self.on_token(i, token)
        if token == self.tok.eos_id:
            self._end_row(i, "eos")
            return
        data = self._token_bytes[token] or b""
        if r.skip_bytes:
            cut = min(r.skip_bytes, len(data))
            r.skip_bytes -= cut
            data = data[cut:]
        units = r.splitter.push(index, data) if r.splitter is not None else []
        if r.constraint is not None:
            self._snapshot(r, index, units)
            r.constraint.advance(token)
        for unit in units:
            if not self._judge(i, unit):
                return  # rolled back or stopped: later units of this token are gone
        if r.done:
            return
        if (self.max_unit_tokens and r.splitter is not None
                and r.splitter.open_tokens >= self.max_unit_tokens):
            unit = r.splitter.flush(truncated=True)
            if not self._judge(i, unit):
                return
        if self.max_new_tokens is not None and len(r.tokens) - r.n_prompt >= self.max_new_tokens:
            self._end_row(i, "length")
        elif len(r.tokens) >= self.kv.max_length:
            self._end_row(i, "context")

    def _snapshot(self, r: Row, index: int, units: list[Unit]) -> None:
        """Remember the constraint state before token ``index`` for every unit that starts
        in it (a rollback to that unit restores it)."""
        started = [u.index for u in units if u.first_token == index]
        if r.splitter.open_bytes and r.splitter.open_first_token == index:
            started.append(r.splitter.next_index)
        if started:
            state = r.constraint.copy()
            for u in started:
                r.snapshots[u] = state

    def _end_row(self, i: int, reason: str) -> None:
        """EOS, length or context: judge the open unit, then finish the row. A rejected
        last unit rolls the row back instead, and it goes on."""
        r = self.rows[i]
        unit = r.splitter.flush(truncated=reason != "eos") if r.splitter is not None else None
        if unit is not None and not self._judge(i, unit):
            return
        self.finish(i, reason)

    # ---------------------------------------------------------------- unit verdicts
    def _judge(self, i: int, unit: Unit) -> bool:
        """Ask ``on_unit``; apply the verdict. True if the row goes on normally."""
        r = self.rows[i]
        unit.attempt = r.attempts
        verdict = self.on_unit(i, unit) if self.on_unit is not None else None
        if verdict is None or isinstance(verdict, Accept):
            self._accept(i, unit)
            return True
        if isinstance(verdict, Stop):
            if verdict.keep:
                self._accept(i, unit)
            self.finish(i, "stop")
            return False
        if isinstance(verdict, Reject):
            self.stats["rejected"] += 1
            r.attempts += 1
            if r.attempts > MAX_ATTEMPTS:
                raise ModelError(f"row {i}: unit {unit.index} rejected {MAX_ATTEMPTS} times")
            self.rollback(i, unit, verdict.replacement)
            return False
        raise TypeError(f"on_unit returned {verdict!r}; expected Accept, Reject, Stop or None")

    def _accept(self, i: int, unit: Unit) -> None:
        r = self.rows[i]
        r.units.append(unit.data)
        r.attempts = 0
        for k in [k for k in r.snapshots if k < unit.index]:
            del r.snapshots[k]
        self._events.units.append((i, unit))

    def rollback(self, row: int, unit: Unit, replacement: bytes | None = None) -> None:
        """Cut row ``row`` back to just before ``unit`` (its cache, tokens, constraint and
        splitter) so that the unit is generated again; or, with ``replacement``, force
        those bytes as the unit (accepted, reported as ``replaced``)."""
        r = self.rows[row]
        if unit.first_token < r.n_prompt:
            raise ConfigError(f"row {row}: cannot roll back into the prompt")
        head = (self._token_bytes[r.tokens[unit.first_token]] or b"")[:unit.first_offset]
        del r.tokens[unit.first_token:]
        r.fed = min(r.fed, len(r.tokens) - 1)
        r.forced.clear()
        r.done, r.reason = False, None
        if r.constraint is not None and unit.index in r.snapshots:
            r.constraint = r.snapshots[unit.index].copy()
        r.snapshots = {k: v for k, v in r.snapshots.items() if k < unit.index}
        # bytes of the cut token that belong to the previous (kept) unit are re-fed as
        # byte tokens; the splitter has seen them already
        r.forced.extend(self.tok.byte_ids[b] for b in head)
        r.skip_bytes = len(head)
        r.splitter.reset(len(r.tokens) + len(head), next_index=unit.index)
        if replacement is not None:
            ids = self.tok.encode(replacement, bos=False, eos=False)
            r.forced.extend(ids)
            r.skip_bytes += len(replacement)
            r.splitter.next_index = unit.index + 1
            r.splitter.reset(len(r.tokens) + len(head) + len(ids))
            r.attempts = 0
            done = Unit(unit.index, bytes(replacement), len(r.tokens) + len(head), 0, len(ids),
                        attempt=unit.attempt, replaced=True)
            r.units.append(done.data)
            self._events.units.append((row, done))


# ====================================================================== one call
@dataclasses.dataclass
class GenerationResult:
    """Per row: ``tokens`` generated (prompt excluded, EOS included if sampled), accepted
    ``units`` (bytes), why it stopped (``reasons``); ``stats``: timings (s), counts,
    ``tokens_per_s`` (sampled tokens / decode time) and the ``seed`` used."""

    tokens: list[list[int]]
    units: list[list[bytes]]
    reasons: list[str]
    stats: dict


def generate(model, tokenizer, prompts: Sequence[Sequence[int]], config: SamplingConfig | None = None,
             *, max_new_tokens: int | None = None, min_new_tokens: int = 0,
             constraints: Sequence[Constraint | None] | None = None,
             modality: str | None = None, max_length: int | None = None,
             max_unit_tokens: int | None = None,
             on_token: Callable[[int, int], None] | None = None,
             on_unit: Callable[[int, Unit], Verdict] | None = None,
             on_context_full: Callable[[int, Row], Sequence[int] | None] | None = None) -> GenerationResult:
    """Sample continuations of ``prompts`` (token id lists) with a ``LlamaForCausalLM``.

    Stops a row at EOS (never before ``min_new_tokens``), after ``max_new_tokens`` kept tokens, on a :class:`Stop` verdict,
    or when its context is full, where ``on_context_full(row, state)`` may return a new
    prompt to continue from (None ends the row). ``max_length`` bounds the cache
    (default: enough for the longest prompt + ``max_new_tokens``, at most the context).
    """
    if not prompts:
        raise ConfigError("no prompts")
    if max_length is None and max_new_tokens is not None:
        max_length = max(len(p) for p in prompts) + max_new_tokens + 1
    session = Session(model, tokenizer, len(prompts), config, max_length=max_length,
                      max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, modality=modality,
                      max_unit_tokens=max_unit_tokens, on_token=on_token, on_unit=on_unit)
    session.start(prompts, constraints)
    while session.active:
        events = session.step()
        if on_context_full is not None:
            for i in events.finished:
                row = session.rows[i]
                if row.reason == "context":
                    ids = on_context_full(i, row)
                    if ids is not None:
                        session.restart(i, ids)
    return GenerationResult([r.generated for r in session.rows], [r.units for r in session.rows],
                            [r.reason for r in session.rows], session_stats(session))


def session_stats(session: Session) -> dict:
    s = dict(session.stats)
    s["tokens_per_s"] = s["sampled"] / s["decode_s"] if s["decode_s"] > 0 else 0.0
    return s


# ====================================================================== loading and CLI helpers
def load_model(model, modality: str, device: str | None = None, dtype=None,
               threads: int | None = None):
    """A model directory (path or None for the bundled model) or a ``LoadedModel`` ->
    ``LoadedModel`` of the right modality, on ``device`` (default: CUDA if available,
    in bf16; else CPU in fp32). On CPU, torch's thread count is set for the model's
    size (``threads`` overrides; see :mod:`codeclm.threads`)."""
    import torch

    from codeclm.model_dir import LoadedModel, load_model_dir, resolve_model_dir, wrong_modality
    from codeclm.threads import apply_threads, choose_threads

    if isinstance(model, LoadedModel):
        if model.profile.modality != modality:
            raise ModelError(wrong_modality(model.path, model.profile.modality, modality))
        return model
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    choose_threads(0, threads)  # a bad --threads fails before the model is read
    loaded = load_model_dir(resolve_model_dir(model, modality), modality=modality,
                            device=device, dtype=dtype)
    apply_threads(loaded.weights.num_parameters(), threads)
    return loaded


# the shared CLI flags live in a torch-free module (fast argument checks); re-exported here
from .sampling_args import add_sampling_arguments, model_dtype, sampling_config  # noqa: F401
