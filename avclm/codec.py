"""Canonical H.264 encoding in-process (PyAV + libx264), and MP4 wrapping.

``encode_video(path)`` reproduces the paper's ffmpeg command (see avclm/profile.py)
without a subprocess, step for step as the ffmpeg CLI does it:

1. decode the first video stream; timestamps are shifted by the container's start
   time (as ffmpeg does without ``-copyts``). Unlike the CLI we stop as soon as the
   clip is full, and ask the decoder to skip non-reference frames the ``fps`` filter
   is known to drop (see :class:`_UnusedFrames`): same output, less decoding;
2. a libavfilter graph, configured from the first decoded frame (size, pixel format,
   colour space and range, as the CLI configures its ``buffer`` source), runs the
   paper's ``-vf`` chain: ``fps``, ``scale`` to fit (plus our colour normalisation),
   ``pad`` centered; then ``trim=duration`` (the CLI's ``-t``) and ``format=yuv420p``.
   The ``fps`` filter resamples by timestamp: source frame j (time t_j) gets the output
   slot round(t_j * fps), and output frame k shows the latest source frame whose slot
   is <= k, i.e. the last one starting before (k + 1/2) / fps: the frame nearest to
   the tick k / fps, ties going to the later one; frames are duplicated or dropped
   as needed. The last source frame lasts its own duration;
3. libx264 with the profile's options, one thread; frames get ``pict_type`` NONE so
   source keyframes do not force IDRs (the CLI does the same);
4. the x264 SEI NAL is dropped; everything else is kept byte for byte (start codes
   included).

For untagged, limited-range sources with a known square-pixel SAR the result is
bit-identical to the bundled ffmpeg binary running the paper's command, SEI aside
(tests/avclm/test_ffmpeg_parity.py); otherwise only the SPS's VUI differs (and, for
BT.709 or full-range sources, the pixels: see avclm/profile.py).
"""

from __future__ import annotations

import bisect
import collections
import functools
import io
import itertools
import math
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from av.filter import Graph
from av.video.frame import PictureType

from codeclm.errors import DecodeError, EncodeError, InputError
from codeclm.io import atomic_path

from . import nal as nalmod
from .profile import PAPER, AvcProfile

#: largest source picture we decode (pixels) and largest side; a header claiming more
#: is rejected before any frame is decoded
MAX_SOURCE_PIXELS = 8192 * 4608
MAX_SOURCE_SIDE = 16384
#: source frames decoded before giving up on filling the clip (a stream whose
#: timestamps never advance would otherwise be read to its end)
MAX_SOURCE_FRAMES = 20_000
#: seconds of declared video that may be missing before a file counts as truncated
TRUNCATION_SLACK = Fraction(1, 2)
#: leave source frames the fps filter would drop undecoded where the decoder allows
#: (non-reference frames); the output bytes are the same either way (tested)
SKIP_UNUSED_FRAMES = True
#: packets read ahead of the decoder to learn later timestamps (B-frame reordering)
LOOKAHEAD_PACKETS = 16


# --------------------------------------------------------------------------- encoder core

