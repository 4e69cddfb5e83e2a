"""A batch of streams decoding together over one KV cache (:class:`Session`, :func:`generate`).

Per-row prompts; a row stops on EOS / ``max_new_tokens`` / a unit verdict; a per-row
constraint (grammar) masks logits; unit splitting (:mod:`codeclm.streaming`); callbacks
per token and per unit; and rollback: a unit verdict of :class:`Reject` cuts the row's
cache back to the unit's first token and samples it again (optionally substituting
bytes). ``<pad>``, ``<s>`` and the reserved ids are never sampled (a codec stream has no
use for them); EOS is, unless ``min_new_tokens`` holds it back or ``allow_eos`` is False.

Rollback works at any batch size: cache rows are independent, so cutting one row back
only changes that row's length. A rejected unit costs the tokens re-sampled plus one
re-fed token. Rows that finish early keep computing a dummy token per step (the batch
shape is fixed) until every row is done.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from ..errors import ConfigError, ModelError
from ..modality import find as find_modality
from ..streaming import Unit, UnitSplitter
from . import filters_first
from .forward import CachedForward, KVCacheLM
from .lazy_masks import lazy_choice
from .sampling import make_generators, noise_buffer, sample_tokens
from .sampling_config import SamplingConfig, draw_seed
from .stats import DecodeStats

#: a unit rejected this many times in a row is a verifier bug: raise instead of looping
MAX_ATTEMPTS = 10_000
#: at most this many prompt tokens (rows x length) go through one batched prefill forward
PREFILL_TOKENS = 4096


# ---------------------------------------------------------------- verdicts and hooks
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


# An optional Constraint capability, used where a row draws filters-first: ``finish_early(
# token_id)`` -> the token ids that finish the open unit when ``token_id``, the model's
# own (disallowed) draw, asks to end it before it may end (e.g. a start code inside an
# H.264 slice: avclm.nal_masks.NalConstraint), then the model's boundary token where it
# fits after them, or None; the first is the step's token, the rest are forced, each one
# step.


@runtime_checkable
class TokenCheck(Protocol):
    """An optional :class:`Constraint` capability: ``allows(token_id)`` is
    ``bool(allowed_mask()[token_id])`` without building the mask (and without advancing
    the constraint). A row whose constraint has it is sampled with exact lazy masks
    (:mod:`codeclm.generation.lazy_masks`: the same token as with the full mask). A
    constraint may also have ``possible_mask()``: a cheap ``BoolTensor`` superset of
    ``allowed_mask()`` (the lazy walk restarts within it when the model's favourites
    are all disallowed), or None where it has none much narrower than the vocabulary
    (the walk then goes on), and ``token_check()``: ``allows`` as a function for the current
    state, valid until the constraint changes (what one draw's walk then calls, so
    per-state work is done once per draw, not once per token)."""

    def allows(self, token_id: int) -> bool: ...


def _allows_of(con: Constraint) -> Callable[[int], bool]:
    """``con``'s check of one token for its current state: ``token_check()`` or
    ``allows`` where it has :class:`TokenCheck`, else a lookup in its full mask."""
    if _can_check(type(con)):
        return con.token_check() if hasattr(con, "token_check") else con.allows
    mask = con.allowed_mask()
    return lambda token: token < mask.shape[0] and bool(mask[token])


@functools.cache
def _can_check(cls: type) -> bool:
    """Whether a constraint class has :class:`TokenCheck` (cached: ``isinstance`` on a
    runtime-checkable protocol costs tens of microseconds, once per draw)."""
    return issubclass(cls, TokenCheck)


class FullMasks:
    """A :class:`Constraint` that hides ``allows`` of the one it wraps, so the session
    builds its full mask at every step (the reference the lazy path is tested and
    benchmarked against); ``finish_early`` is passed through."""

    def __init__(self, inner: Constraint):
        self.inner = inner

    @property
    def done(self) -> bool:
        return self.inner.done

    def allowed_mask(self) -> torch.Tensor:
        return self.inner.allowed_mask()

    def advance(self, token_id: int) -> None:
        self.inner.advance(token_id)

    def copy(self) -> FullMasks:
        return FullMasks(self.inner.copy())

    def finish_early(self, token_id: int) -> list[int] | None:
        """The wrapped constraint's ``finish_early`` (None where it has none)."""
        finish = getattr(self.inner, "finish_early", None)
        return finish(token_id) if finish is not None else None


