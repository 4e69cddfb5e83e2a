"""`avclm` command line."""

import sys

from codeclm.cli import run_cli

VERBS = {
    "train": "avclm.commands.train",
    "export": "avclm.commands.export",
    "encode": "avclm.commands.encode",
    "decode": "avclm.commands.decode",
    "generate": "avclm.commands.generate",
    "eval": "avclm.commands.eval",
}


def main(argv=None) -> int:
    return run_cli("avclm", "AVC-LM: generate videos by writing H.264 bytes.", VERBS, argv)


if __name__ == "__main__":
    sys.exit(main())
