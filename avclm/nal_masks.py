"""Token masks for generated H.264: what x264 could write next, before each draw.

:class:`NalConstraint` (a :class:`codeclm.generation.session.Constraint`) applies
cheap byte rules before each draw, following the stream plan of :mod:`avclm.stream_plan`
(the NAL check of :mod:`avclm.verifier` stays as the safety net):

- *Emulation prevention*: inside a NAL unit ``00 00 00``, ``00 00 01``, ``00 00 02``
  never occur, ``00 00 03`` (the escape) is followed by a byte <= 3, and a NAL does
  not end in ``00`` or in an escape byte. A start code may only open a token (or
  complete zeros the previous token ended with): the tokenizer's pre-split puts
  every start code at the start of a token.
- *Start codes as x264 writes them*: 4 bytes before the first NAL of an access unit
  (SPS, and the first slice of a non-IDR picture), 3 bytes elsewhere (the IDR slice
  after the PPS, every slice but a picture's first).
- *NAL headers and slice headers the profile can produce*: the NAL header byte
  (forbidden bit 0, x264's nal_ref_idc: 3 for SPS/PPS/IDR, 2 for other slices) and
  the whole slice header up to the slice data, bit for bit: the next macroblock,
  slice_type (7 for I, 5 for P: x264 writes type + 5), the PPS id, frame_num (one
  more than the previous picture's), idr_pic_id (x264 alternates 0 and 1), the
  reference count override (min(pictures since the IDR, refs)), the reference
  marking bits, slice_qp_delta and the deblocking fields. SPS and PPS (nal_unit_type
  7/8, exactly the canonical bytes) only where x264 writes them: before an IDR
  picture, which may start a picture ``keyint_min`` or more pictures after the last
  IDR (a scene cut); a scene cut nearer than that gives a non-IDR I picture, also
  allowed; an IDR is forced at ``keyint``.
- *Slice data* (``slice_grammar=True``, the default): after the header, every token's
  RBSP bits must continue a valid macroblock layer (:mod:`avclm.slice_automaton`,
  the grammar of :mod:`avclm.mb_grammar`), and a slice may end only after a complete
  macroblock and its stop bit. A slice drawn under these masks passes the data check of
  :mod:`avclm.slice_check`; the check stays as the safety net.
- *Early ends* (``finish_early=True``, the default): where the model's own draw
  opens a start code but the slice cannot end yet (the model "thinks" the macroblock
  is complete; the grammar still wants blocks), :meth:`NalConstraint.finish_early`
  gives the tokens that finish the slice the plainest way
  (:func:`avclm.slice_automaton.plainest_completion`: no more coefficients, zero
  motion vector differences), which the sampler forces. Without it the draw falls to
  the model's next allowed candidate, which after a start-code wish is mostly zero
  bits: in CAVLC long codes, that is many large coefficients (noise the model never
  meant, and a busier picture for every later frame to predict from).

Masks are a handful of vectorized comparisons over per-token byte facts computed
once per tokenizer (:class:`TokenFacts`: start-code completion, leading zeros,
validity and end state of the payload automaton from each of its 6 states, the
token's first bytes for header patterns), cached by the state that decides them
(trailing zeros, escape state, position in the NAL while inside the header pattern,
the header pattern itself, and the next NAL's pattern for tokens that open one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from codeclm.errors import ConfigError, DecodeError
from codeclm.token_bytes import TokenPrefixes

from . import slice_automaton
from .bits import rbsp_int, rbsp_to_ebsp
from .profile import AvcProfile
from .slice_automaton import SliceGrammar
from .stream_plan import HEAD_BYTES, Expect, PlanState, StreamFacts, stream_facts

if TYPE_CHECKING:  # (the gate the masks may share their plan with)
    from .verifier import NalVerifier

#: masks kept per tokenizer (each is ``vocab_size`` bools)
MASK_CACHE_SIZE = 8192


#: payload automaton states (z: trailing zero bytes, q: the last non-zero byte was an
#: emulation-prevention byte, e: the previous byte was one, so the next must be <= 3)
_STATES = ((0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 1, 1), (1, 1, 0), (2, 1, 0))
_STATE_INDEX = {s: i for i, s in enumerate(_STATES)}
#: single-token checks of a header-pattern part before it is built for the whole
#: vocabulary (:meth:`NalConstraint._part_entry`)
PART_AFTER_CHECKS = 6
#: token bytes compared against header patterns (an SPS is ~24 bytes)
PATTERN_BYTES = 32


def _payload_run(data: bytes, z: int, q: int, e: int) -> tuple[int, int, int] | None:
    """Run NAL payload bytes through the emulation-prevention automaton from state
    (z, q, e); the end state, or None if they break a rule: ``00 00 00``, ``00 00 01``
    (a start code), ``00 00 02``, an escape followed by a byte > 3."""
    for x in data:
        if e and x > 3:
            return None
        if x == 0:
            if z == 2:
                return None
            z, e = z + 1, 0
        elif z == 2 and x < 3:
            return None
        elif z == 2:  # x == 3 is the escape; x > 3 a plain byte
            z, q, e = (0, 1, 1) if x == 3 else (0, 0, 0)
        else:
            z, q, e = 0, 0, 0
    return z, q, e


class TokenFacts:
    """Per-token byte facts of a tokenizer, computed once (:func:`token_facts`), and the
    mask cache. Arrays have one row per token id (``V = vocab_size``):

    - ``pay_ok[s]``: the token's bytes are valid NAL payload from automaton state ``s``
      (no start code, no forbidden pattern, no dangling third zero);
    - openers: ``lz`` leading zero bytes, ``lead1`` a ``01`` right after them (the
      token completes a start code when the bytes before ended with ``3 - lz`` or
      ``2 - lz`` zeros); ``body`` the bytes after that ``01`` (``body_ok``: valid as the
      start of a NAL), ``body_len``;
    - ``zeros``: length of an all-zero token (start-code zeros), else 0;
    - ``tok``/``body`` byte matrices ``[V, PATTERN_BYTES]`` for header patterns.
    """

    def __init__(self, tokenizer):
        tb = tokenizer.token_bytes
        V = self.vocab_size = tokenizer.vocab_size
        self.token_bytes = tb
        self.eos_id = tokenizer.eos_id
        self._tokenizer = tokenizer
        K = PATTERN_BYTES
        self.special = np.array([b is None for b in tb], bool)
        self.length = np.array([len(b or b"") for b in tb], np.int64)
        self.tok = np.zeros((V, K), np.uint8)
        self.body = np.zeros((V, K), np.uint8)
        self.lz = np.zeros(V, np.int64)
        self.lead1 = np.zeros(V, bool)
        self.body_ok = np.zeros(V, bool)
        self.body_len = np.zeros(V, np.int64)
        self.zeros = np.zeros(V, np.int64)
        self.pay_ok = np.zeros((len(_STATES), V), bool)
        for t, b in enumerate(tb):
            if not b:
                continue
            self.tok[t, :min(K, len(b))] = np.frombuffer(b[:K], np.uint8)
            lz = len(b) - len(b.lstrip(b"\x00"))
            if lz == len(b):
                self.zeros[t] = lz
            self.lz[t] = lz
            if lz < len(b) and b[lz] == 1 and lz <= 3:
                body = b[lz + 1:]
                self.lead1[t] = True
                self.body_ok[t] = _payload_run(body, 0, 0, 0) is not None
                self.body_len[t] = len(body)
                self.body[t, :min(K, len(body))] = np.frombuffer(body[:K], np.uint8)
            for i, s in enumerate(_STATES):
                self.pay_ok[i, t] = _payload_run(b, *s) is not None
        cols = np.arange(K)[None]
        self.tok_beyond = cols >= self.length[:, None]
        self.body_beyond = cols >= self.body_len[:, None]
        self.cache: dict = {}  # full key -> torch mask
        self.parts: dict = {}  # part key -> numpy mask
        self.no_tokens = np.zeros(self.vocab_size, bool)  # the empty part (read-only)
        self.no_tokens.flags.writeable = False
        self.grammars: dict = {}  # id(StreamFacts) -> SliceGrammar
        self.prefixes = TokenPrefixes(tb)  # token id -> its prefix tokens, longest first

    def encode(self, data: bytes) -> list[int]:
        """The token ids of ``data`` (no BOS, no EOS)."""
        return self._tokenizer.encode(data, bos=False, eos=False)

    def slice_grammar(self, facts: StreamFacts) -> SliceGrammar:
        """The slice-data token masks of this tokenizer for a stream's facts."""
        got = self.grammars.get(id(facts))
        if got is None or got[0] is not facts:
            got = self.grammars[id(facts)] = (facts, SliceGrammar(self.token_bytes, facts.pps))
        return got[1]

    def match(self, opener: bool, mask: bytes, value: bytes, pos: int, exact: bool) -> np.ndarray:
        """Tokens whose bytes (``opener``: the body after the start code) placed at NAL
        position ``pos`` agree with the pattern; ``exact``: and do not run past it."""
        mat, beyond, lens = ((self.body, self.body_beyond, self.body_len) if opener else
                             (self.tok, self.tok_beyond, self.length))
        P = len(mask)
        L = min(P - pos, PATTERN_BYTES)
        if L > 0:
            m = np.frombuffer(mask, np.uint8)[pos:pos + L]
            v = np.frombuffer(value, np.uint8)[pos:pos + L]
            ok = (((mat[:, :L] & m) == v) | beyond[:, :L]).all(1)
        else:
            ok = np.ones(self.vocab_size, bool)
        if exact:
            ok &= lens <= P - pos
        return ok


