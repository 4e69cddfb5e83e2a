"""Train an AVC-LM model with LightningCLI (subcommands: fit, validate).

Usage: avclm train fit --config recipes/avclm-tiny.yaml --data.path SHARDS [--trainer.max_steps N]
[--trainer.default_root_dir DIR] [--ckpt_path last]; `avclm train fit --help` lists every option.
See codeclm/train_cli.py.
"""

RAW_ARGV = True


def add_arguments(parser) -> None:
    """Unused: the raw argv goes to LightningCLI (RAW_ARGV)."""


def run(args) -> int:
    from codeclm.train_checks import check_files

    check_files(args.argv)  # before Lightning is imported

    from codeclm.train_cli import main

    return main(args.argv, modality="h264", prog="avclm train")
