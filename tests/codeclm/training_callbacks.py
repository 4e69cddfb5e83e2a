"""Callbacks the training tests plug into subprocess runs by class path (this folder goes on
the subprocess's PYTHONPATH; ``--trainer.callbacks=[{"class_path": "training_callbacks.NAME",
...}]``)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import lightning as L


class PauseAt(L.Callback):
    """Before step ``step`` + 1 starts (so the checkpoint of step ``step`` is on disk), write
    ``flag`` and sleep until killed: lets a test SIGKILL a run at a known point."""

    def __init__(self, step: int, flag: str) -> None:
        self.step, self.flag = step, flag

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            Path(self.flag).write_text(str(os.getpid()))
            time.sleep(600)


class RankDigest(L.Callback):
    """At the end of fit each rank writes ``out/rank<r>.json``: a SHA-256 of its parameters
    and of the first training batch it saw. Sharded (FSDP2 DTensor) parameters are gathered
    first (``full_tensor()``, a collective every rank joins); ``sharded`` counts them and
    ``local_numel`` is what this rank holds itself."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.first_batch: str | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_batch is None:
            self.first_batch = hashlib.sha256(batch.cpu().numpy().tobytes()).hexdigest()

    def on_train_end(self, trainer, pl_module) -> None:
        from torch.distributed.tensor import DTensor

        h = hashlib.sha256()
        sharded = local = total = 0
        for name, p in sorted(pl_module.state_dict().items()):
            if isinstance(p, DTensor):
                sharded += 1
                local += p.to_local().numel()
                p = p.full_tensor()
            else:
                local += p.numel()
            total += p.numel()
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        Path(self.out).mkdir(parents=True, exist_ok=True)
        (Path(self.out) / f"rank{trainer.global_rank}.json").write_text(json.dumps({
            "params": h.hexdigest(), "first_batch": self.first_batch,
            "world_size": trainer.world_size, "global_step": trainer.global_step,
            "sharded": sharded, "local_numel": local, "numel": total,
            "checkpoint_io": type(trainer.strategy.checkpoint_io).__name__}))