def opens_start_code(data: bytes, zeros: int) -> bool:
    """Whether token bytes ``data``, after ``zeros`` zero bytes, open a start code: at
    least two zeros in all, then ``01``, or at least three zeros in all (no payload
    holds ``00 00 00``)."""
    lead = len(data) - len(data.lstrip(b"\x00"))
    total = zeros + lead
    if lead == len(data):
        return total >= 3
    return total >= 2 and data[lead] == 1


def _matches(data: bytes, mask: bytes, value: bytes, pos: int, exact: bool) -> bool:
    """:meth:`TokenFacts.match` for one token's bytes ``data``: placed at NAL position
    ``pos``, its first bytes (at most :data:`PATTERN_BYTES`) agree with the pattern;
    ``exact``: and they do not run past it."""
    for i in range(min(len(mask) - pos, PATTERN_BYTES, len(data))):
        if data[i] & mask[pos + i] != value[pos + i]:
            return False
    return not exact or len(data) <= len(mask) - pos


_TOKEN_FACTS: dict[int, tuple[object, TokenFacts]] = {}
_TOKEN_FACTS_KEPT = 8


def token_facts(tokenizer) -> TokenFacts:
    """The :class:`TokenFacts` of ``tokenizer`` (computed once per tokenizer object;
    the last few tokenizers are kept)."""
    got = _TOKEN_FACTS.get(id(tokenizer))
    if got is None or got[0] is not tokenizer:
        while len(_TOKEN_FACTS) >= _TOKEN_FACTS_KEPT:
            del _TOKEN_FACTS[next(iter(_TOKEN_FACTS))]
        got = _TOKEN_FACTS[id(tokenizer)] = (tokenizer, TokenFacts(tokenizer))
    return got[1]


