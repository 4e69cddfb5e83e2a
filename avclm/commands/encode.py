"""Encode a video into the canonical H.264 stream (raw Annex-B .h264, or wrapped in .mp4).

The first 5 s of VIDEO at 3 fps, fitted and padded to 256x144, libx264 with the paper's
settings (see `avclm.profile`); OUT ending in .mp4/.mov/.mkv gets the same bytes in a
container (no re-encoding), anything else (or `-` for stdout) the raw stream.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codeclm.errors import InputError
from codeclm.io import atomic_write_bytes
from codeclm.profile import get_profile

CONTAINER_SUFFIXES = {".mp4", ".mov", ".mkv", ".m4v"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="input video file (anything FFmpeg reads)")
    parser.add_argument("-o", "--output", required=True,
                        help="OUT.h264 (raw Annex-B), OUT.mp4 (container), or - for stdout")
    parser.add_argument("--profile", default="paper", help="codec profile name (default: paper)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from codeclm.outputs import check_output_file

    profile = get_profile("h264", args.profile)
    if str(args.video) == "-":
        raise InputError("reading a video from stdin is not supported; give a file")
    check_output_file(args.output, args.overwrite)

    from avclm.codec import annexb_to_mp4, encode_video

    data = encode_video(args.video, profile)
    out = args.output
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    if Path(out).suffix.lower() in CONTAINER_SUFFIXES:
        annexb_to_mp4(data, out, profile)
    else:
        atomic_write_bytes(out, data)
    print(f"{out}: {len(data)} bytes of H.264, profile {profile.name}", file=sys.stderr)
    return 0
