"""Encode an image as a canonical JPEG-LM JPEG (fixed profile; tables attached unless --modeled).

Prints one line (output, size, MCUs) on success. On any error prints one line,
exits 1 and leaves no output file.
"""

from __future__ import annotations

import argparse
import sys

from codeclm.errors import EncodeError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="input image (any format Pillow reads), or - for stdin")
    p.add_argument("-o", "--output", required=True, help="output .jpg, or - for stdout")
    p.add_argument("--profile", default="paper", help="jpeg profile name (default: paper)")
    p.add_argument("--modeled", action="store_true",
                   help="write the modeled bytes (abbreviated stream, no DQT/DHT tables)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from codeclm.io import atomic_write_bytes
    from codeclm.outputs import check_output_file
    from jpeglm import codec
    from jpeglm.profile import get

    profile = get(args.profile)
    check_output_file(args.output, args.overwrite)
    modeled = codec.encode_image(args.image, profile)
    data = modeled if args.modeled else codec.to_jpeg(modeled, profile)
    kind = "modeled" if args.modeled else "jpeg"
    summary = (f"{args.output}: {len(data)} bytes ({kind}; {len(modeled)} modeled), "
               f"{profile.width}x{profile.height}, {profile.mcu_count} MCUs, "
               f"profile {profile.name}")
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        print(summary, file=sys.stderr)
        return 0
    try:
        atomic_write_bytes(args.output, data)
    except OSError as e:
        raise EncodeError(f"{args.output}: cannot write ({e.strerror or e})") from e
    print(summary)
    return 0
