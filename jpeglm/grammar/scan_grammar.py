"""The public scan grammar: one JPEG-LM stream followed token by token.

:class:`JpegScanGrammar` holds only the position in one stream (core, DC predictor
index, MCUs completed); the tables and mask caches live in the shared
:class:`~.compiled.CompiledScanGrammar`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from codeclm.errors import CodecLMError, ProfileError

from ..profile import SUBSAMPLING
from .automaton import PH_AC, PH_ACX, PH_DC, PH_DCX, PH_PAD, S_END, S_FIN, S_HDR, S_MARK
from .compiled import CompiledScanGrammar, compile_grammar
from .entries import MaskEntry
from .header import ScanLayout, marker_segments, parse_layout, pillow_streams
from .plain import plain_mcu_bytes

#: a restart marker or EOI inside a token's bytes
_MARKER = re.compile(rb"\xff[\xd0-\xd7\xd9]")


class GrammarError(CodecLMError, ValueError):
    """A token or byte that the JPEG scan grammar does not allow at this point."""


class JpegScanGrammar:
    """Incremental token-level grammar of one JPEG-LM stream (see :mod:`jpeglm.grammar`).

    Constraint API (the sampler hook): ``allowed_mask()``, ``advance(token_id)``,
    ``done``, ``copy()``; also ``reset()``, ``feed_bytes()``, ``state()``/``restore()``,
    ``mcu_index``, ``is_allowed()``.

    Args:
        width, height: image size in pixels.
        vocab: ``vocab[i]`` = bytes of token ``i``; None for special tokens other than
            ``eos_id`` (never allowed). Must contain all 256 single bytes.
        eos_id: the end-of-sequence token, allowed only after EOI (and then only it).
        quality, subsampling: Pillow settings (subsampling 2 = 4:2:0) used to build the
            header and find the DC quantizers; ignored where ``header``/``tables`` given.
        header: the constant modeled header (SOI .. SOS) to enforce; default: what Pillow
            writes for a grey image with these settings.
        tables: DQT segments (e.g. Pillow ``streamtype=1`` output) for the DC bounds.
        include_header: False to start right after the header (at the first MCU).
        save_kwargs: exact Pillow ``save`` arguments (``from_profile`` passes the
            profile's), overriding ``quality``/``subsampling``.

    Building the first grammar of a layout takes about a second (automaton tables),
    the first of each vocabulary about another (token tables); both are cached
    per process. Memory: about 30 MB shared + 25 MB per 320-token vocabulary (a few
    times more while building), plus the mask cache.
    """

    def __init__(self, width: int, height: int, vocab: Sequence[bytes | None], eos_id: int,
                 *, quality: int = 25, subsampling: int = 2, header: bytes | None = None,
                 tables: bytes | None = None, include_header: bool = True,
                 save_kwargs: dict | None = None):
        if header is None or tables is None:
            hdr_stream, tab_stream = pillow_streams(width, height, quality, subsampling,
                                                    save_kwargs)
            if header is None:
                header = hdr_stream[:marker_segments(hdr_stream)[1]]
            if tables is None:
                tables = tab_stream
        layout = parse_layout(bytes(header), tables)
        if (layout.width, layout.height) != (width, height):
            raise ProfileError(f"header is {layout.width}x{layout.height}, "
                               f"expected {width}x{height}")
        if not include_header:
            layout = ScanLayout(b"", layout.width, layout.height, layout.blocks,
                                layout.n_mcus, layout.dc_bound)
        self._compiled = compile_grammar(layout, vocab, eos_id)
        self.reset()

    @classmethod
    def from_profile(cls, profile, vocab: Sequence[bytes | None], eos_id: int,
                     **kw) -> JpegScanGrammar:
        """Build from a profile object with ``.width``/``.height``; a
        :class:`jpeglm.profile.JpegProfile` also supplies quality, subsampling and
        its exact Pillow settings."""
        if hasattr(profile, "pillow_save_kwargs"):
            kw.setdefault("save_kwargs", profile.pillow_save_kwargs(2))
        sub = getattr(profile, "subsampling", 2)
        if isinstance(sub, str):
            if sub not in SUBSAMPLING:
                raise ProfileError(f"unknown chroma subsampling {sub!r}; expected one of "
                                   f"{sorted(SUBSAMPLING)}")
            sub = SUBSAMPLING[sub][0]   # Pillow's code
        kw.setdefault("quality", getattr(profile, "quality", 25))
        kw.setdefault("subsampling", sub)
        return cls(profile.width, profile.height, vocab, eos_id, **kw)

    # -- state -----------------------------------------------------------------------
    #: whether :meth:`finish_early` answers (False: the sampler draws on instead)
    finishes_early = True
    #: the tokenizer's ``bytes -> token ids`` (no BOS/EOS): where set, :meth:`finish_early`
    #: writes its finish as the tokenizer would (its merges); None: as single bytes
    encode = None

    def reset(self) -> None:
        """Back to the start of a stream (before the header)."""
        self._core = self._compiled.start_core
        self._pred = self._compiled.luma_dc_bound   # predictor index of a zero DC
        self._mcus_done = 0
        self._cur_entry = None        # entry of the current core, once looked up

    def state(self) -> tuple:
        """A hashable snapshot ``(core, predictor index, MCUs completed)``."""
        return (self._core, self._pred, self._mcus_done)

    def restore(self, state: tuple) -> None:
        """Go back to a :meth:`state` snapshot."""
        self._core, self._pred, self._mcus_done = state
        self._cur_entry = None

    def copy(self) -> JpegScanGrammar:
        """An independent grammar at the same position (sharing the compiled tables)."""
        twin = JpegScanGrammar.__new__(JpegScanGrammar)
        twin._compiled, twin._core, twin._pred = self._compiled, self._core, self._pred
        twin._mcus_done, twin._cur_entry = self._mcus_done, self._cur_entry
        twin.finishes_early, twin.encode = self.finishes_early, self.encode
        return twin

    @property
    def compiled(self) -> CompiledScanGrammar:
        return self._compiled

    @property
    def vocab_size(self) -> int:
        return self._compiled.vocab_size

    @property
    def n_mcus(self) -> int:
        return self._compiled.n_mcus

    @property
    def mcu_index(self) -> int:
        """MCUs completed (an MCU counts once its RST, or for the last its EOI, is written)."""
        return self._mcus_done

    @property
    def done(self) -> bool:
        """True once EOI is written (only EOS may follow) or EOS was emitted."""
        return self._core[0] in (S_END, S_FIN)

    @property
    def finished(self) -> bool:
        """True once EOS was emitted."""
        return self._core[0] == S_FIN

    # -- constraint API --------------------------------------------------------------
    def _entry(self) -> MaskEntry:
        """The mask entry of the current core (looked up once per position)."""
        entry = self._cur_entry
        if entry is None:
            entry = self._compiled.entries.get(self._core)
            if entry is None:
                entry = self._compiled.entry(self._core)
            self._cur_entry = entry
        return entry

    def allowed_mask(self) -> torch.Tensor:
        """BoolTensor [vocab_size]: True for tokens that may come next. Cached and
        shared between calls: do not modify it in place. After EOI/EOS only EOS."""
        comp = self._compiled
        comp.stats["mask_calls"] += 1
        entry = self._entry()
        if entry.dep_ids is None:
            return entry.base
        return comp.row(entry, self._pred, comp.mcu_class(self._mcus_done)
                        if entry.dep_classes is not None else -1)

    def allowed_bias(self) -> torch.Tensor:
        """FloatTensor [vocab_size] (float32): 0 where :meth:`allowed_mask` is True,
        -inf elsewhere, so ``logits + allowed_bias()`` masks in one cheap op. Cached
        and shared: do not modify it in place."""
        comp = self._compiled
        comp.stats["mask_calls"] += 1
        entry = self._cur_entry
        if entry is None:
            entry = self._entry()
        elif entry.dep_ids is None and entry.biases is not None:  # the common case
            return entry.biases[None]
        return comp.bias(entry, self._pred, comp.mcu_class(self._mcus_done)
                         if entry.dep_classes is not None else -1)

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` [..., n] with disallowed tokens at -inf (columns past the
        grammar's vocabulary too); a new tensor."""
        vocab_size = self._compiled.vocab_size
        if (logits.shape[-1] == vocab_size and logits.dtype == torch.float32
                and logits.device.type == "cpu"):
            return logits + self.allowed_bias()
        mask = self.allowed_mask().to(logits.device)
        if logits.shape[-1] != vocab_size:
            full = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
            n = min(vocab_size, logits.shape[-1])
            full[:n] = mask[:n]
            mask = full
        return logits.masked_fill(~mask, float("-inf"))

    def is_allowed(self, token_id: int) -> bool:
        """Whether ``token_id`` may come next."""
        comp = self._compiled
        move = comp.transition(self._entry(), int(token_id))
        return move is not None and bool(self._move_fits(comp, move))

    def finish_early(self, token_id: int) -> list[int] | None:
        """The tokens that finish the open MCU the plainest way
        (:func:`~jpeglm.grammar.plain.plain_mcu_bytes`: every block left a flat block of
        the running DC) when ``token_id``, the model's own draw, holds a marker (a
        restart marker or EOI) but the MCU's blocks are not all coded, followed by the
        model's marker: ``token_id`` itself where it is allowed after them, else its
        longest prefix token that is allowed and holds a marker (none: the model draws
        again); else None. The finish (with the marker) is tokenized by :attr:`encode`
        where set and its tokens fit, else written as single bytes (then the marker).
        The tokens are checked: each is allowed in turn and only the marker may follow
        the finish. Does not advance the grammar (the
        :class:`codeclm.generation.session.Session` forces them where the row draws
        filters-first)."""
        comp = self._compiled
        sid, k, ff = self._core
        if (not self.finishes_early or sid <= 0 or ff or sid == comp.pad_state
                or not 0 <= token_id < comp.vocab_size):
            return None
        data = comp.vocab[token_id]
        if not data or not _MARKER.search(data):
            return None
        finish = plain_mcu_bytes(comp.automaton, sid, k, self._pred)
        if not finish:
            return None
        ids = [comp.byte_ids[b] for b in finish]
        twin = self._after(ids)
        if twin is None or twin._core[0] != comp.pad_state or twin._core[2]:
            return None
        marker = next((t for t in [token_id, *comp.prefixes(token_id)]
                       if _MARKER.search(comp.vocab[t]) and twin.is_allowed(t)), None)
        ids = ids if marker is None else ids + [marker]
        if self.encode is not None:  # the same bytes as the tokenizer writes them
            tail = comp.vocab[marker] if marker is not None else b""
            for merged in (self.encode(finish + tail), self.encode(finish) + ids[len(finish):]):
                if self._after(merged) is not None:
                    return merged
        return ids

    def _after(self, ids: list[int]) -> JpegScanGrammar | None:
        """A copy advanced over the tokens ``ids``, or None if one of them is not
        allowed in turn."""
        twin = self.copy()
        for tok in ids:
            if not twin.is_allowed(tok):
                return None
            twin.advance(tok)
        return twin

    def _move_fits(self, comp: CompiledScanGrammar, move: tuple) -> bool:
        """Whether ``move``'s predictor and MCU-class conditions hold here."""
        return ((move[7] == comp.all_preds or (move[7] >> self._pred) & 1)
                and (move[8] == comp.all_classes
                     or (move[8] >> comp.mcu_class(self._mcus_done)) & 1))

    def advance(self, token_id: int) -> None:
        """Consume one token; raises :class:`GrammarError` if it is not allowed."""
        tok = token_id if type(token_id) is int else int(token_id)
        comp = self._compiled
        entry = self._cur_entry
        move = comp.transition(entry if entry is not None else self._entry(), tok)
        if move is None or (move[7] != comp.all_preds and not (move[7] >> self._pred) & 1) or (
                move[8] != comp.all_classes
                and not (move[8] >> comp.mcu_class(self._mcus_done)) & 1):
            if self._core[0] == S_FIN and tok == comp.eos_id:
                return
            raise GrammarError(self._why(tok))
        sid, k, rel, ff, pred_mode, pred_value, markers, _, _ = move
        if rel:
            k += self._core[1]
        if pred_mode == 1:
            self._pred += pred_value
        elif pred_mode == 2:
            self._pred = pred_value
        self._mcus_done += markers
        self._core = (sid, k, ff)
        self._cur_entry = None

    def feed_bytes(self, data: bytes) -> None:
        """Advance over raw bytes (e.g. a prompt). Raises :class:`GrammarError` at the
        first byte that cannot continue a valid stream; the state is then left after
        the last valid byte."""
        comp = self._compiled
        for pos, byte in enumerate(bytes(data)):
            after = comp.step_byte(self._core, self._pred, self._mcus_done, byte)
            if after is None:
                raise GrammarError(f"byte {pos} ({byte:#04x}) cannot continue the stream at "
                                   f"{self.describe()}")
            self._core, self._pred, self._mcus_done = after
            self._cur_entry = None

    def describe(self) -> str:
        """Where the grammar is, for error messages."""
        sid, k, ff = self._core
        if sid > 0:
            phase, blk, _, _ = self._compiled.automaton.states[sid]
            name = {PH_DC: "DC code", PH_DCX: "DC extra bits", PH_AC: "AC code",
                    PH_ACX: "AC extra bits", PH_PAD: "end of MCU data"}[phase]
            where = f"MCU {self._mcus_done}, {name}"
            if blk >= 0:
                where += f", block {blk}, k={k}"
            return where + (" (stuffed 00 due)" if ff else "")
        if sid <= S_HDR:
            return f"header byte {S_HDR - sid}"
        return {S_MARK: f"marker after MCU {self._mcus_done}", S_END: "after EOI",
                S_FIN: "after EOS"}[sid]

    def _why(self, tok: int) -> str:
        """Why token ``tok`` is not allowed here (the :class:`GrammarError` message)."""
        comp = self._compiled
        if not 0 <= tok < comp.vocab_size:
            return f"token {tok} is outside the vocabulary of {comp.vocab_size}"
        data = comp.vocab[tok]
        if tok == comp.eos_id:
            return f"EOS is only allowed after EOI (at {self.describe()})"
        if data is None:
            return f"special token {tok} is never allowed in a JPEG stream"
        return (f"token {tok} (bytes {data.hex()}) cannot continue the stream at "
                f"{self.describe()}")
