"""FSDP2 on CPU: the 7B recipe's strategy (Lightning's ``ModelParallelStrategy``: one
``fully_shard`` unit per Llama block plus the root, bf16-mixed through FSDP2's
``MixedPrecisionPolicy``, gradient checkpointing, clipping, a full-state ``.ckpt``) on 2
gloo processes through the real ``jpeglm train fit``, with the tiny preset.

Run A trains 6 steps and keeps its step-4 checkpoint; run B resumes that checkpoint with
``--ckpt_path last`` and must log the very losses of A's steps 4-5 and end with A's weights
(exact resume: model, optimizer, schedule and loader position). A's last checkpoint goes
through ``jpeglm export`` unchanged, its weights are the ones the ranks held (gathered
from their shards), and the exported model generates a valid JPEG."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
STEPS, KEEP = 6, 4


def fit(shards: Path, root: Path, digests: Path, *extra: str) -> None:
    callback = (f'--trainer.callbacks=[{{"class_path": "training_callbacks.RankDigest", '
                f'"init_args": {{"out": "{digests}"}}}}]')
    argv = [sys.executable, "-m", "jpeglm.cli", "train", "fit",
            "--config", str(ROOT / "recipes" / "jpeglm-7b.yaml"),
            # the recipe at toy scale on 2 CPU processes; strategy, precision, gradient
            # checkpointing and clipping stay the recipe's
            "--model.preset", "tiny", "--model.attn_implementation", "sdpa",
            "--model.warmup_steps", "2", "--model.log_samples", "0",
            "--data.path", str(shards), "--data.context", "256", "--data.batch_size", "2",
            "--data.val_fraction", "0.2", "--data.num_workers", "0",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2",
            "--trainer.strategy.data_parallel_size", "2",
            "--trainer.max_steps", str(STEPS), "--trainer.val_check_interval", "2",
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
            "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
            "--checkpoint.every_n_train_steps", "2", callback, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(argv, check=False, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-4000:]


def losses(root: Path) -> dict[tuple[str, int], float]:
    version = max((root / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    with open(version / "metrics.csv") as f:
        return {(key, int(row["step"])): float(row[key]) for row in csv.DictReader(f)
                for key in ("train/loss", "val/loss") if row.get(key)}


def ranks(digests: Path) -> list[dict]:
    return [json.loads((digests / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_fsdp2_two_cpu_ranks_checkpoint_resume_export_generate(jpeg_shards, tmp_path):
    import torch
    from PIL import Image
    from safetensors.torch import load_file

    from codeclm.export import load_checkpoint
    from codeclm.profile import load_profile
    from jpeglm.cli import main as jpeglm

    run_a, run_b = tmp_path / "a", tmp_path / "b"
    fit(jpeg_shards, run_a, tmp_path / "digest_a", "--checkpoint.save_top_k", "-1")
    a = ranks(tmp_path / "digest_a")
    assert all(r["world_size"] == 2 and r["global_step"] == STEPS for r in a)
    assert a[0]["first_batch"] != a[1]["first_batch"]  # each rank its own data
    # really sharded: every parameter is a DTensor and each rank holds about half of them
    assert all(r["sharded"] > 0 and r["local_numel"] < 0.6 * r["numel"] for r in a)
    assert a[0]["params"] == a[1]["params"]  # the gathered model is one model
    assert a[0]["checkpoint_io"] == "AtomicCheckpointIO"  # the single-file save is atomic

    ckpt = run_a / "checkpoints" / "last.ckpt"
    state = load_checkpoint(ckpt)
    assert state["global_step"] == STEPS and "codeclm" in state
    assert state["state_dict"]["model.model.embed_tokens.weight"].dtype == torch.float32

    # export reads the FSDP2 checkpoint as it is; its weights are what the ranks held
    model_dir = tmp_path / "model"
    assert jpeglm(["export", str(ckpt), "-o", str(model_dir)]) == 0
    h = hashlib.sha256()
    for name, t in sorted(("model." + k, v) for k, v in load_file(model_dir / "model.safetensors")
                          .items()):
        h.update(name.encode())
        h.update(t.contiguous().numpy().tobytes())
    assert h.hexdigest() == a[0]["params"]

    # ... and it generates a valid JPEG
    images = tmp_path / "images"
    assert jpeglm(["generate", "--model", str(model_dir), "-n", "1", "--seed", "0",
                   "--device", "cpu", "--quiet", "-o", str(images)]) == 0
    (jpg,) = images.glob("*.jpg")
    with Image.open(jpg) as im:
        assert im.format == "JPEG"
        im.load()
        profile = load_profile(model_dir)
        assert im.size == (profile.width, profile.height)

    # exact resume: B starts from A's step-4 checkpoint as its `last` and trains on to 6
    (run_b / "checkpoints").mkdir(parents=True)
    shutil.copy(run_a / "checkpoints" / f"epoch=0-step={KEEP}.ckpt",
                run_b / "checkpoints" / "last.ckpt")
    fit(jpeg_shards, run_b, tmp_path / "digest_b", "--ckpt_path", "last")
    b = ranks(tmp_path / "digest_b")
    assert all(r["global_step"] == STEPS for r in b)
    resumed, full = losses(run_b), losses(run_a)
    assert min(step for _, step in resumed) == KEEP  # continued from the saved step
    assert resumed == {k: v for k, v in full.items() if k[1] >= KEEP}
    assert b[0]["params"] == a[0]["params"]
