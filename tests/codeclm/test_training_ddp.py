"""Distributed data parallel on CPU: 2 processes (gloo) train a few steps through the real
CLI; both ranks must end with bit-identical weights while having read different data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.slow
def test_ddp_two_cpu_ranks_stay_identical(golden_shards, tmp_path):
    digests = tmp_path / "digests"
    callback = (f'--trainer.callbacks=[{{"class_path": "training_callbacks.RankDigest", '
                f'"init_args": {{"out": "{digests}"}}}}]')
    argv = [sys.executable, "-m", "jpeglm.cli", "train", "fit", "--seed_everything", "3",
            "--model.preset", "tiny", "--model.warmup_steps", "2", "--model.log_samples", "0",
            "--data.path", str(golden_shards), "--data.context", "64", "--data.batch_size", "4",
            "--data.val_fraction", "0.1",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--trainer.max_steps", "4", "--trainer.val_check_interval", "2",
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", str(tmp_path / "run"), callback]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    done = subprocess.run(argv, check=False, env=env, capture_output=True, timeout=400)
    assert done.returncode == 0, done.stderr.decode()[-4000:]

    ranks = [json.loads((digests / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["global_step"] == 4 for r in ranks)
    assert ranks[0]["params"] == ranks[1]["params"]
    assert ranks[0]["first_batch"] != ranks[1]["first_batch"]  # each rank its own shard
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_ddp_too_few_blocks_for_two_ranks_fails_in_one_line_on_each(golden_shards, tmp_path):
    """115 blocks, batches of 58: one process would get a batch (115 >= 58) but 2 need 116.
    litdata's split gives each rank 0 batches and Lightning's fit used to stop at once with
    exit 0, nothing trained; now both ranks print the one line and exit 1, before training.
    Unbuffered (as on many clusters) the two ranks' lines used to run into one about half
    the time: ``print`` wrote the newline separately."""
    argv = [sys.executable, "-m", "jpeglm.cli", "train", "fit", "--model.preset", "tiny",
            "--model.log_samples", "0", "--data.path", str(golden_shards),
            "--data.context", "64", "--data.batch_size", "58", "--data.val_fraction", "0",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", str(tmp_path / "run")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run(argv, check=False, env=env, capture_output=True, timeout=120)
    err = done.stderr.decode()
    assert done.returncode == 1, err[-4000:]
    line = (f"jpeglm: error: {golden_shards}: 115 training blocks of 65 tokens for 2 processes; "
            "each process needs at least one batch of 58 (116 blocks in all): add data, lower "
            "--data.batch_size or use fewer devices")
    errors = [x for x in err.splitlines() if x.startswith("jpeglm: error:")]
    assert errors == [line, line], err[-4000:]  # rank 0 and rank 1
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()
