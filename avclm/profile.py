"""The canonical H.264 profile: every parameter of the AVC-LM clip encoding, in one place.

The paper (Han et al., JPEG-LM, arXiv 2408.08459; its AVC-LM proof of concept) encodes
each clip with::

    ffmpeg -i IN -vf "fps=3,scale=256:144:force_original_aspect_ratio=decrease,
                      pad=256:144:(ow-iw)/2:(oh-ih)/2" -t 5 -c:v libx264 -pix_fmt yuv420p
           -profile:v baseline -qp 37 -bf 0 -an -sn -x264opts "slice-max-mbs=1" -trellis 0
           -me_method dia -threads 1 -subq 0 -psy 0 -mixed-refs 0 -fast-pskip 0
           -partitions none -refs 3 -bsf:v h264_mp4toannexb OUT.h264

:class:`AvcProfile` names each of those numbers; ``avclm.codec`` turns a profile into
the filter graph and libx264 options, and :meth:`AvcProfile.ffmpeg_args` gives the
command line back (used by the parity test and the benchmark).

What the command leaves to x264 defaults, stated here because it shapes the stream:

- GOP: ``keyint=250``, ``min-keyint`` auto (= min(keyint / 10, fps) = 3 at 3 fps),
  ``scenecut=40``. A 15-frame clip therefore starts with one IDR picture and, in
  general, has no other; but a hard scene cut at frame >= 3 makes x264 insert another
  IDR (and a cut at frame 1-2 a non-IDR I picture), and x264 repeats SPS and PPS
  before every IDR. Do not assume "one IDR per clip" or "parameter sets only at the
  start".
- Rate control: constant QP 37 for P pictures; I pictures get ``ip_ratio`` 1.40, i.e.
  QP 34.
- Start codes: x264 writes 4-byte start codes before the first NAL of each access
  unit (and SPS/PPS) and 3-byte ones elsewhere; we keep its bytes exactly.

What this toolkit adds, so that the SPS/PPS are the same bytes for every input (the
paper's command copies source properties into the SPS's VUI):

- the sample aspect ratio is always written as 1:1 (``sample_aspect``); the paper's
  ``scale`` filter passes a near-1 SAR such as 216:215 for fitted sizes that round, and
  any anamorphic source SAR, into the SPS;
- pixels are always BT.601 limited range (``color_matrix``/``color_range``, applied in
  the same ``scale`` filter) and the SPS carries no colour description, which is what a
  decoder assumes without one. Untagged limited-range sources (most synthetic and many
  real clips) produce exactly the paper command's bytes; BT.709-tagged or full-range
  sources get converted pixels where the paper command would write the source's tags;
- the x264 SEI (user data unregistered: x264 version and option string) is dropped:
  it carries no picture data and varies by build.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from codeclm.errors import ProfileError

MB_SIZE = 16  # luma pixels per macroblock side


@dataclass(frozen=True)
class AvcProfile:
    """Every parameter of the canonical H.264 clip encoding.

    Sizes in pixels, ``fps`` in frames per second, ``seconds`` of source kept.
    ``modality`` ("h264") is a class-level property, not a field (see codeclm/profile.py).
    """

    name: str = "paper"
    # clip geometry and timing
    fps: int = 3
    width: int = 256
    height: int = 144
    seconds: int = 5
    #: "pad": scale to fit inside width x height keeping the aspect ratio, then pad the
    #: rest with black, centered (the paper's scale+pad filters)
    fit: str = "pad"
    # encoder
    encoder: str = "libx264"
    x264_profile: str = "baseline"
    pix_fmt: str = "yuv420p"
    qp: int = 37
    bframes: int = 0
    slice_max_mbs: int = 1
    trellis: int = 0
    me_method: str = "dia"
    subq: int = 0
    psy: int = 0
    mixed_refs: int = 0
    fast_pskip: int = 0
    partitions: str = "none"
    refs: int = 3
    #: x264 threads; 1 (and no sliced threads) keeps the output independent of the CPU
    threads: int = 1
    sliced_threads: int = 0
    #: x264 defaults the paper's command leaves alone (passed explicitly, same bytes)
    keyint: int = 250
    scenecut: int = 40
    # stream form
    stream_format: str = "annexb"
    drop_sei: bool = True
    # canonicalisation that keeps SPS/PPS constant (see module docstring)
    sample_aspect: tuple[int, int] = (1, 1)
    color_matrix: str = "bt601"
    color_range: str = "tv"

    # ------------------------------------------------------------------ derived
    @property
    def modality(self) -> str:
        return "h264"

    @property
    def frames(self) -> int:
        """Frames per clip (``fps * seconds``; 15 for the paper)."""
        return self.fps * self.seconds

    @property
    def time_base(self) -> Fraction:
        """Seconds per frame tick (1/fps); frame i has pts i."""
        return Fraction(1, self.fps)

    @property
    def mb_width(self) -> int:
        return -(-self.width // MB_SIZE)

    @property
    def mb_height(self) -> int:
        return -(-self.height // MB_SIZE)

    @property
    def mbs_per_frame(self) -> int:
        """Macroblocks per frame (paper: 16 x 9 = 144); with ``slice_max_mbs == 1`` also
        the number of slice NAL units per frame."""
        return self.mb_width * self.mb_height

    @property
    def nals_per_frame(self) -> int:
        """Slice NAL units per picture."""
        return -(-self.mbs_per_frame // self.slice_max_mbs)

    @property
    def gop(self) -> int:
        """Maximum IDR interval in frames (x264 ``keyint``; longer than any clip)."""
        return self.keyint

    @property
    def keyint_min(self) -> int:
        """x264's automatic minimum IDR interval: min(keyint // 10, fps)."""
        return min(self.keyint // 10, self.fps)

    @property
    def pixels_per_clip(self) -> int:
        """Raw RGB values one clip stands for: H * W * 3 * frames."""
        return self.height * self.width * 3 * self.frames

    # ------------------------------------------------------------------ ffmpeg forms
    @property
    def paper_filters(self) -> str:
        """The paper's ``-vf`` filter string for this profile."""
        w, h = self.width, self.height
        if self.fit != "pad":
            raise ProfileError(f"unknown fit {self.fit!r}")
        return (f"fps={self.fps},scale={w}:{h}:force_original_aspect_ratio=decrease,"
                f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2")

    @property
    def filters(self) -> str:
        """The canonical filter chain: the paper's, with the colour normalisation added
        to its ``scale`` filter (a no-op for untagged limited-range input)."""
        return self.paper_filters.replace(
            "force_original_aspect_ratio=decrease",
            f"force_original_aspect_ratio=decrease:out_color_matrix={self.color_matrix}"
            f":out_range={self.color_range}")

    @property
    def x264opts(self) -> str:
        return (f"slice-max-mbs={self.slice_max_mbs}:sliced-threads={self.sliced_threads}"
                f":keyint={self.keyint}:scenecut={self.scenecut}")

    def codec_options(self) -> dict[str, str]:
        """libx264 AVOptions for ``av.CodecContext.create('libx264', 'w').options``.

        ``profile`` must go here: a ``profile`` attribute on the context is ignored."""
        return {
            "profile": self.x264_profile,
            "qp": str(self.qp),
            "bf": str(self.bframes),
            "x264opts": self.x264opts,
            "trellis": str(self.trellis),
            "me_method": self.me_method,
            "threads": str(self.threads),
            "subq": str(self.subq),
            "psy": str(self.psy),
            "mixed-refs": str(self.mixed_refs),
            "fast-pskip": str(self.fast_pskip),
            "partitions": self.partitions,
            "refs": str(self.refs),
        }

    def ffmpeg_args(self, source: str, output: str = "-") -> list[str]:
        """The paper's ffmpeg command (without the program name) for this profile, option
        for option; we add only ``-nostdin``, ``-f h264`` (raw Annex-B, which the
        ``.h264`` suffix implies) and ``-y``. The paper's ``-threads 1`` already keeps
        x264 off sliced threads."""
        return [
            "-nostdin", "-i", source, "-vf", self.paper_filters, "-t", str(self.seconds),
            "-c:v", self.encoder, "-pix_fmt", self.pix_fmt, "-profile:v", self.x264_profile,
            "-qp", str(self.qp), "-bf", str(self.bframes), "-an", "-sn",
            "-x264opts", f"slice-max-mbs={self.slice_max_mbs}",
            "-trellis", str(self.trellis), "-me_method", self.me_method,
            "-threads", str(self.threads), "-subq", str(self.subq), "-psy", str(self.psy),
            "-mixed-refs", str(self.mixed_refs), "-fast-pskip", str(self.fast_pskip),
            "-partitions", self.partitions, "-refs", str(self.refs),
            "-bsf:v", "h264_mp4toannexb", "-f", "h264", "-y", output,
        ]


PAPER = AvcProfile()
#: for tests and CPU demos: 64x64 (4 x 4 = 16 macroblocks), 4 fps x 2 s = 8 frames
TINY = AvcProfile(name="tiny", fps=4, width=64, height=64, seconds=2)

PROFILES: dict[str, AvcProfile] = {"paper": PAPER, "tiny": TINY}
