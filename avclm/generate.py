"""Streaming video generation: a generator of events, one NAL unit at a time.

``generate_video(model, frames)`` samples H.264 bytes with :mod:`codeclm.generation` and
yields, per batch row:

- :class:`NalEvent` for every NAL unit of the output stream, the moment it is final:
  first the prompt's (the profile's SPS/PPS, plus the prompt video's pictures if one
  is given), then each generated slice. A NAL is known to be complete when the token
  that opens the next one is sampled, so each NAL comes one token after its last byte.
- :class:`FrameEvent` for every picture, decoded by :class:`avclm.stream.StreamDecoder`
  (tolerant) right after its last slice's NAL event: 1 to ``mbs_per_frame`` NALs
  after the picture starts, never waiting for the next picture.
- one :class:`DoneEvent` with the statistics at the end.

Exactly ``frames`` pictures are generated per row (after the prompt's). The stream stays
decodable however poor the model is: every generated NAL must pass the slice gate
(:mod:`avclm.slice_gate`: the right macroblock, picture type and frame_num), is sampled
again if it does not (KV-cache rollback), and after ``max_attempts`` tries is replaced
by the canonical slice for that position (a grey or skipped macroblock). EOS is never
sampled (the session runs with ``allow_eos=False``): the frame count ends the video. Any
:class:`Gate` can take the gate's place (``gate_factory=``). The run is a
:class:`VideoGenerator` (one method per job: prompt, verdict, emit, complete a picture,
continue a row); :func:`generate_video` builds one and yields its events.

**Verification (default).** Each row's gate is an :class:`~avclm.verifier.NalVerifier`
(x264's exact slice header, canonical emulation prevention, and slice data that decodes
under ``err_detect=explode``), and the row samples under an
:class:`~avclm.nal_masks.NalConstraint` (token masks: no start-code emulation, x264's
start codes, NAL and slice headers, and the macroblock layer through
:mod:`avclm.slice_automaton`, so sampled slices pass the data check as drawn; the
verifier stays as the safety net). ``verify=False`` (``--no-verify``) keeps only the
header gate: the paper's free sampling, for ablations. Per-row counts: ``stats["verify"]``.

**Longer than one context window.** When a row's context has less room left than
``reserve`` tokens after a picture ends (default: 1.5x the largest P picture so far, as
nearly every picture after the first is one; the largest picture while there is none), or
its window already holds ``window`` frames (default: the profile's clip length, the
longest stream the model saw in training), the row continues from a fresh prompt: its
last decoded frame re-encoded with the canonical codec (SPS, PPS and one IDR picture).
``continuation="seamless"`` (the default) writes nothing for it: the output's last
picture stands for it, and the model's later slices get the output's frame numbers
(:mod:`avclm.renumber`); the decoder applies the model's P pictures to the frame itself,
which differs from what the model saw by one re-encoding. ``continuation="idr"`` writes
the re-encoded IDR picture to the output too (not its SPS/PPS: the same bytes), as the
next frame: the decoder then holds exactly the references the model was prompted with,
at the price of a repeated frame per continuation (a one-frame freeze, slightly softer;
it counts toward ``frames``); it is also what a seamless continuation falls back to when
the output holds no reference picture yet. Either way the stream stays decodable. Cost
per continuation: one re-encode of one frame (a few ms on the tiny profile) and one
prefill of the IDR picture. Only one frame of history survives a continuation (with
``"idr"`` more frames would have to be replayed in the output; seamless prompts of the
last 2-4 output frames re-encoded were tried and did not steady the bundled model's
clips, docs/photo-model.md). A re-encoded IDR picture too large
for the context (a busy frame and a small ``--context``) is kept whole (in the output
with ``"idr"``), but the prompt keeps only its latest slices that leave room for a NAL
(:meth:`VideoGenerator.continuation_ids`). After a continuation whose context filled
before any NAL ended (a whole IDR picture that left a few tokens free), the next one's
prompt is fitted that way too; should that one bring no NAL either, the next picture is
filled with canonical slices, so every run ends.

If the context fills inside a picture (a picture larger than the room left, typically
the first picture after a continuation: a busy re-encoded IDR prompt can take most of
the context), the NAL being sampled is dropped and the row *resumes* the same picture
(:mod:`avclm.resume`): its cache restarts from SPS/PPS, the picture's reference where
the output holds it as an IDR picture (the exact bytes; otherwise none, see there why),
and the latest slices of the open picture that fit, leaving room for a NAL of
``max_nal_tokens``. Nothing is written for it (the output cannot take an IDR picture
inside a picture) and the gate keeps its state, so the masks force the next
macroblock's slice header of the same picture; the output is the same bytes whatever
the prompt held, so it stays decodable. Cost per resume: one prefill. Only a context
too small for one NAL after the SPS/PPS (a resume that brings no NAL) fills the next
slice with the gate's canonical slice.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from codeclm.errors import ConfigError, InputError
from codeclm.generation.loading import load_model
from codeclm.generation.sampling_config import SamplingConfig
from codeclm.generation.session import ACCEPT, Constraint, Reject, Session, Stop, Verdict
from codeclm.generation.stats import DoneEvent
from codeclm.guidance import conditioned_forward
from codeclm.labels import with_class
from codeclm.streaming import Unit

from . import nal as nalmod
from .nal_masks import NalConstraint
from .renumber import OutputNumbering, check_continuation
from .slice_gate import SliceGate
from .verifier import NalVerifier, VerifyStats

#: tokens one NAL (one macroblock) may take before it is given up: an I_PCM macroblock
#: is 384 bytes, and a token is at least one byte
DEFAULT_MAX_NAL_TOKENS = 400
#: tries per slice before the canonical slice is put in its place
DEFAULT_MAX_ATTEMPTS = 4


@dataclasses.dataclass(frozen=True)
class NalEvent:
    """One NAL unit of row ``row``'s output, Annex-B (with its start code).

    ``index``: NAL number in that row's output stream. ``frame``: the output frame it
    belongs to (None for SPS/PPS). ``source``: "prompt", "model", "replacement" (the
    gate's canonical slice) or "continuation" (re-encoded IDR slice, written by
    ``continuation="idr"``). A slice's bytes are the output's: its frame_num follows the
    output's numbering (:mod:`avclm.renumber`)."""

    data: bytes
    index: int
    row: int = 0
    frame: int | None = None
    source: str = "model"


