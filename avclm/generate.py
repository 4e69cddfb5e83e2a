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
sampled: the frame count ends the video. A verifier can take the gate's place
(``gate=``; any object with ``fits``, ``observe``, ``replacement``, ``restart``,
``frames`` and ``in_picture`` as in :class:`~avclm.slice_gate.SliceGate`).

**Verification (default).** Each row's gate is an :class:`~avclm.verifier.NalVerifier`
(x264's exact slice header, canonical emulation prevention, and slice data that decodes
under ``err_detect=explode``), and the row samples under an
:class:`~avclm.verifier.NalConstraint` (token masks: no start-code emulation, x264's
start codes, NAL and slice headers, and the macroblock layer through
:mod:`avclm.slice_automaton`, so sampled slices pass the data check as drawn; the
verifier stays as the safety net). ``verify=False`` (``--no-verify``) keeps only the
header gate: the paper's free sampling, for ablations. Per-row counts: ``stats["verify"]``.

**Longer than one context window.** When a row's context has less room left than
``reserve`` tokens after a picture ends (default: 1.5x the largest picture so far), or
its window already holds ``window`` frames (default: the profile's clip length, the
longest stream the model saw in training), the row continues from a fresh prompt: its last decoded frame re-encoded with the canonical
codec (SPS, PPS and one IDR picture). The model's next P pictures predict from the
*re-encoded* picture, not from the one already in the output, so that IDR picture is
also written to the output (its SPS/PPS are not: they are the same bytes), as the next
frame: the decoder then holds exactly the references the model was prompted with and the
stream stays decodable. Cost per continuation: one re-encode of one frame (a few ms on
the tiny profile), one prefill of the IDR picture, and one output frame that repeats the
previous one at re-encoding quality (a one-frame freeze, slightly softer; it counts
toward ``frames``). Only one frame of history survives a continuation: more frames
would have to be replayed in the output too. If a picture still outgrows the room
left, its remaining macroblocks are completed with canonical slices first.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from codeclm.errors import ConfigError, InputError
from codeclm.generation.loading import load_model
from codeclm.generation.sampling import SamplingConfig
from codeclm.generation.session import ACCEPT, Reject, Session, Stop

from . import nal as nalmod
from .slice_gate import SliceGate
from .verifier import NalConstraint, NalVerifier

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
    gate's canonical slice) or "continuation" (re-encoded IDR slice)."""

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


@dataclasses.dataclass(frozen=True)
class DoneEvent:
    """The end: ``stats`` holds per-run counts and timings (see :func:`generate_video`)."""

    stats: dict


Event = NalEvent | FrameEvent | DoneEvent


@dataclasses.dataclass
class _Row:
    gate: SliceGate
    decoder: object
    target: int  # output frames this row ends with (prompt frames + generated)
    nals: int = 0
    frames_out: int = 0
    last_image: np.ndarray | None = None
    frame_start_tokens: int = 0  # kept tokens when the current picture started
    max_frame_tokens: int = 0
    window_start: int = 0  # gate.frames when the current context window began
    picture_done: bool = False  # a picture completed during this step
    replaced: int = 0
    continuations: int = 0
    damaged_seen: int = 0


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
    data = bytes(prompt) if isinstance(prompt, (bytes, bytearray)) else encode_video(prompt, profile)
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
    if not pictures:
        raise InputError("the prompt video has no pictures")
    k = len(pictures) if prompt_frames is None else prompt_frames
    if not 1 <= k <= len(pictures):
        raise ConfigError(f"--prompt-frames {k}: the prompt has {len(pictures)} frames")
    return head + [u for p in pictures[:k] for u in p], k


