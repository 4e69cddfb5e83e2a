"""Every clip of a long video: the canonical bytes of the clip that starts at S seconds.

A *clip at S* is what :func:`avclm.codec.encode_video` makes of the source frames whose
timestamp (seconds from the container start, as ffmpeg counts without ``-copyts``) is at
least S, with S subtracted from every timestamp: the same ``fps``/``scale``/``pad``
filters, ``trim`` to ``profile.seconds`` and libx264 settings. S is rounded up to the
stream's time base. The clip at 0 is exactly ``encode_video``'s output.

:class:`ClipReader` reaches each clip without decoding the file from its start: it
seeks to the keyframe at or before S (PyAV ``seek(backward=True)``), decodes from there
and drops the frames before S; for a clip that starts shortly after the previous one
(the usual non-overlapping plan) it simply decodes on. Both give the bytes that
decoding from the start gives (tests/avclm/test_clips.py checks this on B-frame and
variable-frame-rate material): after a closed-GOP keyframe K every later frame in
decoding order is shown after K, so when K's timestamp is <= S the frames from K on
hold every frame at >= S, decoded from the same reference state. A seek that lands
after S (an index that points past the wanted keyframe) is retried from further back,
and at last from the file's start.

Damage: a packet the decoder rejects, or a frame it flags corrupt, marks the stretch
from the keyframe before it to the keyframe after it as damaged. A clip whose time
range touches a damaged stretch raises :class:`InputError` (the caller records it as
skipped); the clips before and after it are unaffected. Unlike ``encode_video``, the
reader decodes every frame (no ``skip_frame``) on one thread, so what counts as damage
does not depend on the way a clip was reached or on the CPU count.

Memory does not grow with the video's length: at most ``MAX_HELD_FRAMES`` decoded
frames are kept between clips, plus ``LOOKAHEAD_PACKETS`` demuxed packets.
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Self

import av
import av.error

from codeclm.errors import EncodeError, InputError

from .codec import (
    MAX_SOURCE_FRAMES,
    TRUNCATION_SLACK,
    CanonicalEncoder,
    check_source_size,
    declared_seconds,
    open_video,
    start_offset,
)
from .profile import PAPER, AvcProfile

#: decode on from the current position (instead of seeking) when the next clip starts
#: at most this many seconds after the last decoded frame
CONTINUE_SECONDS = 10
#: seconds before S to aim a seek at, tried in turn; then the start of the file
SEEK_BACKOFF = (0, 2, 10, 60)
#: decoded frames kept for a later (overlapping or adjacent) clip, at most
MAX_HELD_FRAMES = 128
#: packets demuxed ahead of the decoder (their keyframe flags bound damaged stretches)
LOOKAHEAD_PACKETS = 16
#: seconds a planned clip may end after the video's duration (rounding of durations)
PLAN_SLACK = Fraction(1, 100)


def to_seconds(value) -> Fraction:
    """A clip start or stride (int, float, str or Fraction, seconds) as an exact
    Fraction, to the millisecond. Raises InputError for a negative or unreadable value."""
    try:
        s = Fraction(round(Fraction(str(value)) * 1000), 1000)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"not a number of seconds: {value!r}") from None
    if s < 0:
        raise InputError(f"negative number of seconds: {value!r}")
    return s




def video_duration(path: str | os.PathLike) -> Fraction:
    """Seconds of video from the container start to the end of the last frame.

    From the stream's (or else the container's) declared duration; a file that declares
    none (raw H.264) is demuxed to find its last timestamp. Raises InputError."""
    container, stream = open_video(path)
    with container:
        tb = stream.time_base
        offset = start_offset(container, stream)
        declared = declared_seconds(container, stream)
        if declared is not None:
            return declared
        if container.duration:
            return Fraction(container.duration, 1_000_000)
        end = None
        try:
            for packet in container.demux(stream):
                if packet.pts is not None:
                    stop = packet.pts + (packet.duration or 0)
                    end = stop if end is None else max(end, stop)
        except av.error.FFmpegError as e:
            raise InputError(f"{path}: corrupt video ({e})") from e
        if end is None:
            raise InputError(f"{path}: no timestamps to measure the video's length")
        return max(Fraction(0), (end - offset) * tb)


def clip_starts(duration: Fraction, profile: AvcProfile = PAPER, clips: int | None = None,
                stride=None) -> list[Fraction]:
    """Starts (seconds) of the clips to cut from a video lasting ``duration`` seconds.

    Every ``stride`` seconds (default: the clip length, i.e. non-overlapping clips) a
    clip that fits whole inside the video; the first ``clips`` of them when given
    (``None``: all). A video shorter than one clip still gives the clip at 0 (as
    ``encode_video`` does: a shorter clip). A 10-minute video gives 120 paper clips."""
    length = Fraction(profile.seconds)
    step = to_seconds(stride) if stride is not None else length
    if step <= 0:
        raise InputError("the stride must be positive")
    if clips is not None and clips < 1:
        raise InputError("the number of clips must be positive")
    count = max(1, math.floor((duration - length + PLAN_SLACK) / step) + 1)
    if clips is not None:
        count = min(count, clips)
    return [k * step for k in range(count)]


class _Held:
    """One decoded frame and its time (ticks from the container start)."""

    __slots__ = ("frame", "rel")

    def __init__(self, rel: int, frame: av.VideoFrame):
        self.rel, self.frame = rel, frame


class ClipReader:
    """Canonical clips of one video file, asked for in any order (fastest: increasing).

    ``seek=False`` reaches every clip by decoding from the file's start (the reference
    the seeking path is tested against). Use as a context manager or call
    :meth:`close`. Raises InputError when the file cannot be read at all.
    """

    def __init__(self, path: str | os.PathLike, profile: AvcProfile = PAPER, seek: bool = True):
        self.path = str(path)
        self.profile = profile
        self.seek_enabled = seek
        self.seeks = 0          #: seeks done (for tests and benchmarks)
        self._container = None
        self._rewind(0)
        self._tb = self._stream.time_base
        self._offset = start_offset(self._container, self._stream)
        self._sar = self._stream.codec_context.sample_aspect_ratio
        self._declared = declared_seconds(self._container, self._stream)

    # ------------------------------------------------------------------ state
    def _rewind(self, floor: int) -> None:
        """(Re)open the file and decode from its start (a seek to the very start is not
        exact in every container: MPEG-TS can land on the second keyframe)."""
        if self._container is not None:
            self._container.close()
        self._container, self._stream = open_video(self.path)
        self._stream.thread_type = "SLICE"   # no frame threads: errors surface per packet
        self._reset(floor)

    def _reset(self, floor: int | None) -> None:
        """Start demuxing afresh from the container's current position. ``floor``: every
        frame at or after this time (ticks) is still to be decoded (None: unknown)."""
        self._demux = self._container.demux(self._stream)
        self._pending: collections.deque = collections.deque()
        self._held: collections.deque[_Held] = collections.deque()
        self._floor = floor
        self._head: int | None = None          # time of the last decoded frame
        self._eof = False
        self._last_key: int | None = None      # time of the last keyframe packet decoded
        self._damage: list[list] = []          # [from, to] ticks; to None = open
        self._first_rel: int | None = None     # time of the first frame since the reset

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ decoding
    def _rel(self, pts: int) -> int:
        return pts - self._offset

    def _note_damage(self, at: int | None) -> None:
        start = self._last_key if self._last_key is not None else (at if at is not None else 0)
        if at is not None:
            start = min(start, at)
        if self._damage and self._damage[-1][1] is None:
            self._damage[-1][0] = min(self._damage[-1][0], start)
        else:
            self._damage.append([start, None])

    def _decode_packet(self, packet) -> list[av.VideoFrame]:
        rel = self._rel(packet.pts) if packet.pts is not None else None
        if packet.is_keyframe and rel is not None:
            if self._damage and self._damage[-1][1] is None:
                self._damage[-1][1] = rel          # the damaged stretch ends here
            self._last_key = rel
        try:
            frames = packet.decode()
        except av.error.EOFError:
            return []
        except av.error.FFmpegError:
            self._note_damage(rel)
            return []
        for f in frames:
            if f.is_corrupt:
                self._note_damage(self._rel(f.pts) if f.pts is not None else rel)
        return frames

    def _more(self) -> bool:
        """Decode until at least one more frame is held; False at the end of the video."""
        while not self._eof:
            try:
                packet = next(self._demux, None)
            except av.error.FFmpegError as e:
                self._floor = None  # the demuxer's position is lost: seek for the next clip
                raise InputError(f"{self.path}: corrupt video ({e})") from e
            if packet is None:
                self._eof = True
            else:
                self._pending.append(packet)
                if len(self._pending) <= LOOKAHEAD_PACKETS:
                    continue
            got = False
            batch = [self._pending.popleft()] if not self._eof else list(self._pending)
            if self._eof:
                self._pending.clear()
            for packet in batch:
                for frame in self._decode_packet(packet):
                    got |= self._hold(frame)
            if got:
                return True
        return False

    def _hold(self, frame: av.VideoFrame) -> bool:
        check_source_size(frame.width, frame.height, self.path)
        if frame.pts is None:
            raise InputError(f"{self.path}: a video frame has no timestamp")
        rel = self._rel(frame.pts)
        if self._first_rel is None:
            self._first_rel = rel
        self._head = rel if self._head is None else max(self._head, rel)
        if self._floor is not None and rel < self._floor:
            return False  # before the earliest clip still wanted
        self._held.append(_Held(rel, frame))
        return True

    def _seek_to(self, start: int) -> None:
        """Position the decoder so that every frame at >= ``start`` ticks is still to come."""
        self.seeks += 1
        for back in SEEK_BACKOFF:
            target = start - math.ceil(back / self._tb)
            if target <= 0:
                break
            self._container.seek(target + self._offset, stream=self._stream, backward=True,
                                 any_frame=False)
            self._reset(floor=None)  # hold everything until the landing point is known
            if self._more() and self._first_rel <= start:
                self._floor = start
                while self._held and self._held[0].rel < start:
                    self._held.popleft()
                return
        self._rewind(start)

    def _position(self, start: int) -> None:
        ahead = self._floor is not None and start >= self._floor
        near = (start - (self._head or 0)) * self._tb <= CONTINUE_SECONDS
        if ahead and (near or not self.seek_enabled):  # decode on
            self._floor = start
            while self._held and self._held[0].rel < start:
                self._held.popleft()
        elif self.seek_enabled:
            self._seek_to(start)
        else:  # decode from the start again
            self._rewind(start)
        # forget damage that ended before this clip
        self._damage = [d for d in self._damage if d[1] is None or d[1] > start]

    def _frames_from(self, start: int, keep_from: int) -> Iterator[_Held]:
        """Held, then newly decoded, frames at >= ``start`` ticks, in order. Frames before
        ``keep_from`` (the next clip's start) are let go once given out; at most
        ``MAX_HELD_FRAMES`` given-out frames are kept."""
        pos = 0
        while True:
            if pos >= len(self._held):
                if not self._more():
                    return
                continue
            h = self._held[pos]
            if pos == 0 and h.rel < keep_from:
                self._held.popleft()
                self._floor = max(self._floor or 0, h.rel + 1)
            else:
                pos += 1
            while pos > 0 and len(self._held) > MAX_HELD_FRAMES:
                self._floor = self._held.popleft().rel + 1
                pos -= 1
            if h.rel >= start:
                yield h

    # ------------------------------------------------------------------ clips
    def encode(self, start=0, next_start=None) -> bytes:
        """The canonical bytes of the clip at ``start`` seconds (see the module docstring).

        ``next_start``: the start of the clip that will be asked for next, if known
        (frames before it are not kept; default: ``start`` + the clip length).
        Raises InputError if the clip touches a damaged stretch, the file ends early or
        holds no frame at or after ``start``; EncodeError if libx264 fails."""
        s = to_seconds(start)
        ticks = math.ceil(s / self._tb)
        what = f"{self.path} (clip at {float(s):g} s)"
        self._position(ticks)
        enc = None
        last = None
        count = 0
        try:
            keep = (math.ceil(to_seconds(next_start) / self._tb) if next_start is not None
                    else ticks + math.ceil(self.profile.seconds / self._tb))
            for h in self._frames_from(ticks, keep):
                count += 1
                if count > MAX_SOURCE_FRAMES:
                    raise InputError(f"{what}: more than {MAX_SOURCE_FRAMES} frames decoded "
                                     "without filling the clip (timestamps do not advance?)")
                h.frame.pts = h.rel - ticks
                if enc is None:
                    enc = CanonicalEncoder(self.profile, h.frame, self._tb, self._sar)
                last = h.rel + (h.frame.duration or 0)
                if not enc.push(h.frame):
                    break
            if enc is None:
                if self._declared is not None and s + TRUNCATION_SLACK < self._declared:
                    raise InputError(f"{what}: truncated: no video data at or after "
                                     f"{float(s):g} s but the file declares "
                                     f"{float(self._declared):.2f} s")
                raise InputError(f"{what}: no video frames at or after {float(s):g} s")
            data = enc.finish()
        except av.error.FFmpegError as e:
            raise EncodeError(f"{what}: encoding failed ({e})") from e
        except EncodeError as e:  # the encoder's structure checks: name the file
            raise EncodeError(f"{what}: {e}") from e
        end = ticks + math.ceil(self.profile.seconds / self._tb)
        for lo, hi in self._damage:
            if lo < end and (hi is None or hi > ticks):
                upto = "" if hi is None else f" to {float(hi * self._tb):.2f} s"
                raise InputError(f"{what}: damaged video (decoder errors) from "
                                 f"{float(lo * self._tb):.2f} s{upto}")
        if enc.frames_out < self.profile.frames:
            have = (last or ticks) * self._tb
            want = s + self.profile.seconds
            if self._declared is not None:
                want = min(want, self._declared)
            if have + TRUNCATION_SLACK < want:
                raise InputError(f"{what}: truncated: video data ends at {float(have):.2f} s but "
                                 f"the clip needs {float(want):.2f} s")
        return data


def encode_clip(path: str | os.PathLike, start=0, profile: AvcProfile = PAPER,
                seek: bool = True) -> bytes:
    """The canonical bytes of one clip (``seek=False``: decode from the file's start)."""
    with ClipReader(path, profile, seek=seek) as reader:
        return reader.encode(start)


def encode_clips(path: str | os.PathLike, starts: Sequence, profile: AvcProfile = PAPER,
                 seek: bool = True) -> Iterator[tuple[Fraction, bytes | InputError | EncodeError]]:
    """``(start, bytes or the error)`` for each clip, in the order given, one reader."""
    with ClipReader(path, profile, seek=seek) as reader:
        starts = list(starts)
        for i, start in enumerate(starts):
            try:
                yield to_seconds(start), reader.encode(
                    start, starts[i + 1] if i + 1 < len(starts) else None)
            except (InputError, EncodeError) as e:
                yield to_seconds(start), e
