"""Streaming H.264 decoding: NAL units in, RGB frames out as soon as each picture is whole.

With the canonical profile every macroblock is its own slice, so the last slice of a
picture is the one with ``first_mb_in_slice + 1 == profile.mbs_per_frame``. When it
arrives, the picture's slices (preceded by the SPS/PPS the decoder has not seen yet) go
to libavcodec's h264 decoder as one packet, one thread, and the frame comes straight
back: no one-NAL lag as with the h264 *parser*, which only knows a picture ended
when the next one starts.

Two modes:

- ``strict=True``: any corruption raises :class:`DecodeError`: malformed NAL or slice
  header, an SPS that does not match the profile's size, slices missing, repeated or out
  of order, decoder errors (``err_detect=explode``), a frame the decoder flags as
  corrupt (concealed), or a stream that ends inside a picture.
- ``strict=False`` (tolerant): never raises on bad data. The profile's canonical SPS/PPS
  are used whatever the stream says (they are the same bytes for every canonical
  stream, and a damaged SPS cannot make the decoder allocate a huge picture); damaged
  or incomplete pictures are decoded with libavcodec's error concealment, an
  undecodable one repeats the previous frame (mid grey for the first). Every picture
  gives exactly one frame; ``damaged_frames`` counts those that were not clean.
"""

from __future__ import annotations

import av
import av.error
import numpy as np

from codeclm.errors import DecodeError

from . import nal as nalmod
from .profile import PAPER, AvcProfile

#: frames one decoder produces at most unless told otherwise: 20 clips' worth
DEFAULT_MAX_FRAMES_FACTOR = 20
_IGNORED_TYPES = frozenset({nalmod.NAL_SEI, nalmod.NAL_AUD, nalmod.NAL_END_SEQ,
                            nalmod.NAL_END_STREAM, nalmod.NAL_FILLER})


