"""Training throughput: Lightning (``Trainer.fit``) vs a plain PyTorch loop.

Same model (:class:`codeclm.lightning_module.CodecLM`, the ``small`` preset, seeded init),
same litdata shards and StreamingDataLoader, same batch, same AdamW + schedule + gradient
clipping; Lightning runs without logger, checkpoints or progress bar. Each side runs
twice, interleaved, on one thread. A step runs from the end of one optimizer step to the
end of the next (data loading, forward, backward, clipping, optimizer, and for Lightning
all its hooks and ``self.log`` calls); the first ``WARMUP`` steps are not timed.

The machines this runs on are shared (2 cores, several jobs), so wall-clock times swing by
several x from step to step. The ratio therefore compares the median *CPU time* per step
(``time.process_time``: this process only, one thread, so no time waiting for the CPU and
no spinning OpenMP threads); the rows also give wall-clock medians. Goal: Lightning >= 0.9x.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PRESET, CONTEXT, BATCH = "small", 128, 4
WARMUP, STEPS, ROUNDS = 2, 8, 2


def make_shards(root: Path) -> Path:
    """~250 synthetic samples -> byte-level BPE (320) -> litdata shards (data_tools writer)."""
    from codeclm.profile import get_profile, save_profile
    from codeclm.tokenizer import ByteTokenizer
    from data_tools.shards import write_shards

    rng = np.random.default_rng(0)
    samples = []
    for _ in range(250):
        motif = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        noise = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
        samples.append(b"\xff\xd8" + motif * 20 + noise)
    tok = ByteTokenizer.train(samples, 320, "jpeg")
    out = root / "shards"
    write_shards([np.asarray(x) for x in tok.encode_batch(samples)], out, tok.vocab_size)
    tok.save(out / "tokenizer.json")
    save_profile(get_profile("jpeg", "tiny"), out)
    return out


def _setup(shards: Path):
    import lightning as L

    from codeclm.data_module import CodecDataModule
    from codeclm.lightning_module import CodecLM

    L.seed_everything(0, verbose=False)
    dm = CodecDataModule(str(shards), context=CONTEXT, batch_size=BATCH, val_fraction=0.0,
                         allow_partial_samples=True)
    lm = CodecLM(preset=PRESET, context=CONTEXT, warmup_steps=2, decay_steps=100, log_samples=0,
                 tokenizer=dm.tokenizer, profile=dm.profile)
    return dm, lm


def plain_loop(shards: Path) -> list[float]:
    """(wall, cpu) step times of a hand-written loop doing what Lightning does per step."""
    dm, lm = _setup(shards)
    dm.setup("fit")
    lm.configure_model()
    lm.train()
    conf = lm.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    it = iter(dm.train_dataloader())
    ends = []
    for _ in range(WARMUP + STEPS):
        batch = next(it)
        loss = lm._step(batch)[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ends.append((time.perf_counter(), time.process_time()))
    return _step_times(ends)


def _step_times(ends: list[tuple[float, float]]) -> np.ndarray:
    """(wall, cpu) seconds of each timed step: ``(STEPS, 2)``."""
    return np.diff(np.asarray(ends[WARMUP - 1:]), axis=0)


def lightning_fit(shards: Path, root: Path) -> list[float]:
    """(wall, cpu) step times of ``Trainer.fit`` over the same model and data."""
    import lightning as L

    class Timer(L.Callback):
        def __init__(self):
            self.ends = []

        def on_train_batch_end(self, trainer, *a):
            self.ends.append((time.perf_counter(), time.process_time()))

    dm, lm = _setup(shards)
    timer = Timer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=WARMUP + STEPS, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        gradient_clip_val=1.0, callbacks=[timer], default_root_dir=str(root))
    trainer.fit(lm, datamodule=dm)
    return _step_times(timer.ends)


def run() -> dict:
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench_train."))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        shards = make_shards(root)
        plain, light = [], []
        for _ in range(ROUNDS):
            plain.append(plain_loop(shards))
            light.append(lightning_fit(shards, root))
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(root, ignore_errors=True)
    plain, light = np.concatenate(plain), np.concatenate(light)
    tokens = BATCH * CONTEXT

    def rate(times, col):
        return tokens / float(np.median(times[:, col]))

    return {
        "name": "train_throughput",
        "rows": [
            {"what": f"plain loop, per CPU-second ({PRESET}, {BATCH}x{CONTEXT} tokens, 1 thread)",
             "value": rate(plain, 1), "unit": "tokens/s"},
            {"what": "Lightning Trainer.fit, per CPU-second", "value": rate(light, 1),
             "unit": "tokens/s"},
            {"what": "plain loop, wall clock (median step)", "value": rate(plain, 0),
             "unit": "tokens/s"},
            {"what": "Lightning Trainer.fit, wall clock (median step)", "value": rate(light, 0),
             "unit": "tokens/s"},
        ],
        "ratio": rate(light, 1) / rate(plain, 1),
        "goal": ">= 0.9",
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
