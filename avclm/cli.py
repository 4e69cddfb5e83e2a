"""`avclm` command line."""

import sys

from codeclm.cli import run_cli

VERBS = {
    "train": ("avclm.commands.train",
              "train a model (LightningCLI: fit, validate; --help for options)"),
    "export": ("avclm.commands.export",
               "training checkpoint -> model directory"),
    "encode": ("avclm.commands.encode",
               "video -> canonical H.264 (.h264 or .mp4)"),
    "decode": ("avclm.commands.decode",
               "raw H.264 -> MP4 (strict, or --tolerant)"),
    "generate": ("avclm.commands.generate",
                 "generate videos, streaming each NAL unit (-o - for stdout)"),
    "eval": ("avclm.commands.eval",
             "the paper's evaluation: prompted video continuation"),
}


def main(argv=None) -> int:
    return run_cli("avclm", "AVC-LM: generate videos by writing H.264 bytes.", VERBS, argv)


if __name__ == "__main__":
    sys.exit(main())
