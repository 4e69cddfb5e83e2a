"""Train a JPEG-LM model with LightningCLI (subcommands: fit, validate).

Usage: jpeglm train fit --config recipes/jpeglm-tiny.yaml --data.path SHARDS [--trainer.max_steps N]
[--trainer.default_root_dir DIR] [--ckpt_path last]; `jpeglm train fit --help` lists every option.
See codeclm/train_cli.py.
"""

RAW_ARGV = True


def add_arguments(parser) -> None:
    """Unused: the raw argv goes to LightningCLI (RAW_ARGV)."""


def run(args) -> int:
    from codeclm.train_checks import check_files

    check_files(args.argv)  # before Lightning is imported

    from codeclm.train_cli import main

    return main(args.argv, modality="jpeg", prog="jpeglm train")
