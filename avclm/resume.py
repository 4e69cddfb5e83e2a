"""The prompt that lets a row go on with a picture it has half written, once its context
filled inside that picture (used by :meth:`avclm.generate.VideoGenerator.resume_picture`).

The output stream cannot take an IDR picture in the middle of a picture, so nothing of
this prompt is written to the output: the row's cache restarts from it and the row's
gate keeps its state (same picture, next macroblock), so the next slice header is the
one the output needs. The prompt, in stream order:

1. the profile's SPS and PPS;
2. when the open picture is a P picture and it fits: its reference, the last complete
   output frame re-encoded with the canonical codec as an IDR picture. The output's
   decoder predicts from the decoded picture itself, the model from this re-encoding:
   the two differ by one round of re-encoding (the model's view of the reference is
   slightly softer). Decodability does not depend on it: with baseline CAVLC and one
   macroblock per slice, parsing a P slice never reads reference pixels;
3. the open picture's slices written so far, the latest ones that fit (the earliest
   are dropped first). Their headers carry the output's frame_num, which does not
   follow the IDR's 0: a gap the model never saw in training, kept so that the
   slices it continues with match the ones it reads.

``budget``: the tokens the NAL units may take; the caller keeps the rest of the context
free for the NAL to come (at least ``max_nal_tokens``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from . import nal as nalmod


@dataclasses.dataclass(frozen=True)
class ResumePrompt:
    """``units``: NAL units with start codes, in prompt order; ``with_reference``: the
    re-encoded reference picture is among them; ``slices_kept`` / ``slices_dropped``:
    slices of the open picture in the prompt (the latest ones) / left out (the earliest);
    ``tokens``: their token count (by ``cost``)."""

    units: list[bytes]
    with_reference: bool
    slices_kept: int
    slices_dropped: int
    tokens: int


def opens_p_picture(open_slices: Sequence[bytes]) -> bool:
    """Whether the open picture (its slice units so far, with start codes) is a P
    picture, which predicts from the frame before it (not an IDR or I picture)."""
    if not open_slices:
        return False
    nal = nalmod.strip_start_code(open_slices[0])
    return nalmod.nal_type(nal) != nalmod.NAL_IDR and nalmod.slice_type(nal) % 5 == nalmod.SLICE_P


def resume_units(header: Sequence[bytes], reference: Sequence[bytes],
                 open_slices: Sequence[bytes], cost: Callable[[bytes], int],
                 budget: int) -> ResumePrompt:
    """Pick the prompt's units (see the module docstring) within ``budget`` tokens.

    ``header``: SPS and PPS units (always kept, even over budget); ``reference``: the
    re-encoded reference's IDR slice units (empty: none); ``open_slices``: the open
    picture's slice units so far; ``cost(unit)``: its tokens. The reference is kept if it
    fits after the header; then as many of the latest open slices as fit."""
    used = sum(cost(u) for u in header)
    ref_tokens = sum(cost(u) for u in reference)
    with_reference = bool(reference) and used + ref_tokens <= budget
    if with_reference:
        used += ref_tokens
    kept: list[bytes] = []
    for unit in reversed(open_slices):
        c = cost(unit)
        if used + c > budget:
            break
        kept.append(unit)
        used += c
    kept.reverse()
    units = list(header) + (list(reference) if with_reference else []) + kept
    return ResumePrompt(units, with_reference, len(kept), len(open_slices) - len(kept), used)
