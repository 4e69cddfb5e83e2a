"""Canonical H.264 encoding: in-process (PyAV + libx264) vs the ffmpeg binary per clip.

Both run the paper's recipe on the same synthetic clips, made at the start of the run by
the bundled ffmpeg binary. The baseline is what a data pipeline without this toolkit
does: one ``ffmpeg`` process per clip with the paper's command line. ``ratio`` =
baseline seconds / in-process seconds over all clips (goal > 1: in-process is faster).
Each row also says whether the two produced the same NAL units (SEI aside).
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

#: name -> lavfi source (6 s each, so the 5 s cut applies)
CLIPS = {
    "testsrc2_640x360_25fps": "testsrc2=size=640x360:rate=25:duration=6",
    "mandelbrot_320x240_30fps": "mandelbrot=size=320x240:rate=30,trim=duration=6",
    "life_480x270_24fps": ("life=size=480x270:rate=24:mold=10:ratio=0.2:seed=7:"
                           "death_color=#C83232,trim=duration=6"),
    "testsrc_1280x720_30fps": "testsrc=size=1280x720:rate=30:duration=6",
}
REPEATS = 5


def _make_clips(ffmpeg: str, root: Path) -> dict[str, Path]:
    paths = {}
    for name, src in CLIPS.items():
        path = root / f"{name}.mp4"
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", src,
                        "-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p", str(path)],
                       check=True, capture_output=True)
        paths[name] = path
    return paths


def _timed_pair(baseline, candidate, repeats: int = REPEATS):
    """Median seconds of two callables, run alternately (load on a shared machine hits
    both alike); returns (baseline_s, candidate_s, candidate's last result)."""
    tb, tc, result = [], [], None
    for _ in range(repeats):
        t = time.perf_counter()
        baseline()
        tb.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = candidate()
        tc.append(time.perf_counter() - t)
    return statistics.median(tb), statistics.median(tc), result


def run() -> dict:
    import imageio_ffmpeg

    from avclm import nal
    from avclm.codec import encode_video
    from avclm.profile import PAPER

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    clips_out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clips = _make_clips(ffmpeg, root)
        encode_video(clips[next(iter(clips))], PAPER)  # warm up imports and x264
        for name, path in clips.items():
            out = root / f"{name}.h264"
            cmd = [ffmpeg, "-v", "error", *PAPER.ffmpeg_args(str(path), str(out))]
            t_bin, t_in, ours = _timed_pair(
                lambda cmd=cmd: subprocess.run(cmd, check=True, capture_output=True),
                lambda path=path: encode_video(path, PAPER))
            theirs = out.read_bytes()
            ours_nals = nal.split_annexb(ours)
            theirs_nals = [n for n in nal.split_annexb(theirs) if nal.nal_type(n) != nal.NAL_SEI]
            pictures = nal.group_pictures(ours_nals)
            clips_out.append({
                "clip": name,
                "frames": len(pictures),
                "nals_per_frame": sum(map(nal.is_picture_nal, ours_nals)) // max(len(pictures), 1),
                "bytes": len(ours),
                "bytes_per_frame": round(len(ours) / max(len(pictures), 1)),
                "inprocess_s": round(t_in, 4),
                "binary_s": round(t_bin, 4),
                "speedup": round(t_bin / t_in, 2),
                "identical_nals": ours_nals == theirs_nals,
            })
    total_in = sum(c["inprocess_s"] for c in clips_out)
    total_bin = sum(c["binary_s"] for c in clips_out)
    rows = []
    for c in clips_out:
        rows += [
            {
                "what": f"in-process encode_video, {c['clip']}",
                "value": c["inprocess_s"],
                "unit": "s/clip",
            },
            {"what": f"ffmpeg binary, {c['clip']}", "value": c["binary_s"], "unit": "s/clip"},
            {"what": f"canonical bytes, {c['clip']}", "value": c["bytes"], "unit": "B/clip"},
        ]
    rows.append(
        {
            "what": "clips with NAL-identical output (binary vs ours)",
            "value": sum(c["identical_nals"] for c in clips_out),
            "unit": f"of {len(clips_out)}",
        }
    )
    return {
        "name": "h264_encode",
        "rows": rows,
        "ratio": round(total_bin / total_in, 2),
        "goal": "> 1",
        "baseline": "ffmpeg binary, one process per clip, paper command line",
        "repeats": REPEATS,
        "clips": clips_out,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
