"""Exact resume: SIGKILL a run right after its step-4 checkpoint, resume with
``--ckpt_path last``, and get the very losses of an uninterrupted run (model, optimizer,
LR schedule and the litdata loader position all restored; the resumed part crosses an
epoch boundary and runs validation)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
KILL_AFTER = 4
STEPS = 12


def args(shards: Path, root: Path) -> list[str]:
    return ["train", "fit", "--seed_everything", "7", "--model.preset", "tiny",
            "--model.lr", "1e-2", "--model.warmup_steps", "2", "--model.log_samples", "0",
            "--data.path", str(shards), "--data.context", "64", "--data.batch_size", "16",
            "--data.val_fraction", "0.1", "--data.num_workers", "1",
            "--trainer.max_steps", str(STEPS), "--trainer.val_check_interval", "3",
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
            "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
            "--checkpoint.every_n_train_steps", str(KILL_AFTER)]


def env() -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = os.pathsep.join([str(HERE), e.get("PYTHONPATH", "")])
    return e


def cmd(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "jpeglm.cli", *argv]


def losses(root: Path) -> dict[tuple[str, int], float]:
    """{(metric, step): value} for train/loss and val/loss of the newest log version."""
    version = max((root / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    out = {}
    with open(version / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for key in ("train/loss", "val/loss", "train/bpb"):
                if row.get(key):
                    out[(key, int(row["step"]))] = float(row[key])
    return out


@pytest.mark.slow
def test_sigkill_and_resume_matches_uninterrupted_run(golden_shards, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run(cmd(args(golden_shards, ref)), env=env(), check=True, capture_output=True,
                   timeout=300)

    flag = tmp_path / "paused"
    pause = (f'--trainer.callbacks=[{{"class_path": "training_callbacks.PauseAt", '
             f'"init_args": {{"step": {KILL_AFTER}, "flag": "{flag}"}}}}]')
    proc = subprocess.Popen(cmd(args(golden_shards, run) + [pause]), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not flag.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the run never reached the pause point"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    from codeclm.export import load_checkpoint

    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == KILL_AFTER
    resumed = subprocess.run(cmd(args(golden_shards, run) + ["--ckpt_path", "last"]),
                             check=False, env=env(), capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]

    want, got = losses(ref), losses(run)
    after = {k: v for k, v in want.items() if k[1] >= KILL_AFTER}
    assert {k for k in got if k[0] == "train/loss"} == {k for k in after if k[0] == "train/loss"}
    assert sum(k[0] == "val/loss" for k in got) >= 2
    for k, v in got.items():
        assert k in after, k
        assert v == pytest.approx(after[k], abs=1e-6, rel=0), k
