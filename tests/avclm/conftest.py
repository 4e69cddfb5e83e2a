"""Shared fixtures: synthetic clips made by the bundled ffmpeg binary, reference decoders.

Helpers are handed out as fixtures (not imported from here), so the suite works in any
pytest import mode and beside other packages' conftest.py files.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avclm.profile import PAPER, TINY


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture
def explode_frames(ffmpeg_exe, tmp_path):
    """``explode_frames(stream) -> int | None``: the frames the bundled ffmpeg decodes from
    the tiny-profile Annex-B ``stream`` with ``-xerror -err_detect explode`` (any error
    is fatal), None if it fails or prints an error."""

    def frames(stream: bytes) -> int | None:
        path = tmp_path / "explode.h264"
        path.write_bytes(stream)
        p = subprocess.run([ffmpeg_exe, "-nostdin", "-v", "error", "-xerror", "-err_detect",
                            "explode", "-f", "h264", "-i", str(path), "-f", "rawvideo",
                            "-pix_fmt", "gray", "-"], capture_output=True, check=False)
        if p.returncode or p.stderr.strip():
            return None
        return len(p.stdout) // (TINY.width * TINY.height)

    return frames


#: name -> ffmpeg arguments that write the clip (output path appended)
CLIP_RECIPES = {
    # 4:3 landscape, 25 fps, 6 s (longer than the 5 s kept)
    "landscape": ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6",
                  "-c:v", "libx264", "-crf", "30", "-pix_fmt", "yuv420p"],
    # portrait: fitted width rounds, so the paper's scale filter writes a SAR != 1
    "portrait": ["-f", "lavfi", "-i", "mandelbrot=size=120x200:rate=30,trim=duration=6",
                 "-c:v", "libx264", "-crf", "30", "-pix_fmt", "yuv420p"],
    # shorter than 5 s: 2 s at 10 fps -> 6 frames
    "short": ["-f", "lavfi", "-i", "testsrc=size=200x150:rate=10:duration=2",
              "-c:v", "libx264", "-crf", "30", "-pix_fmt", "yuv420p"],
    # MPEG-TS starts at 1.4 s: timestamps must be taken relative to the file start
    "mpegts": ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
               "-c:v", "mpeg2video", "-q:v", "6", "-f", "mpegts"],
    # an audio stream beside the video
    "with_audio": ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=6",
                   "-f", "lavfi", "-i", "sine=d=6", "-c:v", "libx264", "-crf", "30",
                   "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"],
    # lossless RGB source (FFV1 bgr0)
    "rgb": ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=6",
            "-c:v", "ffv1", "-pix_fmt", "bgr0", "-f", "matroska"],
    # 10-bit source
    "tenbit": ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=6",
               "-c:v", "libx264", "-crf", "30", "-pix_fmt", "yuv420p10le"],
    # tagged BT.709 / full range / anamorphic: the paper's command copies these into the SPS
    "bt709": ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=6",
              "-vf", "scale=out_color_matrix=bt709,format=yuv420p", "-c:v", "libx264",
              "-crf", "30", "-colorspace", "bt709", "-color_primaries", "bt709",
              "-color_trc", "bt709"],
    "fullrange": ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=6",
                  "-vf", "scale=out_range=pc,format=yuvj420p", "-c:v", "mjpeg", "-q:v", "5",
                  "-f", "avi"],
    "anamorphic": ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24:duration=6",
                   "-vf", "setsar=2/1", "-c:v", "libx264", "-crf", "30", "-pix_fmt", "yuv420p"],
    # a hard scene cut at 2 s: x264's scenecut inserts a second IDR picture. (The cut goes
    # to colour bars: a cut to lavfi's mandelbrot stopped triggering scenecut on some
    # machines, whose first mandelbrot frames differ little enough from testsrc2.)
    "scene_cut": ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
                  "-f", "lavfi", "-i", "smptebars=size=320x240:rate=25",
                  "-filter_complex",
                  "[1]trim=duration=4,setpts=PTS-STARTPTS[b];[0][b]concat=n=2:v=1",
                  "-c:v", "libx264", "-crf", "28", "-pix_fmt", "yuv420p"],
    "audio_only": ["-f", "lavfi", "-i", "sine=d=1", "-c:a", "pcm_s16le", "-f", "wav"],
}
SUFFIX = {"mpegts": ".ts", "rgb": ".mkv", "fullrange": ".avi", "audio_only": ".wav"}


@pytest.fixture(scope="session")
def clip(ffmpeg_exe, tmp_path_factory):
    """``clip(name) -> Path``: a synthetic source clip, made once per session."""
    root = tmp_path_factory.mktemp("clips")
    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in made:
            path = root / f"{name}{SUFFIX.get(name, '.mp4')}"
            subprocess.run([ffmpeg_exe, "-nostdin", "-v", "error", "-y", *CLIP_RECIPES[name],
                            str(path)], check=True, capture_output=True)
            made[name] = path
        return made[name]

    return make


@pytest.fixture(scope="session")
def paper_binary(ffmpeg_exe):
    """``paper_binary(path, profile) -> bytes``: the paper's command run by the binary."""

    def run(path, profile=PAPER) -> bytes:
        cmd = [ffmpeg_exe, "-v", "error", *profile.ffmpeg_args(str(path), "-")]
        return subprocess.run(cmd, check=True, capture_output=True).stdout

    return run