@dataclasses.dataclass(frozen=True)
class FrameEvent:
    """Output frame ``index`` of row ``row``: ``image`` (H, W, 3) uint8 RGB. ``source``:
    "prompt", "model" or "continuation"; ``damaged``: the decoder concealed errors in
    it; ``latency_s``: from the sampling of the token that completed its last NAL to
    the decoded image; ``tokens``: tokens sampled so far by the whole batch;
    ``rejected``: NAL units sampled again so far (failed verification), whole batch."""

    index: int
    image: np.ndarray
    row: int = 0
    source: str = "model"
    damaged: bool = False
    latency_s: float = 0.0
    tokens: int = 0
    rejected: int = 0


Event = NalEvent | FrameEvent | DoneEvent


class Gate(Protocol):
    """What :class:`VideoGenerator` asks of a row's gate: :class:`~avclm.slice_gate.SliceGate`,
    :class:`~avclm.verifier.NalVerifier` (the default) or a ``gate_factory``'s.

    ``frames``: complete pictures observed; ``in_picture``: a picture is open;
    ``fits(nal)``: a generated NAL (no start code) may come next; ``observe(nal)`` moves
    past a good NAL and says whether it completed a picture; ``replacement()``: a
    canonical slice (with start code) that fits next; ``restart()``: an IDR picture
    follows; ``note_truncated()``: a NAL was cut off at ``max_nal_tokens``; ``stats``: the
    verification counts (None for a gate that does not verify)."""

    frames: int
    stats: VerifyStats | None

    @property
    def in_picture(self) -> bool: ...

    def fits(self, nal: bytes) -> bool: ...

    def observe(self, nal: bytes) -> bool: ...

    def replacement(self) -> bytes: ...

    def restart(self) -> None: ...

    def note_truncated(self) -> None: ...


