"""The slice data check: does one slice decode, as the only macroblock of a 16x16 picture?

:class:`SliceDecodeCheck` decodes a slice's data with libavcodec
(``err_detect=explode+aggressive``) in a test picture (:class:`MiniDecoder`); any error,
a concealed (corrupt) frame, a missing frame, or bits left after the macroblock fail it.

**Why a one-macroblock picture is a faithful test.** With ``slice_max_mbs=1`` every
macroblock is its own slice, and H.264 treats macroblocks of other slices as
unavailable: for intra prediction (modes and samples), for the CAVLC ``nC`` context of
coefficient tokens, and for motion vector prediction. A macroblock at address ``k``
therefore parses and predicts exactly as the only macroblock of a 1x1 picture, where
the neighbours are unavailable because they are outside the picture. What changes when
the slice moves to address 0 is the length of ``first_mb_in_slice`` (ue(v)), which
would shift the bit alignment that ``pcm_alignment_zero_bit`` (I_PCM) depends on; the
test SPS compensates with a longer ``frame_num`` (log2_max_frame_num + 0, 2, 4 or 6
bits), so the slice data starts at the same bit position modulo 8. Motion vectors
pointing outside the 16x16 reference are legal (unrestricted MVs) and clamp, as they do
at the real picture's edges. The test decoders keep 3 reference frames (decoded
candidates slide through them), so any ``ref_idx`` the header allows is present.
Consequently a slice accepted here decodes without error in the real picture, and
``mb_skip_run`` > 1 (a run into the next slice's macroblock) or trailing bits are
rejected (stricter than the real decoder needs, never looser than x264 writes).
"""

from __future__ import annotations

import functools

import av
import av.error

from codeclm.errors import DecodeError

from . import nal as nalmod
from .bits import (
    SliceFields,
    compose_slice_header,
    nal_bytes,
    rewrite_sps,
    ue_len,
)
from .profile import AvcProfile
from .stream_plan import StreamFacts, stream_facts


def header_fields(f: SliceFields) -> tuple:
    """The slice header fields a test picture keeps (all but ``first_mb`` and
    ``frame_num``, which it replaces): with the data bits and their alignment, what a
    verdict depends on, and with the test ``frame_num``, what its header bits do."""
    return (f.nal_byte, f.slice_type, f.pps_id, f.idr_pic_id, f.num_ref_override, f.dec_ref,
            f.qp_delta, f.deblock)


class MiniDecoder:
    """A libavcodec H.264 decoder for 16x16 test pictures with a given log2_max_frame_num.

    ``idr=False``: primed with a flat IDR picture and three P_Skip pictures, so three
    short-term references are always held; each accepted candidate (a reference
    picture) slides through them; after a failed one it is primed again (the IDR
    flushes whatever the failure left). ``idr=True``: every candidate is an IDR picture
    (a failed one leaves nothing behind: tested)."""

    def __init__(self, facts: StreamFacts, log2: int, idr: bool):
        self.facts, self.log2, self.idr = facts, log2, idr
        self.sps = rewrite_sps(facts.sps_nal, log2_max_frame_num=log2, width_mbs=1, height_mbs=1)
        self.ctx = None
        self.primed = False
        self.frame_num = 0
        self.primes = 0
        self._headers: dict[tuple, tuple[int, int]] = {}  # test header bits, by fields
        f = facts
        prime = [(f.slice_fields("idr", 0, 0, 0, 0), f.intra_data)]
        prime += [
            (f.slice_fields("p", 0, k, None, k), f.skip_data) for k in range(1, f.max_refs + 1)
        ]
        self._prime = [
            nalmod.START_CODE
            + nal_bytes(fd.nal_byte, compose_slice_header(fd, log2, 0, fd.frame_num), data)
            for fd, data in prime
        ]

    def _open(self) -> None:
        ctx = av.CodecContext.create("h264", "r")
        ctx.thread_count = 1
        ctx.thread_type = "NONE"
        ctx.options = {"err_detect": "crccheck+bitstream+buffer+explode+aggressive"}
        self.ctx, self.head = ctx, nalmod.join_annexb([self.sps, self.facts.pps_nal])

    def _prime_refs(self) -> None:
        """Decode the flat IDR and P_Skip pictures: three fresh references."""
        for attempt in range(2):
            if self.ctx is None:
                self._open()
            if all(self._send(p) is None for p in self._prime):
                self.primed, self.frame_num = True, len(self._prime)
                self.primes += 1
                return
            self.ctx = None  # the context itself is unusable: open a new one
        raise DecodeError("the verifier's test decoder rejects canonical slices")

    def _send(self, payload: bytes) -> str | None:
        """Decode one packet holding one picture; None if clean, else the reason."""
        payload, self.head = self.head + payload, b""
        try:
            frames = self.ctx.decode(av.Packet(payload))
        except av.error.FFmpegError as e:
            return f"decoder error ({e})"
        if len(frames) != 1:
            return f"decoder returned {len(frames)} frames"
        if frames[0].is_corrupt:
            return "decoder concealed errors"
        return None

    def check(self, fields: SliceFields, data: tuple[int, int]) -> str | None:
        """Decode the slice moved to macroblock 0 (with the decoder's next frame_num);
        None if clean, else the reason."""
        if self.idr:
            if self.ctx is None:
                self._open()
        elif not self.primed:
            self._prime_refs()
        fn = 0 if self.idr else self.frame_num
        key = header_fields(fields) + (fn,)
        header = self._headers.get(key)
        if header is None:
            if len(self._headers) > 4096:
                self._headers.clear()
            header = self._headers[key] = compose_slice_header(fields, self.log2, 0, fn)
        reason = self._send(nalmod.START_CODE + nal_bytes(fields.nal_byte, header, data))
        if not self.idr:
            if reason is None:
                self.frame_num = (self.frame_num + 1) % (1 << self.log2)
            else:
                self.primed = False  # the failed picture may have entered the references
        return reason