class CanonicalEncoder:
    """Filter graph (canonical filters, trim, format) feeding libx264 for one clip.

    Configured from the first frame; ``push`` returns False once the clip is full.
    """

    def __init__(self, profile: AvcProfile, first: av.VideoFrame, time_base: Fraction,
                 sample_aspect: Fraction | None):
        self.profile = profile
        self.frames_out = 0
        self.done = False
        self._out = bytearray()
        self._time_base = time_base
        self._sar = sample_aspect if sample_aspect else Fraction(0, 1)
        self._last: av.VideoFrame | None = None  # the last source frame pushed
        self._graph = self._filter_graph(first)

        ctx = av.CodecContext.create(profile.encoder, "w")
        ctx.width, ctx.height, ctx.pix_fmt = profile.width, profile.height, profile.pix_fmt
        ctx.time_base = profile.time_base
        ctx.framerate = Fraction(profile.fps)
        ctx.sample_aspect_ratio = Fraction(*profile.sample_aspect)
        ctx.thread_count = profile.threads
        ctx.options = profile.codec_options()
        self._ctx = ctx

    def _filter_graph(self, first: av.VideoFrame) -> Graph:
        """The canonical filters, trim and format, configured from ``first``'s size,
        pixel format and colour tags (as the CLI configures its ``buffer`` source)."""
        profile, time_base, sar = self.profile, self._time_base, self._sar
        g = Graph()
        src = g.add("buffer", video_size=f"{first.width}x{first.height}",
                    pix_fmt=first.format.name, time_base=str(time_base),
                    pixel_aspect=f"{sar.numerator}/{sar.denominator}",
                    colorspace=str(int(first.colorspace)), range=str(int(first.color_range)))
        chain = [src]
        specs = profile.filters.split(",") + [f"trim=duration={profile.seconds}",
                                               f"format={profile.pix_fmt}"]
        for spec in specs:
            name, _, args = spec.partition("=")
            f = g.add(name, args or None)
            chain[-1].link_to(f)
            chain.append(f)
        sink = g.add("buffersink")
        chain[-1].link_to(sink)
        g.configure()
        return g

    def push(self, frame: av.VideoFrame | None) -> bool:
        """Feed one source frame (None = end of input); False once the clip is full."""
        if self.done:
            return False
        if frame is not None:
            self._last = frame
        try:
            self._graph.vpush(frame)
        except av.error.EOFError:
            self.done = True
        self._drain()
        return not self.done

    def _drain(self) -> None:
        while True:
            try:
                out = self._graph.vpull()
            except av.error.BlockingIOError:
                return
            except av.error.EOFError:
                self.done = True
                return
            out.pict_type = PictureType.NONE
            self.frames_out += 1
            for packet in self._ctx.encode(out):
                self._out += bytes(packet)
            if self.frames_out == self.profile.frames:
                # trim would pass nothing more: stop reading the source now rather
                # than decoding on until trim sees a frame at >= ``seconds``
                self.done = True
                return

    def finish(self, raw: bool = False) -> bytes:
        """Flush filters and encoder; the canonical Annex-B bytes of the clip (``raw``:
        x264's output as is, SEI included)."""
        if not self.done:
            self.push(None)
        if self.frames_out == 0 and self._last is not None:
            self._show_lone_frame(self._last)
        if self.frames_out == 0:
            raise EncodeError("no video frame survives resampling to "
                              f"{self.profile.fps} fps")
        for packet in self._ctx.encode(None):
            self._out += bytes(packet)
        if raw:
            return bytes(self._out)
        return canonicalize(bytes(self._out), self.profile, self.frames_out)


    def _show_lone_frame(self, frame: av.VideoFrame) -> None:
        """The short-clip rule's floor: a source whose frames all end before the first
        output tick (e.g. one frame of a 30 fps file) gives a one-frame clip of its last
        frame, which the ``fps`` filter shows at that tick once it lasts a whole output
        frame (the paper's ffmpeg command writes nothing for such a source)."""
        tick = math.ceil(Fraction(1, self.profile.fps) / self._time_base)
        duration = frame.duration or 0
        frame.duration = max(duration, tick)
        try:  # the filters copy the frame's properties when it is pushed
            self._graph = self._filter_graph(frame)
            self.done = False
            self.push(frame)
            self.push(None)
        finally:  # the caller's frame (a clip reader may hold it) keeps its own duration
            frame.duration = duration


def canonicalize(raw: bytes, profile: AvcProfile, frames: int | None = None) -> bytes:
    """x264 Annex-B output -> canonical bytes: SEI NAL units removed, rest kept exactly.

    Checks the structure (``frames`` pictures of ``profile.nals_per_frame`` slices each)
    and raises EncodeError if the encoder did not produce it."""
    spans = list(nalmod.iter_annexb(raw))
    if not spans or spans[0][0] != 0:
        raise EncodeError("encoder output does not start with a start code")
    kept = []  # (unit_start, unit_end) byte ranges, each NAL with its start code
    slices = 0
    for i, (start, nal_start, _) in enumerate(spans):
        end = spans[i + 1][0] if i + 1 < len(spans) else len(raw)
        t = raw[nal_start] & 0x1F if nal_start < len(raw) else 0
        if profile.drop_sei and t == nalmod.NAL_SEI:
            continue
        slices += t in nalmod.PICTURE_NAL_TYPES
        kept.append(raw[start:end])
    if frames is not None and slices != frames * profile.nals_per_frame:
        raise EncodeError(f"encoder wrote {slices} slices for {frames} frames; expected "
                          f"{profile.nals_per_frame} per frame")
    return b"".join(kept)


