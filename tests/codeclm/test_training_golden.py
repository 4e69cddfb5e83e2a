"""Golden loss curve: a seeded tiny run's first 10 losses must not drift.

Catches silent numerics changes (model init, loss, optimizer, schedule, clipping, data
order) the way torchtitan's loss-curve test does. The data set is fixed synthetic bytes
through a byte-only tokenizer (tests/codeclm/conftest.py ``golden_shards``), and its
chunk files' hash is stored beside the curve, so a changed data set is reported as such.

Regenerate after an intended change (and say why in the commit)::

    CODECLM_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q tests/codeclm/test_training_golden.py

which rewrites tests/codeclm/data/golden_loss_tiny.json and skips.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "data" / "golden_loss_tiny.json"
RTOL = 1e-4

ARGS = [
    "--seed_everything", "1234",
    "--model.preset", "tiny", "--model.lr", "3e-2", "--model.min_lr", "3e-3",
    "--model.warmup_steps", "3", "--model.decay_steps", "10", "--model.weight_decay", "0.1",
    "--model.betas", "[0.9, 0.95]", "--model.log_samples", "0",
    "--data.context", "64", "--data.batch_size", "8", "--data.val_fraction", "0",
    "--data.seed", "1234", "--data.shuffle", "true",
    "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
    "--trainer.gradient_clip_val", "1.0", "--trainer.max_steps", "10",
    "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
    "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]


def data_hash(shards: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(shards.glob("chunk-*.bin")):
        h.update(f.read_bytes())
    return h.hexdigest()


def run_losses(shards: Path, root: Path) -> list[float]:
    import lightning as L

    from codeclm.train_cli import make_cli

    class LossRecorder(L.Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.losses.append(float(outputs["loss"]))

    rec = LossRecorder()
    make_cli(["fit", *ARGS, "--data.path", str(shards), "--trainer.default_root_dir", str(root)],
             "jpeg", extra_callbacks=[rec])
    return rec.losses


def test_golden_loss_curve(golden_shards, tmp_path):
    losses = run_losses(golden_shards, tmp_path)
    assert len(losses) == 10
    if os.environ.get("CODECLM_REGEN_GOLDEN"):
        import torch
        import transformers

        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps({
            "about": "tests/codeclm/test_training_golden.py: first 10 training losses (nats/token)",
            "args": ARGS, "data_sha256": data_hash(golden_shards), "rtol": RTOL,
            "made_with": {"torch": torch.__version__, "transformers": transformers.__version__},
            "losses": losses}, indent=2) + "\n")
        pytest.skip(f"regenerated {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    assert golden["data_sha256"] == data_hash(golden_shards), (
        "the golden data set changed (fixture or writer): regenerate the golden file")
    assert golden["args"] == ARGS, "the golden run's settings changed: regenerate the golden file"
    # the run learns: the curve falls from ~ln(264) (a byte-only vocabulary)
    assert losses[-1] < losses[0] - 0.2
    for step, (got, want) in enumerate(zip(losses, golden["losses"])):
        assert got == pytest.approx(want, rel=RTOL), f"step {step}: loss {got} != golden {want}"
