"""Every clip of a long video: ``avclm.clips`` vs the paper's ffmpeg command per clip.

One long source, made at the start of the run by the bundled ffmpeg binary the way
real video comes (x264 defaults: B-frames, a keyframe every 10 s at 25 fps). The
baseline is what a pipeline without this toolkit does to cut every 5 s clip: one
``ffmpeg -ss START`` process per clip with the paper's command line (input seeking:
ffmpeg jumps to the keyframe before START and decodes from there). Ours is
``avclm.clips.encode_clips`` over the same starts in one process (it decodes on from
one clip to the next). ``ratio`` = our clips/s / the baseline's clips/s (goal >= 1.5).

Informational rows: ours with a seek for every clip, how many clips are byte-identical
to the binary's (SEI aside), the clip count of a 10-minute source, and peak RSS of a
process cutting every clip of a 10-minute source vs a 10-second one (goal: within
1.2x: memory does not grow with the video's length).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the clips/s comparison: 2 minutes of 320x180 at 25 fps (24 paper clips)
LONG_SECONDS = 120
SOURCE = "testsrc2=size=320x180:rate=25:duration={seconds}"
#: the memory comparison: 10 minutes (120 clips) vs 10 seconds (2 clips)
RSS_SECONDS = (10, 600)

_RSS_CHILD = """
import json, resource, sys
from avclm.clips import clip_starts, encode_clips, video_duration
from avclm.profile import PAPER
path = sys.argv[1]
starts = clip_starts(video_duration(path), PAPER)
ok = sum(isinstance(v, bytes) for _, v in encode_clips(path, starts, PAPER))
print(json.dumps({"clips": ok, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _make(ffmpeg: str, path: Path, seconds: int) -> Path:
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    SOURCE.format(seconds=seconds), "-c:v", "libx264", "-crf", "23",
                    "-pix_fmt", "yuv420p", str(path)], check=True, capture_output=True)
    return path


def _rss(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run() -> dict:
    import imageio_ffmpeg

    import avclm.clips as clips_mod
    from avclm.clips import ClipReader, clip_starts, encode_clips, video_duration
    from avclm.codec import canonicalize
    from avclm.profile import PAPER

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        long = _make(ffmpeg, root / "long.mp4", LONG_SECONDS)
        starts = clip_starts(video_duration(long), PAPER)
        list(encode_clips(long, starts[:1], PAPER))  # warm up imports and x264

        t = time.perf_counter()
        theirs = []
        for s in starts:
            cmd = [ffmpeg, "-v", "error", "-ss", str(float(s)), *PAPER.ffmpeg_args(str(long))]
            theirs.append(subprocess.run(cmd, check=True, capture_output=True).stdout)
        t_bin = time.perf_counter() - t

        t = time.perf_counter()
        ours = [v for _, v in encode_clips(long, starts, PAPER)]
        t_ours = time.perf_counter() - t

        saved = clips_mod.CONTINUE_SECONDS
        clips_mod.CONTINUE_SECONDS = 0
        try:
            t = time.perf_counter()
            with ClipReader(long, PAPER) as reader:
                seeking = [reader.encode(s) for s in starts]
            t_seek = time.perf_counter() - t
        finally:
            clips_mod.CONTINUE_SECONDS = saved

        identical = sum(canonicalize(b, PAPER) == o for b, o in zip(theirs, ours))
        rss = {seconds: _rss(_make(ffmpeg, root / f"rss{seconds}.mp4", seconds))
               for seconds in RSS_SECONDS}

    n = len(starts)
    short, longest = (rss[s] for s in RSS_SECONDS)
    rss_ratio = longest["maxrss_kb"] / short["maxrss_kb"]
    rows = [
        {"what": f"ffmpeg -ss per clip, {n} clips of a {LONG_SECONDS} s source", "value": n / t_bin,
         "unit": "clips/s"},
        {"what": "avclm.clips.encode_clips (decodes on)", "value": n / t_ours, "unit": "clips/s"},
        {"what": "avclm.clips, a seek for every clip", "value": n / t_seek, "unit": "clips/s"},
        {"what": "clips byte-identical to the binary's", "value": identical, "unit": f"of {n}"},
        {"what": "seek path == decode-on path", "value": float(seeking == ours), "unit": "bool"},
        {"what": f"clips cut from a {RSS_SECONDS[1]} s source", "value": longest["clips"],
         "unit": "clips"},
        {"what": f"peak RSS, {RSS_SECONDS[0]} s source", "value": short["maxrss_kb"] / 1024,
         "unit": "MiB"},
        {"what": f"peak RSS, {RSS_SECONDS[1]} s source", "value": longest["maxrss_kb"] / 1024,
         "unit": "MiB"},
        {"what": "peak RSS ratio long / short (goal <= 1.2)", "value": rss_ratio, "unit": "x"},
    ]
    return {
        "name": "clips",
        "rows": rows,
        "ratio": round(t_bin / t_ours, 2),
        "goal": ">= 1.5",
        "baseline": "bundled ffmpeg binary, one process per clip, -ss START + paper command line",
        "rss_ratio": round(rss_ratio, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