def generate_video(model, frames: int, *, prompt=None, prompt_frames: int | None = None,
                   batch: int = 1, config: SamplingConfig | None = None,
                   device: str | None = None, dtype=None, context: int | None = None,
                   max_nal_tokens: int = DEFAULT_MAX_NAL_TOKENS,
                   max_attempts: int = DEFAULT_MAX_ATTEMPTS, reserve: int | None = None,
                   window: int | None = None, verify: bool = True, gate_factory=None,
                   constraint_factory=None) -> Iterator[Event]:
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
    and token masks (default) or the header gate only. ``gate_factory(profile)`` and
    ``constraint_factory(tokenizer, gate)`` override the gate and the per-row sampler
    constraint. Stats: ``frames`` (per row, generated), ``tokens_sampled``,
    ``tokens_per_s``, ``rejected`` and ``replaced`` NALs, ``continuations``,
    ``frame_latency_ms`` (mean, max), ``seed``, ``wall_s``, ``verify`` (per row: the
    gate's :class:`~avclm.verifier.VerifyStats` as a dict, or None).
    """
    if frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {frames}")
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    if max_attempts < 1:
        raise ConfigError(f"max_attempts must be >= 1, got {max_attempts}")
    t_start = time.perf_counter()
    config = config or SamplingConfig()
    lm = load_model(model, "h264", device, dtype)
    profile, tok = lm.profile, lm.tokenizer
    from .codec import encode_frames
    from .stream import StreamDecoder

    if gate_factory is None:
        gate_factory = NalVerifier if verify else SliceGate
    window = window or profile.frames
    if window < 2:
        raise ConfigError(f"a context window must hold at least 2 frames, got {window}")
    head, n_prompt_frames = prompt_units(profile, prompt, prompt_frames)
    check_context(lm, head, context)
    target = n_prompt_frames + frames
    rows = [_Row(gate_factory(profile), StreamDecoder(profile, strict=False, max_frames=target + 1),
                 target) for _ in range(batch)]
    latencies: list[float] = []

    def constraint_for(st: _Row):
        """The row's token masks: None without verification (or with a gate that has no
        stream plan)."""
        if constraint_factory is not None:
            return constraint_factory(tok, st.gate)
        if verify and isinstance(st.gate, NalVerifier):
            return NalConstraint(tok, st.gate)
        return None

    def judge(r: int, unit) -> object:
        st = rows[r]
        if len(session.rows[r].tokens) >= session.kv.max_length:
            return Stop(keep=False)  # context full inside a NAL: drop it, continue the row
        nal = nalmod.strip_start_code(unit.data)
        if not unit.truncated and nal and st.gate.fits(nal):
            st.picture_done |= st.gate.observe(nal)
            return Stop(keep=True) if st.gate.frames >= st.target else ACCEPT
        if unit.truncated and hasattr(st.gate, "note_truncated"):
            st.gate.note_truncated()
        if unit.attempt + 1 < max_attempts:
            return Reject()
        rep = st.gate.replacement()
        st.picture_done |= st.gate.observe(nalmod.strip_start_code(rep))
        st.replaced += 1
        return Reject(replacement=rep)

    session = Session(lm.weights, tok, batch, config, max_length=context, modality="h264",
                      min_new_tokens=1 << 62, max_unit_tokens=max_nal_tokens, on_unit=judge)
    prompt_ids = tok.encode(b"".join(head), bos=True, eos=False)
    session.start([prompt_ids] * batch, [constraint_for(st) for st in rows])

    def emit(r: int, unit: bytes, source: str, t_token: float | None = None) -> Iterator[Event]:
        st = rows[r]
        nal = nalmod.strip_start_code(unit)
        picture = nalmod.is_picture_nal(nal)
        yield NalEvent(unit, st.nals, r, st.frames_out if picture else None, source)
        st.nals += 1
        for image in st.decoder.feed(unit):
            latency = time.perf_counter() - t_token if t_token is not None else 0.0
            if source in ("model", "replacement"):
                latencies.append(latency)
            st.last_image = image
            damaged = st.decoder.damaged_frames > st.damaged_seen
            st.damaged_seen = st.decoder.damaged_frames
            kind = "model" if source == "replacement" else source
            yield FrameEvent(st.frames_out, image, r, kind, damaged, latency, session.stats.sampled,
                             session.stats.rejected)
            st.frames_out += 1

    def complete_picture(r: int) -> Iterator[Event]:
        st = rows[r]
        while st.gate.in_picture:
            rep = st.gate.replacement()
            st.gate.observe(nalmod.strip_start_code(rep))
            st.replaced += 1
            yield from emit(r, rep, "replacement")

    def continue_row(r: int) -> Iterator[Event]:
        """Fresh prompt from the last frame (re-encoded IDR, also written to the output)."""
        st = rows[r]
        yield from complete_picture(r)
        if st.gate.frames >= st.target:
            session.finish(r)
            return
        image = st.last_image if st.last_image is not None else np.full(
            (profile.height, profile.width, 3), 128, np.uint8)
        units = nalmod.split_annexb_units(encode_frames([image], profile))[1]
        st.gate.restart()
        for u in units:
            nal = nalmod.strip_start_code(u)
            if nalmod.is_picture_nal(nal):
                st.gate.observe(nal)
                yield from emit(r, u, "continuation")
        st.continuations += 1
        st.window_start = st.gate.frames - 1  # the re-encoded frame opens the new window
        if st.gate.frames >= st.target:
            session.finish(r)
            return
        ids = tok.encode(b"".join(units), bos=True, eos=False)
        if len(ids) + (reserve or 1) >= session.kv.max_length:
            raise ConfigError(f"a context of {session.kv.max_length} tokens cannot hold the "
                              f"{len(ids)}-token continuation prompt and a picture")
        session.restart(r, ids, constraint_for(st))
        st.frame_start_tokens = len(ids)

    for r in range(batch):
        for u in head:
            nal = nalmod.strip_start_code(u)
            if nalmod.is_picture_nal(nal):
                rows[r].gate.observe(nal)
            yield from emit(r, u, "prompt")
        rows[r].frame_start_tokens = len(prompt_ids)

    while session.active:
        events = session.step()
        t_token = time.perf_counter()
        for r, unit in events.units:
            yield from emit(r, unit.data, "replacement" if unit.replaced else "model", t_token)
        for r, st in enumerate(rows):
            row = session.rows[r]
            if st.gate.frames >= st.target:
                session.finish(r)
                continue
            if row.done:  # the context filled inside a picture (EOS is never sampled)
                yield from continue_row(r)
                continue
            if st.picture_done:
                used = len(row.tokens) - st.frame_start_tokens
                st.max_frame_tokens = max(st.max_frame_tokens, used)
                st.frame_start_tokens = len(row.tokens)
                room = session.kv.max_length - len(row.tokens)
                if (room < (reserve if reserve is not None else 1.5 * st.max_frame_tokens)
                        or st.gate.frames - st.window_start >= window):
                    yield from continue_row(r)
            st.picture_done = False

    stats = session.stats.as_dict()
    stats.update(
        frames=[st.frames_out - n_prompt_frames for st in rows],
        tokens_sampled=stats["sampled"],
        replaced=sum(st.replaced for st in rows),
        continuations=sum(st.continuations for st in rows),
        damaged_frames=sum(st.decoder.damaged_frames for st in rows),
        prompt_frames=n_prompt_frames,
        frame_latency_ms=(1e3 * float(np.mean(latencies)) if latencies else 0.0,
                          1e3 * float(np.max(latencies)) if latencies else 0.0),
        context=session.kv.max_length,
        verify=[st.gate.stats.as_dict() if hasattr(st.gate, "stats") else None for st in rows],
        wall_s=time.perf_counter() - t_start,
    )
    yield DoneEvent(stats)


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