def _smooth_frames(profile, n: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """Moving smooth RGB content at profile size: (H, W, 3) uint8 frames."""
    n = profile.frames if n is None else n
    rng = np.random.default_rng(seed)
    h, w = profile.height, profile.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 2 * np.pi, 3)
    frames = []
    for i in range(n):
        chans = [127 + 100 * np.sin(xx / (7 + 3 * c) + yy / (11 + c) + base[c] + 0.4 * i)
                 for c in range(3)]
        frames.append(np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8))
    return frames


def _write_lossless(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """RGB frames -> a lossless FFV1 (bgr0) Matroska file at ``fps`` with SAR 1:1,
    written by the bundled ffmpeg binary from raw rgb24 (PyAV leaves the SAR unset)."""
    import imageio_ffmpeg

    h, w, _ = frames[0].shape
    raw = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y",
                    "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
                    "-i", "-", "-vf", "setsar=1", "-c:v", "ffv1", "-pix_fmt", "bgr0", str(path)],
                   input=raw, check=True, capture_output=True)
    return path


def _reference_decode(data: bytes, tmp_path: Path) -> list[np.ndarray]:
    """Decode raw Annex-B bytes with PyAV's demuxer + parser (an independent path)."""
    path = tmp_path / "ref.h264"
    path.write_bytes(data)
    with av.open(str(path), format="h264") as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="session")
def tiny_stream() -> bytes:
    """A canonical tiny-profile stream (8 frames x 16 slices) of smooth moving content."""
    from avclm.codec import encode_frames

    return encode_frames(_smooth_frames(TINY), TINY)


@pytest.fixture(scope="session")
def paper_stream(clip) -> bytes:
    from avclm.codec import encode_video

    return encode_video(clip("landscape"), PAPER)


@pytest.fixture(scope="session")
def smooth_frames():
    """``smooth_frames(profile, n=None, seed=0) -> list[(H, W, 3) uint8]``."""
    return _smooth_frames


@pytest.fixture(scope="session")
def write_lossless():
    """``write_lossless(frames, path, fps) -> path`` (FFV1 bgr0 in Matroska, SAR 1:1)."""
    return _write_lossless


@pytest.fixture(scope="session")
def reference_decode():
    """``reference_decode(data, tmp_path) -> frames`` via PyAV's demuxer and parser."""
    return _reference_decode


@pytest.fixture(scope="session")
def psnr():
    return _psnr


class BitWriter:
    """MSB-first bit writer with Exp-Golomb codes (to craft headers in tests)."""

    def __init__(self):
        self.bits: list[int] = []

    def u(self, n: int, v: int) -> BitWriter:
        self.bits += [(v >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, v: int) -> BitWriter:
        n = (v + 1).bit_length()
        return self.u(n - 1, 0).u(n, v + 1)

    def se(self, v: int) -> BitWriter:
        return self.ue(2 * v - 1 if v > 0 else -2 * v)

    def rbsp(self) -> bytes:
        bits = self.bits + [1]  # rbsp_stop_one_bit, then zero alignment
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


def _craft_sps(width_mbs: int, height_mbs: int, log2_max_frame_num: int = 4) -> bytes:
    """A minimal baseline SPS NAL unit (no start code) for a width_mbs x height_mbs picture."""
    from avclm.nal import rbsp_to_ebsp

    w = (BitWriter().u(8, 66).u(8, 0xC0).u(8, 30).ue(0).ue(log2_max_frame_num - 4).ue(2).ue(3)
         .u(1, 0).ue(width_mbs - 1).ue(height_mbs - 1).u(1, 1).u(1, 1).u(1, 0).u(1, 0))
    return b"\x67" + rbsp_to_ebsp(w.rbsp())


@pytest.fixture(scope="session")
def bitwriter():
    return BitWriter


@pytest.fixture(scope="session")
def craft_sps():
    """``craft_sps(width_mbs, height_mbs) -> SPS NAL bytes`` (no start code)."""
    return _craft_sps


@pytest.fixture(scope="session")
def vfr_clip(tmp_path_factory) -> Path:
    """Variable frame rate H.264 with B-frames (irregular gaps of 10-66 ms), written by
    PyAV, so the stream has no sample aspect ratio (unknown)."""
    import random

    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    rng = random.Random(1)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"crf": "28", "bf": "3"}
        t = 0
        for i in range(200):
            a = np.zeros((240, 320, 3), np.uint8)
            a[:, (i * 7) % 300:(i * 7) % 300 + 20] = 255
            a[(i * 5) % 230:(i * 5) % 230 + 10] = (i * 3) % 256
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            t += rng.choice([10, 17, 33, 50, 66])
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return path
