"""LightningCLI wiring shared by ``jpeglm train`` and ``avclm train``.

::

    jpeglm train fit --config recipes/jpeglm-tiny.yaml --data.path SHARDS \\
        --trainer.max_steps 200 --trainer.default_root_dir runs/tiny
    jpeglm train fit --config recipes/jpeglm-tiny.yaml --data.path SHARDS \\
        --trainer.default_root_dir runs/tiny --ckpt_path last          # resume
    jpeglm train validate --config ... --data.path SHARDS \\
        --ckpt_path runs/tiny/checkpoints/last.ckpt
    jpeglm train fit --print_config --config recipes/jpeglm-7b.yaml   # the full config

Subcommands: ``fit`` and ``validate``. Sections: ``model`` (:class:`CodecLM`),
``data`` (:class:`CodecDataModule`), ``trainer`` (``lightning.Trainer``) and
``checkpoint`` (``ModelCheckpoint``; ``save_last`` on, written to
``DEFAULT_ROOT_DIR/checkpoints`` so ``--ckpt_path last`` finds it across runs).
``data.context`` is the one context setting (it sets ``model.context``); the model's
vocabulary, tokenizer and profile come from the shard directory.

Without a ``trainer.logger`` setting, a run logs to ``DEFAULT_ROOT_DIR/logs/version_N``
with a CSVLogger (``metrics.csv``) and a TensorBoardLogger (``tb/`` below it).
Checkpoint files are written atomically (temp file + rename), so a run killed while
saving never leaves a truncated ``last.ckpt``.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .data_module import CodecDataModule
from .errors import ConfigError
from .lightning_module import CodecLM
from .train_noise import progress_bar, silence_noise

LOG_NAME = "logs"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the target, renamed on success."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        import torch

        from .io import atomic_write

        if "://" in str(path):  # remote filesystems: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path, "wb") as f:
            torch.save(checkpoint, f)


def _next_version(root: Path) -> int:
    found = [int(m.group(1)) for p in (root.iterdir() if root.is_dir() else [])
             if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return max(found, default=-1) + 1


class CodecCLI(LightningCLI):
    """LightningCLI over :class:`CodecLM` and :class:`CodecDataModule` for one modality."""

    #: "jpeg" or "h264": the shards this command accepts (set per command by :func:`main`)
    modality: str | None = None
    #: callbacks added programmatically (tests, benchmarks)
    extra_callbacks: Sequence = ()

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
                "validate": {"model", "dataloaders", "datamodule"}}

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Parser errors raise (and become one line in :func:`main`) instead of printing
        the usage and exiting."""
        kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.context", "model.context")
        parser.link_arguments("data", "model.tokenizer", apply_on="instantiate",
                              compute_fn=lambda dm: dm.tokenizer)
        parser.link_arguments("data", "model.profile", apply_on="instantiate",
                              compute_fn=lambda dm: dm.profile)
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0,
                             "checkpoint.every_n_train_steps": 1000})
        if self.modality is not None:
            parser.set_defaults({"data.modality": self.modality})

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if self.modality is not None and cfg.data.modality != self.modality:
            raise ConfigError(f"data.modality {cfg.data.modality!r}: this command trains "
                              f"{self.modality} models")
        root = cfg.trainer.default_root_dir or os.getcwd()
        if cfg.checkpoint.dirpath is None:
            cfg.checkpoint.dirpath = os.path.join(root, "checkpoints")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        root = Path(config.get("default_root_dir") or os.getcwd())
        if config.get("logger") in (None, True):
            from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

            version = _next_version(root / LOG_NAME)
            config["logger"] = [CSVLogger(root, name=LOG_NAME, version=version),
                                TensorBoardLogger(root, name=LOG_NAME, version=version,
                                                  sub_dir="tb", default_hp_metric=False)]
        if not config.get("plugins"):
            # FSDPStrategy (FSDP1) keeps Lightning's own writer, as it always has here.
            # ModelParallelStrategy (FSDP2) with save_distributed_checkpoint=False (the 7B
            # recipes) gathers the full state and hands it to the CheckpointIO on rank 0, so
            # its one .ckpt is written atomically too; a distributed (directory) checkpoint
            # bypasses the CheckpointIO, and the plugin is then simply unused.
            strategy = config.get("strategy")
            if not (isinstance(strategy, str) and "fsdp" in strategy) and \
                    type(strategy).__name__ != "FSDPStrategy":
                config["plugins"] = [AtomicCheckpointIO()]
        callbacks = list(callbacks) + list(self.extra_callbacks)
        if config.get("enable_progress_bar") is not False and \
                not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(progress_bar())
        if config.get("enable_checkpointing") is False:  # `checkpoint` section is then unused
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        return super()._instantiate_trainer(config, callbacks)


def make_cli(argv: Sequence[str], modality: str | None, run: bool = True,
             prog: str | None = None, extra_callbacks: Sequence = (),
             description: str | None = None, **kwargs) -> CodecCLI:
    """Build (and with ``run`` execute) the training CLI for ``modality`` over ``argv``."""
    # argv is given explicitly while sys.argv keeps the real command line (DDP relaunches it)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    silence_noise()
    cls = type("CodecCLI_" + (modality or "any"), (CodecCLI,),
               {"modality": modality, "extra_callbacks": tuple(extra_callbacks)})
    parser_kwargs = {k: v for k, v in (("prog", prog), ("description", description)) if v}
    return cls(CodecLM, CodecDataModule, args=list(argv), run=run,
               parser_kwargs=parser_kwargs, save_config_kwargs={"overwrite": True},
               auto_configure_optimizers=False, **kwargs)


class _ParseOnly(CodecCLI):
    def instantiate_classes(self) -> None:
        self.config_init = self.datamodule = self.model = self.trainer = None


def parse_config(argv: Sequence[str], modality: str | None = None):
    """Parse a training command line (no subcommand) into a jsonargparse Namespace without
    instantiating anything: checks a recipe on a machine that could not run it."""
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    cls = type("CodecCLI_parse", (_ParseOnly,), {"modality": modality})
    return cls(CodecLM, CodecDataModule, args=list(argv), run=False,
               seed_everything_default=False, auto_configure_optimizers=False).config


def main(argv: Sequence[str], modality: str, prog: str) -> int:
    """Entry point of ``jpeglm train`` / ``avclm train``; errors propagate as CodecLMError."""
    import argparse

    from .cli import one_line
    from .modality import record
    from .train_checks import check_files

    check_files(argv)
    # "Seed set to N" is an INFO line on stderr before any error: keep errors one line
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    what = record(modality).description
    try:
        make_cli(argv, modality, prog=prog,
                 description=f"Train {what} with LightningCLI. Subcommands: fit, "
                             f"validate; recipes in recipes/; `{prog} fit --help` lists every "
                             "option.")
    except argparse.ArgumentError as e:
        raise ConfigError(f"{one_line(e)[:400]} (see `{prog} fit --help`)") from None
    return 0