def _pattern_key(e: Expect) -> tuple:
    return (e.mask, e.value, e.exact, e.sc_len)


class NalConstraint:
    """Token masks that keep a row's H.264 bytes valid NAL units of the canonical
    profile (see the module docstring); a :class:`codeclm.generation.session.Constraint`.

    ``gate``: the row's :class:`NalVerifier`, the authority on what has been written.
    At every draw the constraint restarts from the gate's state (no open NAL: only a
    start code may follow) when the gate has rolled the row back since (a failed
    check, a truncated NAL reported with :meth:`NalVerifier.note_truncated`, a
    replacement), or when the NAL units it has seen end do not match those the gate
    has finalized since the constraint was first used: equal counts mean the open NAL
    was finalized (a restored snapshot), more seen than finalized mean a rolled back
    NAL the sampler had no snapshot for (its first token held no complete start code).
    So rollbacks stay exact whatever the sampler's snapshots (one gap: a truncated NAL
    whose start code was split over tokens, when the caller does not report the
    truncation). Without a gate (``profile=`` and an optional ``plan``) the constraint
    follows its own bytes only.

    The bytes before the first token must end a complete NAL unit (the prompt): the
    first token opens a NAL. ``done`` is never set: the caller ends the video (EOS is
    allowed at picture boundaries). ``allowed_mask()`` -> ``torch.BoolTensor[vocab_size]``;
    masks are cached per tokenizer by the state that decides them, so a step usually
    costs a dict lookup.
    """

    def __init__(self, tokenizer, gate: NalVerifier | None = None, *,
                 profile: AvcProfile | None = None, plan: PlanState | None = None,
                 slice_grammar: bool = True, finish_early: bool = True):
        if gate is None and profile is None:
            raise ConfigError("NalConstraint needs a gate or a profile")
        self.tokens = token_facts(tokenizer)
        self.facts = gate.facts if gate is not None else stream_facts(profile)
        self.grammar = self.tokens.slice_grammar(self.facts) if slice_grammar else None
        self.finishes_early = finish_early and self.grammar is not None
        self._gate = gate
        self._base = 0  # gate.observed when the constraint was first used
        self.nals = 0  # start codes seen since then
        self.plan = None if gate is not None else (plan or PlanState())
        self._reset(self.plan)
        self.done = False

    def _reset(self, plan: PlanState | None) -> None:
        """No open NAL: the next bytes must open one, in stream state ``plan``."""
        self.plan = plan
        self.cur: tuple[Expect, ...] | None = None  # alternatives the open NAL still matches
        #: per alternative: (automaton key, state) of its slice grammar, or None
        self.gstates: tuple = ()
        self.head = bytearray()  # the open NAL's first HEAD_BYTES bytes
        self.pos = 0  # bytes of the open NAL (trailing zeros included unless closed)
        self.z = self.q = self.e = 0
        self.closed = True  # the open NAL is complete: only start-code bytes may follow
        self.lost = False  # forced bytes left the expected patterns: byte rules only
        self._next: PlanState | None = None
        self._key: tuple | None = None  # _mask_key() of this state
        self._parts: tuple | None = None  # what allows() reads in this state

    # ------------------------------------------------------------------ protocol
    def copy(self) -> NalConstraint:
        c = object.__new__(NalConstraint)
        c.__dict__.update(self.__dict__)
        c.head = bytearray(self.head)
        return c

    def allowed_mask(self) -> torch.Tensor:
        self._sync()
        key = self._mask_key()
        T = self.tokens
        m = T.cache.get(key)
        if m is None:
            if len(T.cache) >= MASK_CACHE_SIZE:
                T.cache.clear()
            ckey, gkey, okey, eos = key
            ok = self._part(("c",) + ckey if ckey is not None else None)
            if gkey is not None:
                ok = ok & self._grammar_mask(gkey)
            ok = ok | self._part(("o",) + okey if okey is not None else None)
            if eos:
                ok[T.eos_id] = True
            m = T.cache[key] = torch.from_numpy(ok)
        return m

    def allows(self, token_id: int) -> bool:
        """``bool(allowed_mask()[token_id])`` without building the mask: the parts that
        are cheap and cached are indexed, and the slice grammar steps the token's own
        bits (:meth:`SliceGrammar.token_check`). Does not advance the constraint (a
        :class:`codeclm.generation.session.TokenCheck`); what it reads is gathered once
        per state (:meth:`_check_parts`)."""
        return bool(self.token_check()(token_id))

    def token_check(self) -> Callable[[int], bool]:
        """:meth:`allows` as a function of the token id in the current state, what
        :meth:`allows` reads gathered once (valid until the constraint advances or its
        gate rolls back: what an exact lazy mask calls for each token of one draw)."""
        self._sync()
        if self._parts is None:
            fast = self._slice_data_check()
            if fast is not None:
                return fast
            self._parts = self._check_parts()
        m, cont, opens, eos_id, grammar_ok = self._parts
        if m is not None:
            return m.numpy().__getitem__

        def check(token_id: int) -> bool:
            if token_id == eos_id or (opens is not None and opens(token_id)):
                return True
            return (cont is not None and bool(cont(token_id))
                    and (grammar_ok is None or bool(grammar_ok(token_id))))

        return check

    def _slice_data_check(self) -> Callable[[int], bool] | None:
        """:meth:`token_check` in the commonest state, without the mask key: inside the
        slice data of the one alternative left (past its header pattern), where the
        NAL may not end yet. Then no NAL opens and EOS is out, so a token is allowed iff
        its bytes keep the payload's byte rules (the continuation part of this
        zero-run state) and its bits continue the slice grammar. None in any other
        state (the general path answers)."""
        if self.closed or self.lost or len(self.cur) != 1 or not self.gstates:
            return None
        e, gs = self.cur[0], self.gstates[0]
        if gs is None or e.exact or self.pos < len(e.mask) or self.can_end:
            return None
        zqe = _STATE_INDEX.get((self.z, self.q, self.e), -1)
        if zqe < 0:
            return None
        cont = self._part(("c", zqe))
        grammar_ok = self.grammar.token_check(gs[0], gs[1], self.z)
        return lambda token_id: bool(cont[token_id]) and bool(grammar_ok(token_id))

    def possible_mask(self) -> torch.Tensor | None:
        """A superset of :meth:`allowed_mask` from what is cheap: the cached parts and
        the slice grammar's mask only where it needs no trie walk (a NAL's first byte,
        after the macroblock). ``BoolTensor[vocab_size]``; what lazy masks restart
        within when the model's favourites are all disallowed. None inside a
        macroblock's slice data where no NAL may end: there the superset would be the
        payload's byte rules alone, which let nearly every token through, so a restart
        would walk the same tokens again."""
        self._sync()
        ckey, gkey, okey, eos = self._mask_key()
        cheap = gkey is not None and self._grammar_is_cheap(gkey)
        if gkey is not None and not cheap and len(ckey) == 1 and okey is None:
            return None
        ok = self._part(("c",) + ckey if ckey is not None else None)
        if cheap:
            ok = ok & self._grammar_mask(gkey)
        ok = ok | self._part(("o",) + okey if okey is not None else None)
        if eos:
            ok[self.tokens.eos_id] = True
        return torch.from_numpy(ok)

    @staticmethod
    def _grammar_is_cheap(gkey: tuple) -> bool:
        first, _, states = gkey
        return first or all(gs is not None and gs[1][3] != slice_automaton.MB for gs in states)

    def _check_parts(self) -> tuple:
        """What :meth:`allows` reads in this state: (the cached full mask or None, the
        continuation part's and the opener part's entry as functions of the token id
        (:meth:`_part_entry`; None: no token), the EOS id or -1, the slice grammar's
        single-token check or None when it allows everything the parts allow)."""
        key = self._mask_key()
        ckey, gkey, okey, eos = key
        return (self.tokens.cache.get(key),
                self._part_entry(("c",) + ckey) if ckey is not None else None,
                self._part_entry(("o",) + okey) if okey is not None else None,
                self.tokens.eos_id if eos else -1,
                self._grammar_check(gkey))

    def _mask_key(self) -> tuple:
        """What decides the mask in this state: (continuation key, grammar key, opener
        key, EOS allowed); memoized until the next byte or reset."""
        if self._key is not None:
            return self._key
        can_end = self.can_end
        if self.closed:
            ckey = None
        else:
            ckey = (_STATE_INDEX.get((self.z, self.q, self.e), -1),)
            if not self.lost:
                pats = tuple((_pattern_key(e)) for e in self.cur
                             if self.pos < len(e.mask) or e.exact)
                if pats:
                    ckey += (self.pos, pats)
        gkey = None
        if not self.closed and not self.lost and self.gstates:
            gkey = (self.pos == 0, min(self.z, 2), self.gstates)
        okey = None
        eos = False
        if can_end:
            nxt = self.next_plan()
            okey = (self.z, tuple(self._opener_key(e) for e in self.facts.expect(nxt)))
            eos = (self.cur is not None and nxt.next_mb == 0 and nxt.ps == 0
                   and nxt.open_kind is None)
        self._key = (ckey, gkey, okey, eos)
        return self._key

    def advance(self, token_id: int) -> None:
        if self.plan is None:
            self._sync()
        b = self.tokens.token_bytes[token_id] if token_id < len(self.tokens.token_bytes) else None
        if not b:
            return
        for x in b:
            self._byte(x)

    def finish_early(self, token_id: int) -> list[int] | None:
        """The tokens that finish the open slice the plainest way
        (:func:`~avclm.slice_automaton.plainest_completion`) when ``token_id``, the
        model's own draw, opens a start code but the slice cannot end here, followed by
        the model's start code: ``token_id`` itself where it is allowed after them, else
        its longest prefix token that is allowed and still opens a start code (a wrong
        slice header cut off; none: the model draws again). None when the slice may end,
        when ``finish_early`` is off, the open NAL is not a slice on one grammar path,
        or an escape byte is pending. The tokens are checked: each is allowed in turn
        and the slice may end before the start code. Does not advance the constraint (an
        optional :class:`codeclm.generation.session.Constraint` capability: the sampler
        forces them)."""
        if not self.finishes_early:
            return None
        self._sync()
        if (self.closed or self.lost or self.q or self.cur is None or len(self.cur) != 1
                or not self.gstates or self.gstates[0] is None or self.can_end
                or not opens_start_code(self.tokens.token_bytes[token_id] or b"", self.z)):
            return None
        value, n = slice_automaton.plainest_completion(self.gstates[0][1])
        z = min(self.z, 2)  # escapes continue from the zeros the NAL ends with
        ebsp = rbsp_to_ebsp(b"\x00" * z + value.to_bytes(n // 8, "big"))[z:]
        ids = self.tokens.encode(ebsp)
        c = self.copy()
        for t in ids:
            if not c.allows(t):
                return None
            c.advance(t)
        if not c.can_end:
            return None
        start = c._start_code_of(token_id)
        return ids + [start] if start is not None else ids

    def _start_code_of(self, token_id: int) -> int | None:
        """``token_id`` (a token that opens a start code) if allowed here, else its
        longest allowed prefix token that still opens one, else None."""
        T = self.tokens
        if self.allows(token_id):
            return token_id
        for t in T.prefixes(token_id):
            if opens_start_code(T.token_bytes[t], self.z) and self.allows(t):
                return t
        return None

    # ------------------------------------------------------------------ state
    @property
    def can_end(self) -> bool:
        """Whether the open NAL may end here (a start code or EOS may come next)."""
        if self.closed:
            return True
        if self.q:
            return False  # the NAL would end with an emulation-prevention byte
        n = self.pos - self.z
        if self.lost:
            return n >= 2
        if self.gstates:
            if len(self.cur) == 1:  # the commonest case, asked at every draw: no generator
                return self._may_end(self.cur[0], self.gstates[0], n)
            return any(self._may_end(e, g, n)
                       for e, g in zip(self.cur, self.gstates, strict=True))
        return any(n == len(e.nal) if e.exact else (n >= e.min_len and self._has_data(e, n))
                   for e in self.cur)

    def _may_end(self, e: Expect, g: tuple | None, n: int) -> bool:
        """Whether alternative ``e`` (slice grammar state ``g`` or None) may end after
        its first ``n`` bytes."""
        if e.exact:
            return n == len(e.nal)
        return n >= e.min_len and (self._has_data(e, n) if g is None
                                   else g[1][3] == slice_automaton.DONE)

    def _has_data(self, e: Expect, n: int) -> bool:
        """Whether the first ``n`` bytes hold, after the slice header, at least one bit
        of slice data and the rbsp_stop_one_bit (only in doubt for a NAL of at most
        ``min_len + 1`` bytes: the last byte is non-zero)."""
        if n > e.min_len + 1 or n > len(self.head):
            return True
        hn = e.header[1]
        value, total = rbsp_int(bytes(self.head[:n]))
        if total <= hn + 1:
            return False
        tail = value & ((1 << (total - hn)) - 1)
        return tail != 0 and total - hn - ((tail & -tail).bit_length() - 1) - 1 >= 1

    def next_plan(self) -> PlanState:
        """The stream state once the open NAL ends (as the gate will observe it)."""
        if self._next is None:
            if self.cur is None:
                self._next = self.plan
            else:
                n = self.pos if self.closed else self.pos - self.z
                try:
                    self._next = self.facts.observe(self.plan, bytes(self.head[:n]))
                except DecodeError:
                    self._next = self.plan
        return self._next

    def _sync(self) -> None:
        g = self._gate
        if g is None:
            return
        if self.plan is None:
            self._base, self.nals, self._rollbacks = g.observed, 0, g.rollbacks
            self._reset(g.plan)
            return
        finalized = g.observed - self._base
        if g.rollbacks == self._rollbacks and (
                finalized == self.nals - 1 or (finalized == self.nals and self.closed)):
            return  # inside the NAL after the finalized ones, or waiting for a start code
        self.nals, self._rollbacks = finalized, g.rollbacks
        self._reset(g.plan)

    def _byte(self, x: int) -> None:
        self._key = self._parts = None
        if x == 1 and self.z >= 2:  # a start code: a new NAL unit begins
            self._reset(self.next_plan())
            self.cur = self.facts.expect(self.plan)
            if self.grammar is not None:
                self.gstates = tuple(self._start_state(e) for e in self.cur)
            self.closed = False
            self.nals += 1
            return
        if self.closed:
            if x == 0:
                self.z += 1
                return
            self.closed, self.lost = False, True  # forced junk after a complete NAL
        p = self.pos
        self.pos += 1
        if p < HEAD_BYTES:
            self.head.append(x)
            # the next state depends on the slice header only (inside min_len bytes)
            if self.lost or p < max(e.min_len for e in self.cur):
                self._next = None
        if not self.lost:
            self._filter(p, x)
        if x == 0:
            self.z, self.e = self.z + 1, 0
        elif x == 3 and self.z >= 2:
            self.z, self.q, self.e = 0, 1, 1
        else:
            self.z = self.q = self.e = 0
        if (not self.lost and len(self.cur) == 1 and self.cur[0].exact
                and self.pos == len(self.cur[0].nal)):
            self.closed = True

    # ------------------------------------------------------------------ slice grammar
    def _start_state(self, e: Expect) -> tuple | None:
        """(automaton key, start state) of a slice alternative's grammar, else None."""
        if e.kind != "slice":
            return None
        key, auto = self.grammar.automaton(e.fields, e.header)
        return key, auto.start

    def _filter(self, p: int, x: int) -> None:
        """Keep the alternatives that byte ``x`` at NAL position ``p`` continues: its
        header pattern and, for slices, the slice grammar (on RBSP bytes: an
        emulation-prevention byte adds no bits). None left: byte rules only."""
        escape = x == 3 and self.z >= 2
        alive, states = [], []
        for i, e in enumerate(self.cur):
            if not ((p < len(e.mask) and x & e.mask[p] == e.value[p])
                    or (p >= len(e.mask) and not e.exact)):
                continue
            gs = self.gstates[i] if self.gstates else None
            if gs is not None and p >= 1:
                st = self.grammar.automata[gs[0]].step_byte(
                    gs[1], slice_automaton.ESCAPE if escape else x)
                if st is None:
                    continue
                gs = (gs[0], st)
            alive.append(e)
            states.append(gs)
        if alive:
            self.cur = tuple(alive)
            if self.gstates:
                self.gstates = tuple(states)
        else:
            self.lost = True

    def _grammar_mask(self, gkey: tuple) -> np.ndarray:
        """Tokens whose RBSP bits continue the slice grammar of some alternative."""
        first, z, states = gkey
        ok = None
        for gs in states:
            if gs is None:
                return np.ones(self.tokens.vocab_size, bool)  # a non-slice alternative
            m = (self.grammar.body_ok(gs[0], opener=False) if first
                 else self.grammar.mask(gs[0], gs[1], z))
            ok = m if ok is None else ok | m
        return ok

    def _grammar_check(self, gkey: tuple | None):
        """``_grammar_mask(gkey)[token_id]`` as a function of ``token_id`` (stepping that
        token only), or None when the grammar allows every token here."""
        if gkey is None:
            return None
        first, z, states = gkey
        if any(gs is None for gs in states):
            return None  # a non-slice alternative
        if first:
            return self._grammar_mask(gkey).__getitem__
        checks = [self.grammar.token_check(gs[0], gs[1], z) for gs in states]
        if len(checks) == 1:
            return checks[0]
        return lambda token_id: any(c(token_id) for c in checks)

    def _opener_key(self, e: Expect) -> tuple:
        """The pattern key of a NAL that may open next, with its grammar key."""
        gk = None
        if self.grammar is not None and e.kind == "slice":
            gk = self.grammar.automaton(e.fields, e.header)[0]
        return _pattern_key(e) + (gk,)

    # ------------------------------------------------------------------ masks
    def _part_entry(self, key: tuple) -> Callable[[int], bool]:
        """``_part(key)[token_id]`` as a function of ``token_id``: the cached part's
        lookup, or for a header-pattern part not cached yet, the entry computed from
        that token's bytes alone (a pattern part costs 0.1-0.3 ms for the whole
        vocabulary, and a stream's patterns rarely repeat: the next slice's
        first_mb_in_slice differs). Equal to the part by construction of the same rules
        (checked against it in the tests)."""
        T = self.tokens
        got = T.parts.get(key)
        if got is not None:
            return got.__getitem__
        if key[0] == "c" and len(key) == 2:  # no pattern: cheap, and it repeats
            return self._part(key).__getitem__
        one = self._token_entry(key)
        calls = 0

        def entry(token_id: int) -> bool:
            # a walk that checks many tokens here is cheaper with the whole part
            nonlocal one, calls
            calls += 1
            if calls == PART_AFTER_CHECKS:
                one = self._part(key).__getitem__
            return one(token_id)

        return entry

    def _token_entry(self, key: tuple) -> Callable[[int], bool]:
        """The header-pattern part ``key``'s entry for one token, from its bytes alone
        (see :meth:`_part_entry`)."""
        T = self.tokens
        tb, special = T.token_bytes, T.special
        if key[0] == "c":
            state, pos, pats = key[1], key[2], key[3]
            if state < 0:
                return T.no_tokens.__getitem__
            pay = T.pay_ok[state]

            def cont(token_id: int) -> bool:
                return bool(pay[token_id] and not special[token_id]) and any(
                    _matches(tb[token_id], mask, value, pos, exact)
                    for mask, value, exact, _ in pats)

            return cont
        z, pats = key[1], key[2]

        def opens(token_id: int) -> bool:
            if special[token_id]:
                return False
            zeros, lz = int(T.zeros[token_id]), int(T.lz[token_id])
            for mask, value, exact, sc, gk in pats:
                if zeros > 0 and z + zeros <= sc - 1:
                    return True
                if (T.lead1[token_id] and z + lz == sc - 1 and T.body_ok[token_id]
                        and _matches(tb[token_id][lz + 1:], mask, value, 0, exact)
                        and (gk is None or self.grammar.body_ok_token(gk, True, token_id))):
                    return True
            return False

        return opens

    def _part(self, key) -> np.ndarray:
        """The allowed tokens of one kind, cached: ``("c", state, [pos, patterns])``
        payload continuing the open NAL; ``("o", z, patterns)`` start-code zeros and
        tokens opening the next NAL."""
        T = self.tokens
        V = T.vocab_size
        if key is None:
            return T.no_tokens
        got = T.parts.get(key)
        if got is not None:
            return got
        if len(T.parts) >= MASK_CACHE_SIZE:
            T.parts.clear()
        if key[0] == "c":
            s = key[1]
            ok = T.pay_ok[s].copy() if s >= 0 else np.zeros(V, bool)
            if len(key) > 2:
                pos, pats = key[2], key[3]
                hit = np.zeros(V, bool)
                for mask, value, exact, _ in pats:
                    hit |= T.match(False, mask, value, pos, exact)
                ok &= hit
        else:
            z = key[1]
            ok = np.zeros(V, bool)
            for mask, value, exact, sc, gk in key[2]:
                ok |= (T.zeros > 0) & (z + T.zeros <= sc - 1)
                opens = (T.lead1 & (z + T.lz == sc - 1) & T.body_ok
                         & T.match(True, mask, value, 0, exact))
                if gk is not None:
                    opens &= self.grammar.body_ok(gk, opener=True)
                ok |= opens
        ok &= ~T.special
        T.parts[key] = ok
        return ok
