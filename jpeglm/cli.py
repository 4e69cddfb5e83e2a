"""`jpeglm` command line."""

import sys

from codeclm.cli import run_cli

VERBS = {
    "train": "jpeglm.commands.train",
    "export": "jpeglm.commands.export",
    "encode": "jpeglm.commands.encode",
    "eval": "jpeglm.commands.eval",
    "generate": "jpeglm.commands.generate",
    "complete": "jpeglm.commands.complete",
}


def main(argv=None) -> int:
    return run_cli("jpeglm", "JPEG-LM: generate images by writing JPEG bytes.", VERBS, argv)


if __name__ == "__main__":
    sys.exit(main())