@dataclasses.dataclass
class RowState:
    """One batch row's output side: its gate, decoder and counts."""

    gate: Gate
    decoder: object  # avclm.stream.StreamDecoder (tolerant)
    target: int  # pictures the gate observes when the row ends: prompt frames, generated
    #   ones, and the re-encoded IDR pictures of seamless continuations (not in the output)
    numbering: OutputNumbering  # the model's slices renumbered for the output
    nals: int = 0
    frames_out: int = 0
    last_image: np.ndarray | None = None
    frame_start_tokens: int = 0  # kept tokens when the current picture started
    max_frame_tokens: int = 0  # tokens of the largest picture so far
    max_p_tokens: int = 0  # of the largest P picture so far (0: none yet)
    window_start: int = 0  # gate.frames when the current context window began
    picture_done: bool = False  # a picture completed during this step
    replaced: int = 0
    continuations: int = 0
    damaged_seen: int = 0
    open_slices: list[bytes] = dataclasses.field(default_factory=list)  # the open picture's
    previous_slices: list[bytes] = dataclasses.field(default_factory=list)  # the one before
    #   (both as the model's side of the stream has them: what a resume prompts with)
    resumes: int = 0  # restarts inside a picture (avclm.resume)
    nals_at_restart: int = -1  # ``nals`` at the last restart (a resume or a continuation)
    fit_next: bool = False  # the next continuation prompts with its IDR picture fitted
    fitted_restart: bool = False  # the last continuation was asked to fit its prompt
    dropped_tokens: int = 0  # tokens of NALs left open when the context filled

    def note_picture(self, tokens: int, idr: bool) -> None:
        """A picture of ``tokens`` tokens (an IDR picture if ``idr``) was completed."""
        self.max_frame_tokens = max(self.max_frame_tokens, tokens)
        if not idr:
            self.max_p_tokens = max(self.max_p_tokens, tokens)

    def next_picture_tokens(self) -> int:
        """What the next picture may take: the largest P picture so far (nearly every
        picture after the first is one; an IDR picture mostly opens a clip), or the
        largest picture while there is no P picture yet."""
        return self.max_p_tokens or self.max_frame_tokens


@dataclasses.dataclass(frozen=True)
class VideoSettings:
    """What :func:`generate_video` was asked for (its keyword arguments, same meanings)."""

    frames: int
    prompt: object = None
    prompt_frames: int | None = None
    batch: int = 1
    context: int | None = None
    max_nal_tokens: int = DEFAULT_MAX_NAL_TOKENS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    reserve: int | None = None
    window: int | None = None
    verify: bool = True
    gate_factory: Callable[[object], Gate] | None = None
    constraint_factory: Callable[[object, Gate], Constraint | None] | None = None
    slice_grammar: bool = True
    class_name: str | None = None
    cfg_scale: float | None = None
    continuation: str = "seamless"
    finish_early: bool = True

    def check(self) -> None:
        """Range checks (typed errors) before any model is loaded."""
        check_continuation(self.continuation)
        if self.frames < 1:
            raise ConfigError(f"--frames must be >= 1, got {self.frames}")
        if self.batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch}")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")