# --------------------------------------------------------------------------- sources

def check_source_size(width: int, height: int, what: str) -> None:
    """Raise :class:`InputError` (naming ``what``) for a source video with no size or
    one over the pixel / side limits."""
    if width <= 0 or height <= 0:
        raise InputError(f"{what}: video has no size ({width}x{height})")
    if max(width, height) > MAX_SOURCE_SIDE or width * height > MAX_SOURCE_PIXELS:
        raise InputError(f"{what}: {width}x{height} video is larger than the limit "
                         f"({MAX_SOURCE_PIXELS} pixels, {MAX_SOURCE_SIDE} per side)")


class _UnusedFrames:
    """Which source frames the ``fps`` filter will drop, known before decoding them.

    The filter shows in output slot k the latest frame whose slot round(t * fps) is
    <= k, so a frame is dropped whenever a later frame falls in the same slot. Seeing a
    packet's pts in demux order plus a few packets of lookahead, a frame is reported
    unused only if some *known* later frame lies in its slot (then the true successor,
    between the two, does too), it is not the earliest known frame (which sets the
    filter's start), and neither lies within ``EPS`` ticks of a slot boundary (so the
    rounding convention cannot matter). Leaving such frames undecoded cannot change
    the filter's output.
    """

    EPS = Fraction(1, 1000)

    def __init__(self, time_base: Fraction, offset: int, fps: int):
        self._scale = time_base * fps
        self._offset = offset
        self._pts: list[int] = []

    def see(self, pts: int) -> None:
        bisect.insort(self._pts, pts)

    def unused(self, pts: int) -> bool:
        i = bisect.bisect_right(self._pts, pts)
        if i >= len(self._pts) or bisect.bisect_left(self._pts, pts) == 0:
            return False
        lo = (pts - self._offset) * self._scale - self.EPS
        hi = (self._pts[i] - self._offset) * self._scale + self.EPS
        return math.floor(lo + Fraction(1, 2)) == math.floor(hi + Fraction(1, 2))


def decoded_frames(container, stream, offset: int, fps: int) -> Iterator[av.VideoFrame]:
    """Decode ``stream``, asking the decoder to skip (``skip_frame=NONREF``) frames the
    fps filter would drop; the decoder still decodes any that other frames reference,
    so only truly disposable frames (typically non-reference B frames) go undecoded."""
    cc = stream.codec_context
    frames = _UnusedFrames(stream.time_base, offset, fps) if SKIP_UNUSED_FRAMES else None
    pending: collections.deque = collections.deque()

    def decode(packet) -> list[av.VideoFrame]:
        skip = (frames is not None and packet.pts is not None and not packet.is_keyframe
                and frames.unused(packet.pts))
        cc.skip_frame = "NONREF" if skip else "DEFAULT"
        return packet.decode()

    for packet in container.demux(stream):
        if packet.pts is not None and frames is not None:
            frames.see(packet.pts)
        pending.append(packet)
        if len(pending) > LOOKAHEAD_PACKETS:
            yield from decode(pending.popleft())
    while pending:
        yield from decode(pending.popleft())


def _source_frames(container, stream, what: str, profile: AvcProfile) -> Iterator[av.VideoFrame]:
    """Decoded frames with timestamps relative to the container start (CLI behaviour).

    If the frames run out more than TRUNCATION_SLACK seconds before the stream's
    declared duration (and before ``profile.seconds``), the file is taken as truncated."""
    tb = stream.time_base
    offset = start_offset(container, stream)
    count = 0
    end = Fraction(0)
    try:
        for frame in decoded_frames(container, stream, offset, profile.fps):
            count += 1
            if count > MAX_SOURCE_FRAMES:
                raise InputError(f"{what}: more than {MAX_SOURCE_FRAMES} frames decoded "
                                 "without filling the clip (timestamps do not advance?)")
            check_source_size(frame.width, frame.height, what)
            if frame.pts is None:
                raise InputError(f"{what}: video frame {count} has no timestamp")
            frame.pts -= offset
            end = max(end, (frame.pts + (frame.duration or 0)) * tb)
            yield frame
    except av.error.FFmpegError as e:
        raise InputError(f"{what}: corrupt or truncated video ({e})") from e
    # only reached when the source ran out before the clip was full
    declared = declared_seconds(container, stream)
    if declared is not None and end + TRUNCATION_SLACK < min(declared, Fraction(profile.seconds)):
        raise InputError(f"{what}: truncated: video data ends at {float(end):.2f} s but the "
                         f"file declares {float(declared):.2f} s")