class StreamDecoder:
    """Feed NAL units one at a time; get each frame (H, W, 3) uint8 RGB the moment its
    picture's last slice arrives.

    ``max_frames`` caps the frames one stream may produce (default 20 clips); past it,
    strict mode raises DecodeError and tolerant mode drops further pictures (counted in
    ``dropped_pictures``).
    """

    def __init__(self, profile: AvcProfile = PAPER, strict: bool = True,
                 max_frames: int | None = None):
        self.profile = profile
        self.strict = strict
        self.max_frames = (
            max_frames if max_frames is not None else DEFAULT_MAX_FRAMES_FACTOR * profile.frames
        )
        #: pictures seen (complete or not), frames returned, frames not decoded cleanly
        self.pictures = 0
        self.frames = 0
        self.damaged_frames = 0
        self.dropped_pictures = 0
        #: NAL units ignored in tolerant mode (unreadable, wrong type, out of range)
        self.skipped_nals = 0
        self._mbs = profile.mbs_per_frame
        self._ctx = None
        self._sps: nalmod.Sps | None = None
        self._sps_id: int | None = None
        self._pps_ids: set[int] = set()
        self._unsent: list[bytes] = []  # parameter sets the decoder has not seen yet
        self._picture: list[bytes] = []
        self._last_mb = -1
        self._key: tuple | None = None  # (frame_num, is_idr, idr_pic_id) of the open picture
        self._ref_idc = 0
        self._prev_ref_fn: int | None = None  # frame_num of the last reference picture
        self._damaged = False
        self._last_frame: np.ndarray | None = None
        self._start_stream()

    def _start_stream(self) -> None:
        """Fresh decoder state: strict mode needs SPS/PPS again; tolerant mode queues
        the canonical ones."""
        self._ctx = self._new_context()
        self._sps, self._sps_id, self._pps_ids = None, None, set()
        self._unsent, self._prev_ref_fn = [], None
        if not self.strict:
            from .codec import canonical_header

            header = nalmod.split_annexb(canonical_header(self.profile))
            self._sps = nalmod.parse_sps(header[0])
            self._unsent = header

    # ------------------------------------------------------------------ public
    def feed(self, unit: bytes) -> list[np.ndarray]:
        """Take one NAL unit (with or without its start code); return the frames it
        completes: one when it is the last slice of a picture, else none (in tolerant
        mode a slice that opens a new picture also returns the unfinished previous one)."""
        nal = nalmod.strip_start_code(bytes(unit))
        if not nal:
            return self._bad("empty NAL unit")
        if nalmod.forbidden_bit(nal):
            return self._bad("NAL unit has forbidden_zero_bit set")
        t = nalmod.nal_type(nal)
        if t in nalmod.PICTURE_NAL_TYPES:
            return self._slice(nal)
        if t == nalmod.NAL_SPS:
            return self._parameter_set(nal, self._check_sps)
        if t == nalmod.NAL_PPS:
            return self._parameter_set(nal, self._check_pps)
        if t in _IGNORED_TYPES:
            return []
        return self._bad(f"unexpected NAL unit type {t}")

    def flush(self) -> list[np.ndarray]:
        """End of stream: the last picture if it is still open (strict: an error).

        Afterwards the decoder starts over: a following stream must begin with an IDR
        picture (and, in strict mode, its SPS/PPS). Counters keep running."""
        frames: list[np.ndarray] = []
        if self._picture:
            if self.strict:
                raise DecodeError(f"stream ends inside picture {self.pictures}: "
                                  f"{len(self._picture)} of {self._mbs} macroblocks")
            frames += self._finish()
        try:
            leftovers = self._ctx.decode(None)
        except av.error.FFmpegError as e:
            if self.strict:
                raise DecodeError(f"decoder error at end of stream ({e})") from e
            leftovers = []
        if leftovers and self.strict:
            raise DecodeError(f"decoder returned {len(leftovers)} frame(s) no picture accounts for")
        self._start_stream()
        return frames

    # ------------------------------------------------------------------ NAL kinds
    def _bad(self, msg: str) -> list[np.ndarray]:
        if self.strict:
            raise DecodeError(msg)
        self.skipped_nals += 1
        if self._picture:
            self._damaged = True
        return []

    def _parameter_set(self, nal: bytes, check) -> list[np.ndarray]:
        if not self.strict:  # the canonical ones are used instead
            return []
        if self._picture:
            raise DecodeError(f"parameter set inside picture {self.pictures}")
        check(nal)
        self._unsent.append(nal)
        return []

    def _check_sps(self, nal: bytes) -> None:
        sps = nalmod.parse_sps(nal)
        p = self.profile
        if (sps.width, sps.height) != (p.width, p.height) or not sps.frame_mbs_only:
            raise DecodeError(f"stream is {sps.width}x{sps.height}"
                              f"{'' if sps.frame_mbs_only else ' interlaced'}; profile "
                              f"{p.name!r} is {p.width}x{p.height} progressive")
        self._sps, self._sps_id = sps, sps.sps_id

    def _check_pps(self, nal: bytes) -> None:
        pps = nalmod.parse_pps(nal)
        if self._sps is None or pps.sps_id != self._sps_id:
            raise DecodeError(f"PPS {pps.pps_id} refers to SPS {pps.sps_id}, which was not sent")
        self._pps_ids.add(pps.pps_id)

    def _slice(self, nal: bytes) -> list[np.ndarray]:
        try:
            head = nalmod.parse_slice_header(nal, self._sps)
        except DecodeError as e:
            if self.strict:
                raise DecodeError(f"picture {self.pictures}: unreadable slice header ({e})") from e
            return self._bad(str(e))
        frames: list[np.ndarray] = []
        if self.strict:
            self._check_slice(head)
        else:
            verdict = self._place(head)
            if verdict == "drop":
                return self._bad(f"picture {self.pictures}: slice at macroblock {head.first_mb} "
                                 "does not fit (damaged header?)")
            if verdict == "new" and self._picture:
                frames += self._finish()
        if not self._picture:
            self._key = (head.frame_num, head.is_idr, head.idr_pic_id)
            self._ref_idc = head.nal_ref_idc
            # a frame_num that does not follow means pictures were lost: the decoder
            # predicts from the wrong reference without flagging the frame
            lost = (self._prev_ref_fn is not None
                    and head.frame_num not in self._expected_frame_nums(head))
            self._damaged = head.first_mb != 0 or lost
        elif head.first_mb != self._last_mb + 1:
            self._damaged = True
        self._picture.append(nal)
        self._last_mb = head.first_mb
        if head.first_mb + 1 == self._mbs:
            frames += self._finish()
        return frames

    def _expected_frame_nums(self, head: nalmod.SliceHeader, after_open: bool = False) -> set[int]:
        """frame_num values a picture may have after the previous one (section 7.4.3);
        ``after_open``: after the open picture rather than the last finished one."""
        if head.is_idr:
            return {0}
        prev = self._prev_ref_fn
        if after_open and self._picture and self._ref_idc:
            prev = self._key[0]
        if prev is None:
            return set()
        nxt = (prev + 1) % (1 << self._sps.log2_max_frame_num)
        return {nxt} if head.nal_ref_idc else {prev, nxt}

    def _place(self, head: nalmod.SliceHeader) -> str:
        """Tolerant mode: "add" to the open picture, start a "new" one, or "drop" the slice.

        - Same frame_num/IDR id as the open picture and a later macroblock: add.
        - Another frame_num, the one the open picture should have had, and a later
          macroblock: add and take that frame_num (the picture's first header was the
          damaged one).
        - The frame_num the next picture must have, not continuing the open picture:
          new (it may have lost its first slices).
        - Macroblock 0 with an unexpected frame_num: new if no picture is open
          (resynchronise after lost pictures), dropped inside an open picture.
        - Anything else is taken for a damaged header and dropped.
        """
        if head.first_mb >= self._mbs:
            return "drop"
        key = (head.frame_num, head.is_idr, head.idr_pic_id)
        if not self._picture:
            if head.first_mb == 0 or head.frame_num in self._expected_frame_nums(head):
                return "new"
            return "drop"
        if key == self._key:
            return "add" if head.first_mb > self._last_mb else "drop"
        if head.first_mb > self._last_mb:
            if head.frame_num in self._expected_frame_nums(head):
                self._key, self._ref_idc = key, head.nal_ref_idc
                return "add"
            return "drop"
        return (
            "new" if head.frame_num in self._expected_frame_nums(head, after_open=True) else "drop"
        )

    def _check_slice(self, head: nalmod.SliceHeader) -> None:
        where = f"picture {self.pictures}"
        if self._sps is None or head.pps_id not in self._pps_ids:
            raise DecodeError(f"{where}: slice before its SPS/PPS")
        if head.nal_type not in (nalmod.NAL_SLICE, nalmod.NAL_IDR):
            raise DecodeError(f"{where}: data-partitioned slice (not baseline)")
        expected = self._last_mb + 1 if self._picture else 0
        if head.first_mb != expected:
            raise DecodeError(f"{where}: slice starts at macroblock {head.first_mb}, expected "
                              f"{expected} (slices missing, repeated or out of order)")
        key = (head.frame_num, head.is_idr, head.idr_pic_id)
        if self._picture:
            if key != self._key:
                raise DecodeError(
                    f"{where}: slice of another picture after macroblock {self._last_mb}"
                )
            return
        if self.pictures == 0 and not head.is_idr:
            raise DecodeError("stream does not start with an IDR picture")
        if head.frame_num not in self._expected_frame_nums(head):
            raise DecodeError(f"{where}: frame_num {head.frame_num} does not follow "
                              f"{self._prev_ref_fn} (pictures missing?)")

    # ------------------------------------------------------------------ decoding
    def _new_context(self):
        ctx = av.CodecContext.create("h264", "r")
        ctx.thread_count = 1
        ctx.thread_type = "NONE"
        if self.strict:
            ctx.options = {"err_detect": "explode"}
        else:  # also output pictures whose references are missing or damaged
            ctx.options = {"flags2": "showall", "flags": "output_corrupt"}
        return ctx

    def _finish(self) -> list[np.ndarray]:
        """Decode the open picture as one packet; return its frame (or none if capped)."""
        nals, self._picture = self._picture, []
        damaged = self._damaged or len(nals) != self._mbs
        self._damaged, self._last_mb = False, -1
        if self._ref_idc:
            self._prev_ref_fn = self._key[0]
        index = self.pictures
        self.pictures += 1
        if self.frames >= self.max_frames:
            if self.strict:
                raise DecodeError(f"more than {self.max_frames} frames in one stream")
            self.dropped_pictures += 1
            return []
        packet = av.Packet(nalmod.join_annexb(self._unsent + nals))
        self._unsent = []
        try:
            decoded = self._ctx.decode(packet)
        except av.error.FFmpegError as e:
            if self.strict:
                raise DecodeError(f"picture {index}: corrupt data ({e})") from e
            decoded = []
        if self.strict:
            if len(decoded) != 1:
                raise DecodeError(f"picture {index}: decoder returned {len(decoded)} frames")
            if decoded[0].is_corrupt:
                raise DecodeError(f"picture {index}: decoder concealed damaged macroblocks")
        frame = None
        if decoded:
            f = decoded[-1]
            if (f.width, f.height) == (self.profile.width, self.profile.height):
                frame = f.to_ndarray(format="rgb24")
                damaged = damaged or f.is_corrupt or len(decoded) != 1
            elif self.strict:
                raise DecodeError(f"picture {index}: decoded {f.width}x{f.height}")
        if frame is None:
            damaged = True
            frame = (self._last_frame.copy() if self._last_frame is not None else
                     np.full((self.profile.height, self.profile.width, 3), 128, np.uint8))
        self.damaged_frames += int(damaged)
        self.frames += 1
        self._last_frame = frame
        return [frame]