def prompt_units(profile, prompt=None, prompt_frames: int | None = None) -> tuple[list[bytes], int]:
    """The prompt as NAL units with start codes, and how many pictures it holds.

    No prompt: the profile's SPS and PPS (constant bytes), 0 pictures. A prompt video
    (path, or canonical Annex-B bytes) is encoded with the canonical codec and cut after
    its first ``prompt_frames`` pictures (default: all of them, at most one clip)."""
    from .codec import canonical_header, encode_video

    if prompt is None:
        if prompt_frames:
            raise ConfigError("--prompt-frames needs --prompt")
        return nalmod.split_annexb_units(canonical_header(profile))[1], 0
    data = (bytes(prompt) if isinstance(prompt, (bytes, bytearray))
            else encode_video(prompt, profile))
    units = nalmod.split_annexb_units(data)[1]
    head, pictures, last_mb = [], [], None
    for u in units:
        nal = nalmod.strip_start_code(u)
        if not nal:
            continue
        if nalmod.is_picture_nal(nal):
            mb = nalmod.first_mb_in_slice(nal)
            if not pictures or mb == 0 or (last_mb is not None and mb <= last_mb):
                pictures.append([])
            pictures[-1].append(u)
            last_mb = mb
        elif nalmod.nal_type(nal) in nalmod.PARAMETER_SET_TYPES and not pictures:
            head.append(u)
    what = "the prompt" if isinstance(prompt, (bytes, bytearray)) else str(prompt)
    if not pictures:
        raise InputError(f"{what}: the prompt video has no pictures")
    k = len(pictures) if prompt_frames is None else prompt_frames
    if not 1 <= k <= len(pictures):
        raise ConfigError(f"--prompt-frames {k}: {what} has {len(pictures)} frames at "
                          f"{profile.fps} fps (profile {profile.name!r})")
    return head + [u for p in pictures[:k] for u in p], k


def generate_video(model, frames: int, *, prompt=None, prompt_frames: int | None = None,
                   batch: int = 1, config: SamplingConfig | None = None,
                   device: str | None = None, dtype=None, context: int | None = None,
                   max_nal_tokens: int = DEFAULT_MAX_NAL_TOKENS,
                   max_attempts: int = DEFAULT_MAX_ATTEMPTS, reserve: int | None = None,
                   window: int | None = None, verify: bool = True, gate_factory=None,
                   constraint_factory=None, slice_grammar: bool = True,
                   class_name: str | None = None, cfg_scale: float | None = None,
                   continuation: str = "seamless", finish_early: bool = True) -> Iterator[Event]:
    """Generate ``frames`` new frames per row; yield :class:`NalEvent` / :class:`FrameEvent`
    as they are made and a final :class:`DoneEvent`.

    ``model``: a model directory, None (bundled model) or a ``LoadedModel``.
    ``prompt``: a video path or canonical Annex-B bytes; its first ``prompt_frames``
    pictures are written to the output first (the generated P pictures predict from
    them). ``context``: tokens of KV cache per row (default and maximum: the model's
    context). ``reserve``: tokens that must be left after a picture for the row to go on
    without a continuation (see the module docstring). ``window``: frames per context
    window, prompt included (default: the profile's clip length, what the model was
    trained on; beyond it a model trained on whole clips would want to end the clip).
    ``verify``: NAL verification
    and token masks (default) or the header gate only. ``slice_grammar=False``
    (``--no-slice-grammar``): verification and header masks without the macroblock-layer
    masks (an ablation; slices then pass by resampling). ``gate_factory(profile)`` and
    ``constraint_factory(tokenizer, gate)`` override the gate and the per-row sampler
    constraint. ``class_name``, ``cfg_scale``: a class-conditional model's class and the
    classifier-free guidance scale (:func:`codeclm.guidance.conditioned_forward`; every
    prompt and continuation gets the class token after ``<s>``). ``continuation``:
    ``"seamless"`` (nothing written for a continuation) or ``"idr"`` (its re-encoded
    frame written too); see the module docstring. ``finish_early``: where the model's draw
    would end a slice that cannot end yet, finish it the plainest way and write the
    model's start code after it (default;
    :meth:`~avclm.nal_masks.NalConstraint.finish_early`; filters-first draws only) or,
    False (``--no-finish-early``), draw the model's next allowed token. Stats: ``frames`` (per
    row, generated), ``tokens_sampled``, ``tokens_per_s``, ``rejected`` and ``replaced``
    NALs, ``continuations``, ``resumes`` (restarts inside a picture), ``tokens_dropped``
    (sampled for a NAL that the context's end cut off, then sampled again), ``frame_latency_ms``
    (mean, max), ``seed``, ``wall_s``, ``verify`` (per row: the gate's
    :class:`~avclm.verifier.VerifyStats` as a dict, or None).
    """
    settings = VideoSettings(frames, prompt, prompt_frames, batch, context, max_nal_tokens,
                             max_attempts, reserve, window, verify, gate_factory,
                             constraint_factory, slice_grammar, class_name, cfg_scale,
                             continuation, finish_early)
    settings.check()
    t_start = time.perf_counter()
    lm = load_model(model, "h264", device, dtype)
    yield from VideoGenerator(lm, settings, config or SamplingConfig(), t_start).run()