def start_offset(container, stream) -> int:
    """The container's start time in ``stream.time_base`` ticks (ffmpeg's zero point)."""
    if container.start_time is None:
        return 0
    return round(Fraction(container.start_time, 1_000_000) / stream.time_base)


def declared_seconds(container, stream) -> Fraction | None:
    """Seconds of video the file's headers declare, from the container start (None when
    they declare nothing, e.g. MPEG-TS or raw H.264): the longer of the stream's duration
    and its frame count at its average rate. The frame count catches a cut AVI, whose
    duration FFmpeg takes from the frames left but whose header keeps the full count."""
    tb = stream.time_base
    found = []
    if stream.duration:
        found.append((stream.duration + (stream.start_time or 0)
                      - start_offset(container, stream)) * tb)
    if stream.frames and stream.average_rate:
        found.append(Fraction(stream.frames) / Fraction(stream.average_rate))
    return max(Fraction(0), max(found)) if found else None


def _is_still_image(container) -> bool:
    """FFmpeg opened the file with an image demuxer (``image2``, ``png_pipe``,
    ``jpeg_pipe``, ...): one still picture, not a clip (an animated GIF is a video)."""
    names = set(container.format.name.split(","))
    return bool(names & {"image2"} or any(n.endswith("_pipe") for n in names))


def _is_text(container) -> bool:
    """FFmpeg's ``tty`` demuxer renders any text file as a short ANSI-art video (a file
    that no other demuxer claims); such a file is text, not a clip."""
    return "tty" in container.format.name.split(",")


