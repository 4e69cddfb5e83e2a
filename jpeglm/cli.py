"""`jpeglm` command line."""

import sys

from codeclm.cli import run_cli

VERBS = {
    "train": ("jpeglm.commands.train",
              "train a model (LightningCLI: fit, validate; --help for options)"),
    "export": ("jpeglm.commands.export",
               "training checkpoint -> model directory"),
    "encode": ("jpeglm.commands.encode",
               "image -> canonical JPEG"),
    "eval": ("jpeglm.commands.eval",
             "the paper's evaluation: prompted completion and unconditional FID"),
    "generate": ("jpeglm.commands.generate",
                 "generate N images (+ grid.png)"),
    "complete": ("jpeglm.commands.complete",
                 "complete images from their first MCUs"),
}


def main(argv=None) -> int:
    return run_cli("jpeglm", "JPEG-LM: generate images by writing JPEG bytes.", VERBS, argv)


if __name__ == "__main__":
    sys.exit(main())