def decode_annexb(data: bytes, profile: AvcProfile = PAPER, strict: bool = True,
                  max_frames: int | None = None) -> list[np.ndarray]:
    """A whole Annex-B stream -> RGB frames (H, W, 3) uint8, one per picture.

    Strict mode also rejects empty data, bytes before the first start code and a
    stream without pictures; tolerant mode skips leading garbage and returns [] when
    there is no picture (see :class:`StreamDecoder`)."""
    return decode_annexb_with_stats(data, profile, strict, max_frames)[0]


def decode_annexb_with_stats(
    data: bytes, profile: AvcProfile = PAPER, strict: bool = True, max_frames: int | None = None
) -> tuple[list[np.ndarray], StreamDecoder]:
    """:func:`decode_annexb`, also returning the decoder (``damaged_frames`` etc.)."""
    if strict:
        if not data:
            raise DecodeError("empty H.264 data")
        lead = nalmod.leading_garbage(data)
        if lead.strip(b"\x00"):  # leading zero bytes are allowed (leading_zero_8bits)
            raise DecodeError(f"{len(lead)} bytes before the first start code (not Annex-B H.264?)")
    dec = StreamDecoder(profile, strict=strict, max_frames=max_frames)
    frames: list[np.ndarray] = []
    for nal in nalmod.split_annexb(data):
        frames += dec.feed(nal)
    frames += dec.flush()
    if strict and dec.pictures == 0:
        raise DecodeError("no coded pictures in the H.264 data")
    return frames, dec
