"""A header-level gate for generated slices, and known-good slices to put in their place.

Until the NAL verifier (which checks whole slices and masks tokens) is plugged in,
``avclm generate`` keeps its output structurally decodable with this gate: a generated
NAL unit is accepted only if it is a slice whose header continues the stream exactly as
the canonical profile would: the next macroblock (every macroblock is its own slice),
the right picture type (an IDR to open a coded video sequence), ``frame_num`` one more
than the previous picture's (0 after an IDR), the stream's PPS, nal_ref_idc != 0.
Its slice *data* is not checked: damaged macroblocks are concealed by the decoder.

When the model cannot produce an acceptable slice in a few tries, :meth:`SliceGate.
replacement` gives a canonical one for the expected position: a mid-grey intra
macroblock in an IDR picture, a P_Skip macroblock (copy from the reference) in a P
picture. Both are cut from a libx264 encode of a static grey clip with the profile's
own settings, with ``frame_num`` / ``idr_pic_id`` rewritten, so their headers carry
exactly what x264 writes at that point of a stream (reference counts included).

Every accepted or replaced slice therefore starts the macroblock the decoder expects;
pictures are whole, and frames are counted by slices: a picture ends with the slice of
its last macroblock.
"""

from __future__ import annotations

import functools

import numpy as np

from codeclm.errors import DecodeError

from . import nal as nalmod
from .bits import parse_slice_header, rewrite_slice
from .profile import AvcProfile

#: P pictures in the template clip: 1, 2 and 3 reference frames available (refs=3)
TEMPLATE_P_FRAMES = 3


@functools.cache
def template_pictures(profile: AvcProfile) -> tuple[bytes, tuple[tuple[bytes, ...], ...]]:
    """(SPS NAL, ((IDR slices), (P slices with 1 ref), (2 refs), (3 refs))) with start codes."""
    from .codec import encode_frames

    grey = np.full((profile.height, profile.width, 3), 128, np.uint8)
    n = min(TEMPLATE_P_FRAMES + 1, profile.frames)
    _, units = nalmod.split_annexb_units(encode_frames([grey] * n, profile))
    sps = next(u for u in units if nalmod.nal_type(nalmod.strip_start_code(u)) == nalmod.NAL_SPS)
    slices = [u for u in units if nalmod.is_picture_nal(nalmod.strip_start_code(u))]
    per = profile.mbs_per_frame
    pictures = tuple(tuple(slices[i:i + per]) for i in range(0, len(slices), per))
    return nalmod.strip_start_code(sps), pictures


class SliceGate:
    """Tracks where a stream stands (macroblock, picture, frame_num) and judges slices.

    ``observe(nal)`` moves past a NAL known to be good (prompt, accepted, replacement);
    ``fits(nal)`` says whether a generated NAL may come next; ``replacement()`` is a
    canonical slice (with start code) for the expected position. ``frames`` counts
    complete pictures observed. It does not verify slice data: ``stats`` is None and
    ``note_truncated`` counts nothing (:class:`~avclm.verifier.NalVerifier` does both).
    """

    stats = None  #: verification counts (a verifying gate's VerifyStats)

    def __init__(self, profile: AvcProfile):
        self.profile = profile
        sps_nal, self._pictures = template_pictures(profile)
        self.sps = nalmod.parse_sps(sps_nal)
        self.mbs = profile.mbs_per_frame
        self.max_frame_num = 1 << self.sps.log2_max_frame_num
        self.pps_id = parse_slice_header(
            nalmod.strip_start_code(self._pictures[0][0]), self.sps).pps_id
        self.frames = 0
        self.next_mb = 0
        self.need_idr = True
        self.since_idr = 0  # pictures since the last IDR (the IDR itself is 0)
        self.frame_num = -1  # of the last (or open) picture
        self._open: nalmod.SliceHeader | None = None  # first slice of the open picture

    @property
    def in_picture(self) -> bool:
        return self.next_mb > 0

    def restart(self) -> None:
        """A new coded video sequence follows (the next picture must be an IDR)."""
        self.next_mb, self._open, self.need_idr = 0, None, True

    def note_truncated(self) -> None:
        """A generated NAL was cut off at ``max_nal_tokens`` (nothing to count here)."""

    def fits(self, nal: bytes) -> bool:
        """Whether slice NAL ``nal`` (no start code) may come next."""
        try:
            h = parse_slice_header(nal, self.sps)
        except DecodeError:
            return False
        if (h.nal_type not in (nalmod.NAL_SLICE, nalmod.NAL_IDR) or h.pps_id != self.pps_id
                or h.nal_ref_idc == 0 or h.first_mb != self.next_mb):
            return False
        kind = h.slice_type % 5
        if self._open is not None:  # continuing a picture
            o = self._open
            return (h.nal_type == o.nal_type and h.frame_num == o.frame_num
                    and h.idr_pic_id == o.idr_pic_id
                    and (kind == nalmod.SLICE_I if h.is_idr
                         else kind in (nalmod.SLICE_P, nalmod.SLICE_I)))
        if h.is_idr:
            return h.frame_num == 0 and kind == nalmod.SLICE_I
        return (not self.need_idr and kind in (nalmod.SLICE_P, nalmod.SLICE_I)
                and h.frame_num == (self.frame_num + 1) % self.max_frame_num)

    def observe(self, nal: bytes) -> bool:
        """Move past a good NAL (no start code); parameter sets are ignored. Returns True
        if it completed a picture."""
        if not nalmod.is_picture_nal(nal):
            return False
        h = parse_slice_header(nal, self.sps)
        if self._open is None:
            self._open = h
            self.frame_num = h.frame_num
            if h.is_idr:
                self.since_idr, self.need_idr = 0, False
            else:
                self.since_idr += 1
        self.next_mb = h.first_mb + 1
        if self.next_mb >= self.mbs:
            self.frames += 1
            self.next_mb, self._open = 0, None
            return True
        return False

    def replacement(self) -> bytes:
        """A canonical slice (with start code) that fits next."""
        mb = self.next_mb
        if self._open is not None:
            idr = self._open.is_idr
            frame_num, idr_pic_id = self._open.frame_num, self._open.idr_pic_id
            since = self.since_idr
        else:
            idr = self.need_idr
            frame_num = 0 if idr else (self.frame_num + 1) % self.max_frame_num
            idr_pic_id = 0
            since = 0 if idr else self.since_idr + 1
        picture = self._pictures[0] if idr else self._pictures[min(since, len(self._pictures) - 1)]
        unit = picture[mb]
        m = nalmod.START_CODE_RE.match(unit)
        start = unit[:m.end()]
        nal = rewrite_slice(unit[m.end():], self.sps, frame_num, idr_pic_id if idr else None)
        return start + nal
