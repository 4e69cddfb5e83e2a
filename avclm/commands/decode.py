"""Decode an H.264 Annex-B stream (file or - for stdin) and write it as a playable MP4.

Default (strict): every picture must decode cleanly (any corruption is an error and no
file is written); the stream's own bytes are wrapped into the MP4, not re-encoded.
--tolerant: conceal damage instead (one frame per picture, damaged ones repaired from
neighbours), then encode the decoded frames canonically into the MP4.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codeclm.errors import DecodeError, InputError
from codeclm.io import read_input_bytes
from codeclm.profile import get_profile

from .encode import CONTAINER_SUFFIXES

#: largest stream accepted (bytes); a paper clip is about 30 KB
MAX_INPUT_BYTES = 64 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="IN.h264 (raw Annex-B) or - for stdin")
    parser.add_argument("-o", "--output", required=True, help="OUT.mp4 (or .mov, .mkv)")
    parser.add_argument("--profile", default="paper", help="codec profile name (default: paper)")
    parser.add_argument("--tolerant", action="store_true",
                        help="conceal damaged pictures instead of failing")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from codeclm.outputs import check_output_file

    if Path(args.output).suffix.lower() not in CONTAINER_SUFFIXES:
        raise InputError(
            f"{args.output}: output must be one of {', '.join(sorted(CONTAINER_SUFFIXES))}"
        )
    profile = get_profile("h264", args.profile)
    check_output_file(args.output, args.overwrite)

    from avclm.codec import annexb_to_mp4
    from avclm.stream import decode_annexb_with_stats

    data = read_input_bytes(args.input, max_bytes=MAX_INPUT_BYTES)
    frames, dec = decode_annexb_with_stats(data, profile, strict=not args.tolerant)
    if args.tolerant:
        if not frames:
            raise DecodeError("no pictures found in the stream")
        data = _reencode(frames, profile)
    annexb_to_mp4(data, args.output, profile)
    damaged = f", {dec.damaged_frames} concealed" if args.tolerant else ""
    print(f"{args.output}: {len(frames)} frames{damaged}", file=sys.stderr)
    return 0


def _reencode(frames, profile) -> bytes:
    """Frames -> canonical stream, one clip (``profile.frames``) at a time; the SPS/PPS
    of every clip after the first are left out (they are the same bytes)."""
    from avclm import nal
    from avclm.codec import encode_frames

    out = []
    for i in range(0, len(frames), profile.frames):
        _, units = nal.split_annexb_units(encode_frames(frames[i:i + profile.frames], profile))
        out += [u for u in units if i == 0
                or nal.nal_type(nal.strip_start_code(u)) not in nal.PARAMETER_SET_TYPES]
    return b"".join(out)