def open_video(path: str | os.PathLike):
    """``(container, first video stream)`` of a media file, after the checks every reader
    shares (exists, regular, not empty, readable, has video, sane size, a time base);
    raises :class:`InputError` naming the file, with the container closed."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file")
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise InputError(f"{p}: not a readable media file ({e})") from e
    try:
        if not container.streams.video:
            raise InputError(f"{p}: no video stream")
        stream = container.streams.video[0]
        if _is_still_image(container):
            raise InputError(f"{p}: a still image, not a video (use `jpeglm encode` for images)")
        if _is_text(container):
            raise InputError(f"{p}: a text file, not a video")
        check_source_size(stream.codec_context.width, stream.codec_context.height, str(p))
        if not stream.time_base:
            raise InputError(f"{p}: video stream has no time base")
    except InputError:
        container.close()
        raise
    return container, stream


def encode_video(path: str | os.PathLike, profile: AvcProfile = PAPER) -> bytes:
    """A video file -> canonical Annex-B bytes (SPS, PPS, then ``nals_per_frame`` slice
    NAL units per frame for up to ``profile.frames`` frames; no SEI).

    Raises InputError for a missing, empty, non-media, corrupt, truncated or oversized
    file, or one without video frames in its first ``profile.seconds`` seconds."""
    container, stream = open_video(path)
    with container:
        stream.thread_type = "AUTO"
        frames = _source_frames(container, stream, str(path), profile)
        return _encode_stream(frames, stream.time_base,
                              stream.codec_context.sample_aspect_ratio, profile, str(path))


def _encode_stream(frames: Iterator[av.VideoFrame], time_base: Fraction,
                   sample_aspect: Fraction | None, profile: AvcProfile, what: str) -> bytes:
    first = next(frames, None)
    if first is None:
        raise InputError(f"{what}: no video frames")
    try:
        enc = CanonicalEncoder(profile, first, time_base, sample_aspect)
        for frame in itertools.chain([first], frames):
            if not enc.push(frame):
                break
        data = enc.finish()  # flushes the filters; short sources: see _show_lone_frame
    except av.error.FFmpegError as e:
        raise EncodeError(f"{what}: encoding failed ({e})") from e
    except EncodeError as e:  # canonicalize's structure checks: name the file
        raise EncodeError(f"{what}: {e}") from e
    return data


def encode_frames(frames: Iterable[np.ndarray] | Iterable[av.VideoFrame],
                  profile: AvcProfile = PAPER) -> bytes:
    """Frames -> canonical Annex-B bytes, through the same filters as :func:`encode_video`.

    ``frames`` is either a sequence of RGB arrays, shape (profile.height, profile.width, 3)
    uint8, one per output frame at ``profile.fps`` (at most ``profile.frames``), or an
    iterable of ``av.VideoFrame`` of any size and format whose ``pts``/``time_base`` say
    when they are shown (missing ones: frame i at i/fps); those are resampled to the
    profile's rate like a video file.
    """
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise InputError("no frames to encode")
    if isinstance(first, np.ndarray):
        arrays = [first, *it]
        if len(arrays) > profile.frames:
            raise InputError(f"{len(arrays)} frames given; profile {profile.name!r} holds "
                             f"at most {profile.frames}")
        shape = (profile.height, profile.width, 3)
        vframes = []
        for i, a in enumerate(arrays):
            if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.shape != shape:
                got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
                raise InputError(f"frame {i}: expected uint8 array of shape {shape}, got {got}")
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
            vf.pts, vf.time_base, vf.duration = i, profile.time_base, 1
            vframes.append(vf)
        return _encode_stream(iter(vframes), profile.time_base, Fraction(1, 1), profile, "frames")
    if not isinstance(first, av.VideoFrame):
        raise InputError("frames must be numpy arrays or av.VideoFrame, not "
                         f"{type(first).__name__}")
    time_base = first.time_base or profile.time_base
    return _encode_stream(_timed(itertools.chain([first], it), time_base, profile),
                          time_base, None, profile, "frames")


def _timed(frames: Iterable[av.VideoFrame], time_base: Fraction,
           profile: AvcProfile) -> Iterator[av.VideoFrame]:
    """Give every frame a pts in ``time_base`` (missing: frame i at i / fps)."""
    for i, f in enumerate(frames):
        if not isinstance(f, av.VideoFrame):
            raise InputError(f"frame {i}: expected av.VideoFrame, got {type(f).__name__}")
        check_source_size(f.width, f.height, f"frame {i}")
        if f.pts is None:
            f.pts = round(Fraction(i, profile.fps) / time_base)
        elif f.time_base and f.time_base != time_base:
            f.pts = round(f.pts * f.time_base / time_base)
            f.duration = round(f.duration * f.time_base / time_base)
        if not f.duration:  # the fps filter drops a last frame that lasts no time
            f.duration = max(1, round(Fraction(1, profile.fps) / time_base))
        f.time_base = time_base
        yield f


@functools.cache
def canonical_header(profile: AvcProfile = PAPER) -> bytes:
    """The SPS and PPS NAL units (with start codes) every canonical stream of ``profile``
    starts with. They do not depend on the content, so one grey frame yields them."""
    grey = np.full((profile.height, profile.width, 3), 128, np.uint8)
    _, units = nalmod.split_annexb_units(encode_frames([grey], profile))
    head = [u for u in units
            if nalmod.nal_type(nalmod.strip_start_code(u)) in nalmod.PARAMETER_SET_TYPES]
    if len(head) != 2:
        raise EncodeError(f"expected one SPS and one PPS, found {len(head)} parameter sets")
    return b"".join(head)


def x264_sei_text(data: bytes) -> str | None:
    """The x264 version-and-options text of an x264 SEI in ``data`` (raw encoder
    output), or None. Two encoders with the same text run the same x264 core with the
    same settings."""
    for n in nalmod.split_annexb(data):
        if nalmod.nal_type(n) == nalmod.NAL_SEI:
            payload = nalmod.ebsp_to_rbsp(n[1:])
            start = payload.find(b"x264 - core")
            if start >= 0:
                end = payload.find(b"\x00", start)
                return payload[start:end if end >= 0 else None].decode("ascii", "replace")
    return None


def inprocess_x264_sei_text(profile: AvcProfile = PAPER) -> str:
    """The SEI text of PyAV's libx264 for ``profile`` (one grey frame, raw output)."""
    grey = av.VideoFrame.from_ndarray(np.full((profile.height, profile.width, 3), 128, np.uint8),
                                      format="rgb24")
    grey.pts, grey.time_base, grey.duration = 0, profile.time_base, 1
    enc = CanonicalEncoder(profile, grey, profile.time_base, Fraction(1, 1))
    enc.push(grey)
    text = x264_sei_text(enc.finish(raw=True))
    if text is None:
        raise EncodeError("libx264 wrote no version SEI")
    return text


