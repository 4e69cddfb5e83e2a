"""The argv of a short, quiet ``train fit``: for experiments, benches and tests.

``short_fit_argv(recipe, shards, root, steps, context, batch)`` gives the arguments after
``jpeglm``/``avclm`` for a fit of ``steps`` steps from a recipe YAML that validates on one
batch and checkpoints once, at its last step (``root/checkpoints/last.ckpt``), with no
sanity validation, no sample logging, no progress bar and no model summary. ``extra``
arguments go last, so they override any of these.
"""

from __future__ import annotations

import os
from pathlib import Path


def short_fit_argv(recipe: str | os.PathLike, shards: str | os.PathLike, root: str | os.PathLike,
                   steps: int, context: int, batch: int, *extra: str) -> list[str]:
    """``["train", "fit", ...]`` for ``steps`` steps of ``batch`` sequences of ``context``
    tokens read from ``shards``, logs and checkpoints under ``root``."""
    return ["train", "fit", "--config", str(recipe), "--data.path", str(shards),
            "--data.context", str(context), "--data.batch_size", str(batch),
            "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(steps),
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
            "--checkpoint.every_n_train_steps", str(steps), "--model.log_samples", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", str(Path(root)), *extra]
