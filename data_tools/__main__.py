"""`python -m data_tools`: media folders -> canonical bytes -> tokens -> litdata shards."""

import sys

from codeclm.cli import run_cli

VERBS = {
    "synth": "data_tools.commands.synth",
    "bpe": "data_tools.commands.bpe",
    "images": "data_tools.commands.images",
    "videos": "data_tools.commands.videos",
}


def main(argv=None) -> int:
    return run_cli("data_tools", "Media folders -> canonical codec bytes -> tokens -> litdata "
                   "token shards; tokenizer training; synthetic training media.", VERBS, argv)


if __name__ == "__main__":
    sys.exit(main())