class VideoGenerator:
    """One :func:`generate_video` run: a :class:`Session` over ``settings.batch`` rows, each
    with a :class:`Gate` judging its NALs and a :class:`RowState`; :meth:`run` yields the
    events. ``lm``: a loaded ``h264`` model; ``t_start``: when the run began (``wall_s``)."""

    def __init__(self, lm, settings: VideoSettings, config: SamplingConfig,
                 t_start: float | None = None):
        from .stream import StreamDecoder

        s = self.settings = settings
        self.lm, self.profile, self.tok = lm, lm.profile, lm.tokenizer
        self.t_start = time.perf_counter() if t_start is None else t_start
        self.gate_factory = s.gate_factory or (NalVerifier if s.verify else SliceGate)
        self.window = s.window or self.profile.frames
        if self.window < 2:
            raise ConfigError(f"a context window must hold at least 2 frames, got {self.window}")
        self.head, self.n_prompt_frames = prompt_units(self.profile, s.prompt, s.prompt_frames)
        check_context(lm, self.head, s.context)
        target = self.n_prompt_frames + s.frames
        sps = nalmod.parse_sps(next(
            n for n in map(nalmod.strip_start_code, self.head)
            if nalmod.nal_type(n) == nalmod.NAL_SPS))
        self.rows = [RowState(self.gate_factory(self.profile),
                              StreamDecoder(self.profile, strict=False, max_frames=target + 1),
                              target, OutputNumbering(sps)) for _ in range(s.batch)]
        self.latencies: list[float] = []
        kv, self.class_id = conditioned_forward(lm.weights, self.tok, s.batch, s.class_name,
                                                s.cfg_scale, s.context)
        self.session = Session(kv, self.tok, s.batch, config, modality="h264", allow_eos=False,
                               max_unit_tokens=s.max_nal_tokens, on_unit=self.judge)
        self.prompt_ids = with_class(self.tok.encode(b"".join(self.head), bos=True, eos=False),
                                     self.class_id)
        self.session.start([self.prompt_ids] * s.batch,
                           [self.constraint_for(st) for st in self.rows])

    def constraint_for(self, st: RowState) -> Constraint | None:
        """The row's token masks: None without verification (or with a gate that has no
        stream plan)."""
        if self.settings.constraint_factory is not None:
            return self.settings.constraint_factory(self.tok, st.gate)
        if self.settings.verify and isinstance(st.gate, NalVerifier):
            return NalConstraint(self.tok, st.gate, slice_grammar=self.settings.slice_grammar,
                                 finish_early=self.settings.finish_early)
        return None

    def judge(self, r: int, unit: Unit) -> Verdict:
        """The session's unit verdict: a NAL that fits is kept, one that does not is sampled
        again, and after ``max_attempts`` tries the gate's canonical slice replaces it."""
        st, tokens = self.rows[r], self.session.rows[r].tokens
        if len(tokens) >= self.session.kv.max_length:
            st.dropped_tokens += len(tokens) - unit.first_token
            return Stop(keep=False)  # context full inside a NAL: drop it; after_step resumes
        nal = nalmod.strip_start_code(unit.data)
        if not unit.truncated and nal and st.gate.fits(nal):
            st.picture_done |= st.gate.observe(nal)
            return Stop(keep=True) if st.gate.frames >= st.target else ACCEPT
        if unit.truncated:
            st.gate.note_truncated()
        if unit.attempt + 1 < self.settings.max_attempts:
            return Reject()
        rep = st.gate.replacement()
        st.picture_done |= st.gate.observe(nalmod.strip_start_code(rep))
        st.replaced += 1
        return Reject(replacement=rep)

    def emit(self, r: int, unit: bytes, source: str,
             t_token: float | None = None) -> Iterator[Event]:
        """The NAL event of ``unit`` (with start code, as the model's side of the stream
        has it; written renumbered for the output), then the frame events it completes."""
        st = self.rows[r]
        picture = self.track_slices(st, unit)
        out = st.numbering.output_unit(unit) if picture else unit
        yield NalEvent(out, st.nals, r, st.frames_out if picture else None, source)
        st.nals += 1
        for image in st.decoder.feed(out):
            latency = time.perf_counter() - t_token if t_token is not None else 0.0
            if source in ("model", "replacement"):
                self.latencies.append(latency)
            st.last_image = image
            damaged = st.decoder.damaged_frames > st.damaged_seen
            st.damaged_seen = st.decoder.damaged_frames
            kind = "model" if source == "replacement" else source
            yield FrameEvent(st.frames_out, image, r, kind, damaged, latency,
                             self.session.stats.sampled, self.session.stats.rejected)
            st.frames_out += 1

    @staticmethod
    def track_slices(st: RowState, unit: bytes) -> bool:
        """Keep ``unit`` among the open picture's slices if it is a picture NAL (a new
        picture starts at macroblock 0), for a resume; returns whether it is one."""
        nal = nalmod.strip_start_code(unit)
        if not nalmod.is_picture_nal(nal):
            return False
        if nalmod.first_mb_in_slice(nal) == 0:
            st.previous_slices, st.open_slices = st.open_slices, []
        st.open_slices.append(unit)
        return True

    def emit_prompt(self) -> Iterator[Event]:
        """Every row's prompt NALs (the gates observe its pictures)."""
        for r, st in enumerate(self.rows):
            for u in self.head:
                nal = nalmod.strip_start_code(u)
                if nalmod.is_picture_nal(nal):
                    st.gate.observe(nal)
                yield from self.emit(r, u, "prompt")
            st.frame_start_tokens = len(self.prompt_ids)

    def fill_slice(self, r: int) -> Iterator[Event]:
        """Put the gate's canonical slice at the next position of row ``r``'s open picture."""
        st = self.rows[r]
        rep = st.gate.replacement()
        st.gate.observe(nalmod.strip_start_code(rep))
        st.replaced += 1
        yield from self.emit(r, rep, "replacement")

    def resume_picture(self, r: int) -> Iterator[Event]:
        """The context filled inside a picture: restart row ``r``'s cache from a prompt that
        goes on with the same picture (:mod:`avclm.resume`: SPS/PPS, the reference where
        the output holds it as an IDR picture, the picture's latest slices), leaving room
        for a NAL of ``max_nal_tokens``; nothing is written to the output. Only when the
        last resume brought no NAL (a context too small for one) is the next slice filled
        in with the gate's canonical slice."""
        from .codec import canonical_header
        from .resume import reference_units

        st, session = self.rows[r], self.session
        if st.nals == st.nals_at_restart:
            yield from self.fill_slice(r)
            if not st.gate.in_picture:
                yield from self.continue_row(r)
                return
        header = nalmod.split_annexb_units(canonical_header(self.profile))[1]
        reference = reference_units(st.previous_slices, st.open_slices)
        ids = self.fitted_prompt(header, reference, st.open_slices)
        session.restart(r, ids, self.constraint_for(st))
        st.frame_start_tokens = len(ids) - sum(self.unit_tokens(u) for u in st.open_slices)
        st.nals_at_restart = st.nals
        st.resumes += 1

    def fitted_prompt(self, header: list[bytes], reference: list[bytes],
                      slices: list[bytes]) -> list[int]:
        """Prompt tokens (BOS, class token) of the units :func:`avclm.resume.resume_units`
        keeps of ``header``, ``reference`` and the latest ``slices``, leaving room in the
        context for a NAL of ``max_nal_tokens``."""
        from .resume import resume_units

        fixed = len(with_class([self.tok.bos_id], self.class_id))
        budget = self.session.kv.max_length - fixed - self.settings.max_nal_tokens - 1
        prompt = resume_units(header, reference, slices, self.unit_tokens, budget)
        return with_class(self.tok.encode(b"".join(prompt.units), bos=True, eos=False),
                          self.class_id)

    def unit_tokens(self, unit: bytes) -> int:
        """Tokens of one NAL unit (merges never cross a start code: units add up)."""
        return len(self.tok.encode(unit, bos=False, eos=False))

    def reference_image(self, st: RowState) -> np.ndarray:
        """The row's last output frame, or mid-grey before the first one."""
        if st.last_image is not None:
            return st.last_image
        return np.full((self.profile.height, self.profile.width, 3), 128, np.uint8)

    def complete_picture(self, r: int) -> Iterator[Event]:
        """Fill the open picture of row ``r`` with the gate's canonical slices."""
        while self.rows[r].gate.in_picture:
            yield from self.fill_slice(r)

    def continue_row(self, r: int) -> Iterator[Event]:
        """Fresh prompt from the last frame (re-encoded IDR, also written to the output)."""
        from .codec import encode_frames

        st, session = self.rows[r], self.session
        yield from self.complete_picture(r)
        if st.gate.frames >= st.target:
            session.finish(r)
            return
        units = nalmod.split_annexb_units(
            encode_frames([self.reference_image(st)], self.profile))[1]
        st.gate.restart()
        seamless = self.settings.continuation == "seamless" and st.numbering.can_reanchor
        for u in units:
            nal = nalmod.strip_start_code(u)
            if nalmod.is_picture_nal(nal):
                st.gate.observe(nal)
                if seamless:  # the output's last picture stands for it
                    self.track_slices(st, u)
                else:
                    yield from self.emit(r, u, "continuation")
        if seamless:
            st.numbering.reanchor()
            st.target += 1  # the gate counts the IDR picture; the output does not
        st.continuations += 1
        st.window_start = st.gate.frames - 1  # the re-encoded frame opens the new window
        if st.gate.frames >= st.target:
            session.finish(r)
            return
        ids = self.continuation_ids(units, fit=st.fit_next)
        st.fitted_restart, st.fit_next = st.fit_next, False
        session.restart(r, ids, self.constraint_for(st))
        st.frame_start_tokens = len(session.rows[r].tokens)
        st.nals_at_restart = st.nals

    def continuation_ids(self, units: list[bytes], fit: bool = False) -> list[int]:
        """The continuation prompt's tokens: all of ``units`` (SPS, PPS, the re-encoded IDR
        picture) when they leave ``reserve`` tokens (default 1) of the context free and
        ``fit`` is False, else SPS/PPS and the IDR picture's latest slices that leave room
        for a NAL of ``max_nal_tokens`` (the choice :func:`avclm.resume.resume_units` makes
        for a resumed picture): a busy frame's re-encode can outgrow a small
        ``--context``, and the output is the same either way. ``fit``: the last
        continuation's whole prompt left too little room for any NAL to end."""
        ids = with_class(self.tok.encode(b"".join(units), bos=True, eos=False), self.class_id)
        if not fit and len(ids) + (self.settings.reserve or 1) < self.session.kv.max_length:
            return ids
        picture = [nalmod.is_picture_nal(nalmod.strip_start_code(u)) for u in units]
        return self.fitted_prompt([u for u, p in zip(units, picture) if not p], [],
                                  [u for u, p in zip(units, picture) if p])

    def after_step(self, r: int) -> Iterator[Event]:
        """Row ``r`` after a step: finish it at its frame count, resume its open picture when
        the context filled inside it, or continue it from a fresh prompt when the context
        filled between pictures or a finished picture leaves too little room."""
        st, row = self.rows[r], self.session.rows[r]
        if st.gate.frames >= st.target:
            self.session.finish(r)
            return
        if row.done:  # the context filled (EOS is never sampled)
            st.picture_done = False
            if st.gate.in_picture:
                yield from self.resume_picture(r)
                return
            # The last continuation brought no NAL before the context filled: continue
            # again with its IDR picture fitted; if it was fitted already, open the next
            # picture with a canonical slice (continue_row completes it): every run ends.
            if st.nals == st.nals_at_restart:
                if st.fitted_restart:
                    yield from self.fill_slice(r)
                else:
                    st.fit_next = True
            yield from self.continue_row(r)
            return
        if st.picture_done:
            from .resume import is_idr_picture

            st.note_picture(len(row.tokens) - st.frame_start_tokens,
                            is_idr_picture(st.open_slices))
            st.frame_start_tokens = len(row.tokens)
            room = self.session.kv.max_length - len(row.tokens)
            reserve = self.settings.reserve
            if (room < (reserve if reserve is not None else 1.5 * st.next_picture_tokens())
                    or st.gate.frames - st.window_start >= self.window):
                yield from self.continue_row(r)
        st.picture_done = False

    def run(self) -> Iterator[Event]:
        """Yield every event of the run, the :class:`DoneEvent` last."""
        yield from self.emit_prompt()
        while self.session.active:
            events = self.session.step()
            t_token = time.perf_counter()
            for r, unit in events.units:
                yield from self.emit(r, unit.data, "replacement" if unit.replaced else "model",
                                     t_token)
            for r in range(len(self.rows)):
                yield from self.after_step(r)
        yield DoneEvent(self.stats())

    def stats(self) -> dict:
        """The :class:`DoneEvent`'s stats (see :func:`generate_video`)."""
        rows, lat = self.rows, self.latencies
        stats = self.session.stats.as_dict()
        stats.update(
            frames=[st.frames_out - self.n_prompt_frames for st in rows],
            replaced=sum(st.replaced for st in rows),
            continuations=sum(st.continuations for st in rows),
            resumes=sum(st.resumes for st in rows),
            tokens_dropped=sum(st.dropped_tokens for st in rows),
            damaged_frames=sum(st.decoder.damaged_frames for st in rows),
            prompt_frames=self.n_prompt_frames,
            frame_latency_ms=(1e3 * float(np.mean(lat)) if lat else 0.0,
                              1e3 * float(np.max(lat)) if lat else 0.0),
            context=self.session.kv.max_length,
            verify=[st.gate.stats.as_dict() if st.gate.stats is not None else None
                    for st in rows],
            wall_s=time.perf_counter() - self.t_start,
        )
        return stats


