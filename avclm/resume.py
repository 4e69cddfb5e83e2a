"""The prompt that lets a row go on with a picture it has half written, once its context
filled inside that picture (used by :meth:`avclm.generate.VideoGenerator.resume_picture`).

Nothing of this prompt is written to the output: the row's cache restarts from it and
the row's gate keeps its state (same picture, next macroblock), so the masks force the
next slice header the output needs. The prompt, in stream order:

1. the profile's SPS and PPS;
2. the open picture's reference, only where the row's own bytes can stand for it:
   the open picture is a P picture and the picture before it is an IDR picture (a
   continuation's re-encoded frame, the first generated picture, or a prompt's), so the
   prompt is exactly the row's history with the P pictures in between left out; else
   none. The row's history is the stream as the model's side has it (a seamless
   continuation's IDR picture is in it though not in the output, and slices carry the
   model's frame numbers, :mod:`avclm.renumber`). Any other reference would have to be
   re-encoded as an IDR picture (frame_num 0) followed by slices whose frame_num is 2 or
   more, a gap the model never saw in training. Measured with the bundled model on
   held-out synthetic clips (6 clips, P pictures 2, 4 and 6, 4-12 of 16 slices given):
   the rest of the picture costs 1.64 bits per byte after such a re-encoded reference,
   1.44 with no reference, 1.32 after the true history. Right after an IDR picture (P
   picture 1): 1.57 after the output's IDR (the true history), 1.58 after it
   re-encoded, 1.63 with no reference.
   An I picture needs no reference. With the bundled model (issue 14's benchmark, 16
   frames, seeds 0-9) every resumed picture was the first after a continuation: 6 of
   11 an I picture, 5 a P picture whose reference (the continuation's IDR picture,
   749-1,007 of the 1,024 tokens) did not fit beside room for a NAL;
3. the open picture's slices written so far, the latest ones that fit (the earliest
   are dropped first), as the model wrote them.

``budget``: the tokens the NAL units may take; the caller keeps the rest of the context
free for the NAL to come (at least ``max_nal_tokens``). Decodability never depends on
what the prompt holds: the output's bytes are the same either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from . import nal as nalmod


@dataclasses.dataclass(frozen=True)
class ResumePrompt:
    """``units``: NAL units with start codes, in prompt order; ``with_reference``: the
    reference picture (the row's own bytes) is among them; ``slices_kept`` / ``slices_dropped``:
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


def is_idr_picture(slices: Sequence[bytes]) -> bool:
    """Whether a picture's slice units (with start codes) are an IDR picture's."""
    return bool(slices) and nalmod.nal_type(nalmod.strip_start_code(slices[0])) == nalmod.NAL_IDR


def reference_units(previous: Sequence[bytes], open_slices: Sequence[bytes]) -> list[bytes]:
    """The prompt's reference (item 2 of the module docstring): ``previous`` (the slice
    units of the picture before the open one, as the model's side has them) when the open picture
    is a P picture and ``previous`` an IDR picture, else none."""
    if opens_p_picture(open_slices) and is_idr_picture(previous):
        return list(previous)
    return []


def resume_units(header: Sequence[bytes], reference: Sequence[bytes],
                 open_slices: Sequence[bytes], cost: Callable[[bytes], int],
                 budget: int) -> ResumePrompt:
    """Pick the prompt's units (see the module docstring) within ``budget`` tokens.

    ``header``: SPS and PPS units (always kept, even over budget); ``reference``: the
    reference picture's slice units (:func:`reference_units`; empty: none);
    ``open_slices``: the open picture's slice units so far; ``cost(unit)``: its tokens.
    The reference is kept if it fits after the header; then as many of the latest open
    slices as fit."""
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