#: verdicts :class:`SliceDecodeCheck` remembers before it starts afresh
VERDICT_MEMO_SIZE = 16384


class SliceDecodeCheck:
    """Decodes one slice's data as the only macroblock of a 16x16 picture (see the
    module docstring). ``check(fields, data)`` -> None if it decodes cleanly, else the
    reason. Eight decoders at most: IDR / non-IDR x four frame_num widths.

    Verdicts are memoized: whether a slice decodes depends on its syntax alone (the
    test decoder, whatever it decoded before, always holds the references any
    ``ref_idx`` can name, and sample values never make a decode fail), so a slice whose
    header fields (all but ``first_mb`` and ``frame_num``, which the test picture
    replaces), data bits and bit alignment equal an earlier one's gets that verdict
    without a decode. A generated clip repeats many slices (a still region is the same
    P_Skip slice in every picture): over the bundled model's seeds 0-9 x 16 frames, 256
    checks a clip held 36-124 distinct slices. ``decodes`` / ``memo_hits`` count both
    kinds of answer."""

    def __init__(self, facts: StreamFacts):
        self.facts = facts
        self._decoders: dict[tuple[int, bool], MiniDecoder] = {}
        self._verdicts: dict[tuple, str | None] = {}
        self.decodes = 0
        self.memo_hits = 0

    def _log2_for(self, first_mb: int) -> int:
        """A frame_num width that keeps the slice data's bit alignment when
        first_mb_in_slice becomes 0: (ue length - 1) more bits, modulo 8."""
        log2 = self.facts.log2_max_frame_num + (ue_len(first_mb) - 1) % 8
        return log2 - 8 if log2 > 16 else log2

    def forget_verdicts(self) -> None:
        """Empty the verdict memo (what a fresh process starts with; for benchmarks)."""
        self._verdicts.clear()

    def check(self, fields: SliceFields, data: tuple[int, int]) -> str | None:
        key = (self._log2_for(fields.first_mb), fields.is_idr)
        vkey = (key, header_fields(fields), data)
        if vkey in self._verdicts:
            self.memo_hits += 1
            return self._verdicts[vkey]
        dec = self._decoders.get(key)
        if dec is None:
            dec = self._decoders[key] = MiniDecoder(self.facts, key[0], key[1])
        reason = dec.check(fields, data)
        self.decodes += 1
        if len(self._verdicts) >= VERDICT_MEMO_SIZE:
            self._verdicts.clear()
        self._verdicts[vkey] = reason
        return reason


@functools.cache
def decode_check_for(profile: AvcProfile) -> SliceDecodeCheck:
    """The :class:`SliceDecodeCheck` of ``profile`` (one per process and profile)."""
    return SliceDecodeCheck(stream_facts(profile))
