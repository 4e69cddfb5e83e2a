"""Lightning's messages that say nothing about a codeclm training run, silenced.

Each pattern is one message that every run printed and that asks nothing of the user;
every other warning still shows. The training progress bar says ``Epoch N`` (Lightning's
rich bar printed ``Epoch N/-2`` when a run is bounded by ``max_steps``, max_epochs -1).
"""

from __future__ import annotations

import logging
import warnings

#: (regex on the message, why it is noise here)
NOISE = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated",
     "Lightning's own call into torch's pytree API"),
    (r"Your `IterableDataset` has `__len__` defined",
     "litdata shards each worker itself, so the length is exact"),
    (r"The number of training batches \(\d+\) is smaller than the logging interval",
     "logging counts global steps across epochs, so small epochs still log"),
)
#: rank-zero info lines dropped (an advertisement, once per run)
INFO_NOISE = ("litlogger",)


class _DropInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(s in record.getMessage() for s in INFO_NOISE)


def silence_noise() -> None:
    """Install the filters (idempotent)."""
    for pattern, _ in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropInfo) for f in log.filters):
            log.addFilter(_DropInfo())


def progress_bar():
    """The training bar: Lightning's (rich when installed), titled ``Epoch N`` when the
    run has no epoch limit."""
    # _RICH_AVAILABLE: Lightning's own check that ``rich`` is installed in a version its
    # RichProgressBar takes (private, but the test Lightning itself applies)
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    if not _RICH_AVAILABLE:
        return TQDMProgressBar()

    class StepsRichProgressBar(RichProgressBar):
        def _get_train_description(self, current_epoch: int) -> str:
            max_epochs = self.trainer.max_epochs
            if max_epochs is not None and max_epochs >= 0:
                return super()._get_train_description(current_epoch)
            text = f"Epoch {current_epoch}"  # not "Epoch 3/-2": no epoch limit
            return f"{text:{max(len(text), len(self.validation_description))}}"

    return StepsRichProgressBar()