# ---------------------------------------------------------------- rows and session
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

    ``start(prompts)`` prefills; each ``step()`` feeds one token per unfinished row (or
    adds a lone row's forced token without a forward: jump-forward) and returns the
    :class:`StepEvents`. Between steps the owner may ``restart(row, ids)``
    (fresh prompt in the same row, e.g. a video continuing past the context) or
    ``finish(row)``. ``on_unit(row, unit) -> Verdict`` judges each unit when it
    completes; ``on_token(row, token_id)`` sees every token added (sampled or forced).
    ``max_unit_tokens``: a unit still open after this many tokens is judged as
    ``truncated`` (a verifier then usually rejects it; accepting closes it as is).
    ``allow_eos=False``: EOS is never sampled (the owner ends the rows, e.g. by a frame
    count); ``min_new_tokens`` holds it back for that many new tokens only. A row whose
    constraint is done is still given EOS. ``compile``: ``torch.compile`` the decode step
    of the :class:`KVCacheLM` built here (:mod:`codeclm.generation.compiled`; ignored
    when ``model`` is already a forward). ``jump_forward``: a lone row's forced tokens
    skip forwards of their own (see :meth:`step`; False: one forward per token, the
    reference the tests compare with).
    """

    def __init__(self, model, tokenizer, batch_size: int, config: SamplingConfig | None = None,
                 *, max_length: int | None = None, max_new_tokens: int | None = None,
                 min_new_tokens: int = 0, allow_eos: bool = True,
                 modality: str | None = None, max_unit_tokens: int | None = None,
                 on_token: Callable[[int, int], None] | None = None,
                 on_unit: Callable[[int, Unit], Verdict] | None = None,
                 compile: bool = False, jump_forward: bool = True):
        # a KVCacheLM, or a forward with its interface (codeclm.guidance.GuidedLM)
        self.kv = (model if isinstance(model, CachedForward)
                   else KVCacheLM(model, batch_size, max_length, compile=compile))
        if self.kv.batch_size < batch_size:
            raise ConfigError(f"cache holds {self.kv.batch_size} rows, {batch_size} asked")
        if self.kv.vocab_size < tokenizer.vocab_size:
            raise ModelError(f"model vocabulary ({self.kv.vocab_size}) is smaller than the "
                             f"tokenizer's ({tokenizer.vocab_size})")
        self.tok = tokenizer
        self.batch_size = batch_size
        self.config = config = config or SamplingConfig()
        self.seed = config.seed if config.seed is not None else draw_seed()
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self.modality = modality if modality is not None else getattr(tokenizer, "modality", None)
        if self.modality is not None and find_modality(self.modality) is None:
            raise ConfigError(f"no unit markers for modality {self.modality!r}")
        self.max_unit_tokens = max_unit_tokens
        self.on_token, self.on_unit = on_token, on_unit
        self.jump_forward = jump_forward
        self.rows: list[Row] = []
        self._token_bytes = tokenizer.token_bytes
        self._noise = noise_buffer(batch_size, self.kv.vocab_size, config, self.kv.device)
        # never sampled: <pad>, <s>, the reserved ids, and model ids beyond the tokenizer
        # (and EOS too without allow_eos)
        sampled_specials = {tokenizer.eos_id} if allow_eos else set()
        banned = sorted(set(tokenizer.special_ids) - sampled_specials)
        banned += list(range(tokenizer.vocab_size, self.kv.vocab_size))
        self._banned = torch.tensor(banned, dtype=torch.long, device=self.kv.device)
        self._events = StepEvents()
        self.stats = DecodeStats(seed=self.seed)
        #: lazy-mask draws decided / lazy walks that fell back to the full mask
        self.lazy_masks = self.full_masks = 0

    # ---------------------------------------------------------------- setup
    def start(self, prompts: Sequence[Sequence[int]],
              constraints: Sequence[Constraint | None] | None = None):
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
        together = self._prefill_together(prompts)
        done_prompts: dict[tuple, int] = {}
        for r, ids in enumerate(prompts):
            key = tuple(ids)
            if key in done_prompts:  # same prompt: copy the cache row instead of recomputing
                self._load(r, list(ids), copy_from=done_prompts[key])
            else:
                self._load(r, list(ids), prefilled=r in together)
                done_prompts[key] = r
        return self

    def _prefill_together(self, prompts: Sequence[Sequence[int]]) -> set[int]:
        """Prefill the distinct prompts that share a length in one forward per length (a
        :class:`KVCacheLM` only; the same cache bits as one row at a time, the weights read
        once); returns the rows done. At most :data:`PREFILL_TOKENS` tokens per forward."""
        if not isinstance(self.kv, KVCacheLM):
            return set()
        by_length: dict[int, list[int]] = {}
        seen: set[tuple] = set()
        for r, ids in enumerate(prompts):
            self._check_prompt(ids)
            if tuple(ids) not in seen and len(ids) > 1:
                seen.add(tuple(ids))
                by_length.setdefault(len(ids), []).append(r)
        t0 = time.perf_counter()
        done: set[int] = set()
        for n, rows in by_length.items():
            if len(rows) < 2:  # (a lone prompt is prefilled by _load)
                continue
            per_forward = max(1, PREFILL_TOKENS // n)
            for i in range(0, len(rows), per_forward):
                part = rows[i:i + per_forward]
                self.kv.prefill_rows(part, torch.tensor([list(prompts[r])[:-1] for r in part]))
                done.update(part)
        self.stats.prefill_s += time.perf_counter() - t0
        return done

    def restart(self, row: int, ids: Sequence[int], constraint: Constraint | None = None) -> None:
        """Give row ``row`` a fresh prompt (its cache is overwritten from slot 0). Units
        already accepted stay in ``units``; the open unit is dropped; unit numbering goes on."""
        r = self.rows[row]
        r.constraint = constraint
        r.forced.clear()
        r.skip_bytes, r.attempts, r.snapshots = 0, 0, {}
        r.done, r.reason = False, None
        self._load(row, list(ids))

    def _check_prompt(self, ids: Sequence[int]) -> None:
        if not ids:
            raise ConfigError("a prompt needs at least one token (BOS)")
        if len(ids) >= self.kv.max_length:
            raise ConfigError(f"prompt of {len(ids)} tokens leaves no room in the "
                              f"{self.kv.max_length}-token context")
        bad = [t for t in ids if not 0 <= t < self.tok.vocab_size]
        if bad:
            raise ConfigError(f"prompt token {bad[0]} is outside the vocabulary")

    def _load(self, row: int, ids: list[int], copy_from: int | None = None,
              prefilled: bool = False) -> None:
        """Row ``row`` starts from prompt ``ids``: its cache filled (by a prefill, a copy of
        row ``copy_from``, or already: ``prefilled``) up to the last token, fed next."""
        self._check_prompt(ids)
        t0 = time.perf_counter()
        n = len(ids) - 1  # the last prompt token is fed by the first step
        if n and not prefilled:
            if copy_from is not None:
                self.kv.copy_row(row, copy_from, n)
            else:
                self.kv.prefill(row, torch.tensor(ids[:-1]))
        self.stats.prefill_s += time.perf_counter() - t0
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
        """Feed one token per unfinished row, pick each row's next token, handle units.

        Jump-forward: with one unfinished row whose next token is already forced, that
        token is added without a forward (nothing is drawn from the logits it would
        give); the next step feeds the row's tokens not yet in the cache together."""
        self._events = events = StepEvents()
        live = [i for i, r in enumerate(self.rows) if not r.done]
        if not live:
            return events
        if self.jump_forward and len(live) == 1 and self.rows[live[0]].forced:
            self.stats.jumped += 1  # (no forward, no draw: nothing for decode_s)
            self._add_token(live[0], self.rows[live[0]].forced.popleft())
            return events
        t0, c0 = time.perf_counter(), time.thread_time()
        logits = self._forward(live)
        chosen = self._choose(logits)
        for r in self.rows:
            if not r.done:
                r.fed = len(r.tokens)
        self.stats.decode_s += time.perf_counter() - t0
        self.stats.decode_cpu_s += time.thread_time() - c0
        self.stats.steps += 1
        for i in live:
            self._add_token(i, chosen[i])
        return events

    def _forward(self, live: list[int]) -> torch.Tensor:
        """Logits ``[rows, V]`` after feeding each row its tokens not yet in the cache:
        one decode step; a lone row with several (after jump-forward) gets one
        :meth:`_extend` instead, and with other rows live its earlier ones go first."""
        for i in live:
            r = self.rows[i]
            if len(r.tokens) - r.fed > 1:
                if len(live) == 1:
                    row = self._extend(i, r.tokens[r.fed:], r.fed)
                    logits = row.new_zeros((len(self.rows), row.shape[-1]))
                    logits[i] = row
                    return logits
                # (a row that jumped forward alone, then others were restarted)
                self._extend(i, r.tokens[r.fed:-1], r.fed)
                r.fed = len(r.tokens) - 1
        feed = [r.tokens[r.fed] if not r.done else self.tok.pad_id for r in self.rows]
        pos = [min(r.fed, self.kv.max_length - 1) for r in self.rows]
        return self.kv.decode(torch.tensor(feed), pos)

    def _extend(self, row: int, ids: list[int], start: int) -> torch.Tensor:
        """Feed ``ids`` to row ``row`` from slot ``start``: the forward's ``extend`` where
        it has one (:meth:`KVCacheLM.extend`), else its ``prefill``; the logits ``[V]``
        after the last."""
        extend = getattr(self.kv, "extend", None)
        ids_t = torch.tensor(ids)
        return extend(row, ids_t, start) if extend is not None else self.kv.prefill(
            row, ids_t, start)

    def _choose(self, logits: torch.Tensor) -> list[int]:
        """Next token per row: forced ones, EOS for rows whose constraint is done, else
        sampled: constrained rows first filters-first where the config says so (the
        first allowed of the model's filtered candidates), then mask-first, with exact
        lazy masks where their constraint can check single tokens, else with full
        masks; the rest batched."""
        out = [-1] * len(self.rows)
        draw: list[int] = []
        for i, r in enumerate(self.rows):
            if r.done:
                continue
            if r.forced:
                out[i] = r.forced.popleft()
            elif r.constraint is not None and r.constraint.done:
                out[i] = self.tok.eos_id
            else:
                draw.append(i)
        if not draw:
            return out
        logits.index_fill_(1, self._banned, float("-inf"))  # (step runs in inference mode)
        if self.min_new_tokens:
            early = [i for i in draw
                     if len(self.rows[i].tokens) - self.rows[i].n_prompt < self.min_new_tokens]
            if len(early) == logits.shape[0]:  # (logits are this step's own: edit in place)
                logits.select(1, self.tok.eos_id).fill_(float("-inf"))
            elif early:
                logits[early, self.tok.eos_id] = float("-inf")
        sampled, checks = draw, {}
        if filters_first.applies(self.config):
            draw = self._choose_filters_first(draw, logits, out, checks)
        batched = [i for i in draw if not self._choose_lazily(i, logits[i], out, checks.get(i))]
        if batched:
            self._sample_batched(logits, batched, out)
        for i in sampled:
            self.rows[i].sampled += 1
        self.stats.sampled += len(sampled)
        return out

    def _choose_filters_first(self, draw: list[int], logits: torch.Tensor, out: list[int],
                              checks: dict[int, Callable[[int], bool]]) -> list[int]:
        """The constrained rows of ``draw`` whose filtered candidates (top-k / top-p of
        the model's own distribution, in race order: :mod:`.filters_first`) hold an
        allowed token get the first such token in ``out``; returns the rows still to
        draw (free rows, and constrained rows with no allowed candidate: those go on
        mask-first). ``checks`` receives each checked row's ``allows`` for later use."""
        rows = [i for i in draw if self.rows[i].constraint is not None]
        if not rows:
            return draw
        row_logits = logits if len(rows) == logits.shape[0] else logits[rows]
        free = filters_first.FilteredDraw(
            row_logits, [self.rows[i].generator for i in rows], self.config, self._noise)
        decided = set()
        for j, i in enumerate(rows):
            con = self.rows[i].constraint
            checks[i] = allows = _allows_of(con)
            own = free.own[j]
            if allows(own):
                token = own
            else:
                finish = getattr(con, "finish_early", None)
                ids = finish(own) if finish is not None else None
                if ids:  # the model would end the unit early: the constraint finishes it
                    token = ids[0]
                    self.rows[i].forced.extend(ids[1:])
                    self.stats.finished += 1
                    self.stats.finish_tokens += len(ids)
                else:
                    token = filters_first.first_allowed(free.ranked(j)[1:], allows)
            if token is not None:
                out[i] = token
                decided.add(i)
            self.stats.changed += token != own  # (None: mask-first follows)
        self.stats.constrained += len(rows)
        return [i for i in draw if i not in decided]

    def _choose_lazily(self, i: int, logits: torch.Tensor, out: list[int],
                       allows: Callable[[int], bool] | None = None) -> bool:
        """Row ``i``'s token from lazy masks into ``out`` if its constraint can check
        single tokens and the walk decides; False leaves the row to the batched draw.
        ``allows``: the row's check for this draw if already built (:func:`_allows_of`)."""
        con = self.rows[i].constraint
        if con is None or not _can_check(type(con)):
            return False
        c = self.config
        if allows is None:
            allows = _allows_of(con)
        token = lazy_choice(logits, allows, self.rows[i].generator, c.temperature,
                            c.top_k, c.top_p, possible=getattr(con, "possible_mask", None))
        if token is None:
            self.full_masks += 1
            return False
        self.lazy_masks += 1
        out[i] = token
        return True

    def _sample_batched(self, logits: torch.Tensor, rows: list[int], out: list[int]) -> None:
        """Draw rows ``rows`` together (constrained ones with their full masks) into ``out``."""
        masks = [(i, self.rows[i].constraint.allowed_mask()) for i in rows
                 if self.rows[i].constraint is not None]
        if masks:
            allowed = torch.ones_like(logits, dtype=torch.bool)
            for i, m in masks:
                allowed[i] = False
                allowed[i, :m.shape[0]] = m.to(logits.device)
                if not bool(allowed[i].any()):
                    raise ConfigError(f"row {i}: the constraint allows no token")
            logits = logits.masked_fill(~allowed, float("-inf"))
        c = self.config
        wanted = set(rows)
        gens = [r.generator if i in wanted else None for i, r in enumerate(self.rows)]
        picked = sample_tokens(logits, gens, c.temperature, c.top_k, c.top_p,
                               self._noise).tolist()
        for i in rows:
            out[i] = picked[i]

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
            self.stats.rejected += 1
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


# ---------------------------------------------------------------- one call
@dataclasses.dataclass
class GenerationResult:
    """Per row: ``tokens`` generated (prompt excluded, EOS included if sampled), accepted
    ``units`` (bytes), why it stopped (``reasons``); ``stats``: timings (s), counts,
    ``tokens_per_s`` (sampled tokens / decode time) and the ``seed`` used."""

    tokens: list[list[int]]
    units: list[list[bytes]]
    reasons: list[str]
    stats: dict


def generate(model, tokenizer, prompts: Sequence[Sequence[int]],
             config: SamplingConfig | None = None, *, max_new_tokens: int | None = None,
             min_new_tokens: int = 0, allow_eos: bool = True,
             constraints: Sequence[Constraint | None] | None = None,
             modality: str | None = None, max_length: int | None = None,
             max_unit_tokens: int | None = None,
             on_token: Callable[[int, int], None] | None = None,
             on_unit: Callable[[int, Unit], Verdict] | None = None,
             on_context_full: Callable[[int, Row], Sequence[int] | None] | None = None,
             compile: bool = False) -> GenerationResult:
    """Sample continuations of ``prompts`` (token id lists) with a ``LlamaForCausalLM``.

    Stops a row at EOS (never before ``min_new_tokens``, never with ``allow_eos=False``),
    after ``max_new_tokens`` kept tokens, on a :class:`Stop` verdict, or when its context
    is full, where ``on_context_full(row, state)`` may return a new prompt to continue
    from (None ends the row). ``max_length`` bounds the cache (default: enough for the
    longest prompt + ``max_new_tokens``, at most the context). ``compile``: see
    :class:`Session`.
    """
    if not prompts:
        raise ConfigError("no prompts")
    if max_length is None and max_new_tokens is not None:
        max_length = max(len(p) for p in prompts) + max_new_tokens + 1
    session = Session(model, tokenizer, len(prompts), config, max_length=max_length,
                      max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                      allow_eos=allow_eos, modality=modality, max_unit_tokens=max_unit_tokens,
                      on_token=on_token, on_unit=on_unit, compile=compile)
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
                            [r.reason for r in session.rows], session.stats.as_dict())