def check_context(lm, head: list[bytes], context: int | None) -> None:
    """Refuse a context (``--context``, at most the model's) that cannot hold the prompt
    and one picture after it, or a continuation prompt (one IDR picture) and one more:
    the same rule for every ``--frames``, checked before anything is sampled."""
    from .codec import encode_frames

    profile, tok = lm.profile, lm.tokenizer
    limit = min(context or lm.weights.config.max_position_embeddings,
                lm.weights.config.max_position_embeddings)
    grey = np.full((profile.height, profile.width, 3), 128, np.uint8)
    picture = len(tok.encode(encode_frames([grey], profile), bos=True, eos=False))
    prompt = len(tok.encode(b"".join(head), bos=True, eos=False))
    need = max(prompt, picture) + picture
    if limit < need:
        raise ConfigError(f"a context of {limit} tokens is too short: this model and profile "
                          f"need at least {need} (a prompt of {max(prompt, picture)} tokens "
                          f"and one picture)")


def output_paths(output: str | os.PathLike, batch: int) -> list[Path]:
    """One output path per row: ``OUT`` for a batch of 1, else ``OUT_<row>.<ext>``."""
    p = Path(output)
    if batch == 1:
        return [p]
    return [p.with_name(f"{p.stem}_{r}{p.suffix}") for r in range(batch)]