# --------------------------------------------------------------------------- MP4

def annexb_to_mp4(data: bytes, path: str | os.PathLike, profile: AvcProfile = PAPER) -> Path:
    """Wrap an Annex-B stream into an MP4 (or any container the suffix names) without
    re-encoding: one packet per picture, pts = i in time base 1/fps, SPS/PPS moved into
    the ``avcC`` box (the stream's own, else the profile's canonical ones). SEI and AUD
    NAL units are left out. Written atomically. Raises DecodeError if ``data`` holds no
    pictures or a slice header cannot be read."""
    nals = nalmod.split_annexb(data)
    if not nals:
        raise DecodeError("no NAL units in the H.264 data")
    sps = next((n for n in nals if nalmod.nal_type(n) == nalmod.NAL_SPS), None)
    pps = next((n for n in nals if nalmod.nal_type(n) == nalmod.NAL_PPS), None)
    header = (nalmod.join_annexb([sps, pps], long_start_codes=True) if sps and pps
              else canonical_header(profile))
    pictures = nalmod.group_pictures([n for n in nals if nalmod.is_picture_nal(n)])
    if not pictures:
        raise DecodeError("no coded pictures in the H.264 data")
    path = Path(path)
    tb = profile.time_base
    try:
        with av.open(io.BytesIO(header + nalmod.join_annexb(pictures[0])), format="h264") as src:
            template = src.streams.video[0]
            # closing the container (inner) happens before the rename (outer)
            with atomic_path(path) as tmp, av.open(str(tmp), "w", format=_muxer_for(path)) as out:
                stream = out.add_stream_from_template(template)
                stream.time_base = tb
                for i, picture in enumerate(pictures):
                    packet = av.Packet(nalmod.join_annexb(picture, long_start_codes=True))
                    packet.pts = packet.dts = i
                    packet.duration = 1
                    packet.time_base = tb
                    packet.stream = stream
                    packet.is_keyframe = nalmod.nal_type(picture[0]) == nalmod.NAL_IDR
                    out.mux(packet)
    except av.error.FFmpegError as e:
        raise EncodeError(f"{path}: could not write the container ({e})") from e
    return path


def _muxer_for(path: Path) -> str:
    return {".mov": "mov", ".mkv": "matroska", ".m4v": "mp4"}.get(path.suffix.lower(), "mp4")


def probe_video(path: str | os.PathLike) -> dict:
    """What a prober reports about a video file: ``frames`` (counted by demuxing),
    ``width``, ``height``, ``duration`` (seconds, float), ``fps`` (float), ``codec``."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise InputError(f"{path}: no video stream")
            s = c.streams.video[0]
            frames = sum(1 for p in c.demux(s) if p.size)
            duration = (float(s.duration * s.time_base) if s.duration is not None
                        else (c.duration or 0) / 1_000_000)
            return {"frames": frames, "width": s.codec_context.width,
                    "height": s.codec_context.height, "duration": duration,
                    "fps": float(s.average_rate) if s.average_rate else 0.0,
                    "codec": s.codec_context.name}
    except av.error.FFmpegError as e:
        raise InputError(f"{path}: not a readable media file ({e})") from e


#: small procedural sample clips shipped with the package (see avclm/assets/README.md)
ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLE_CLIPS = {p.stem: p for p in sorted(ASSETS.glob("*.mp4"))}
