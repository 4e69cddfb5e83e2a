"""Time to first image: ``jpeglm generate -n 1`` (bundled model) against ``import torch``.

Both are fresh ``python`` processes, run alternately ``REPEATS`` times in this run; the
best time of each counts (the machine may be shared). Goal: the whole command, from
interpreter start to a written JPEG, at most 2x the bare torch import (the floor of any
torch program). Also reported: whether the command imported ``transformers`` (it should
not: generation reads ``config.json`` and ``model.safetensors`` directly).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

REPEATS = 5


def _time(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def run() -> dict:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        gen = [sys.executable, "-m", "jpeglm.cli", "generate", "-n", "1", "--seed", "0",
               "--quiet", "-o"]
        outs = (os.path.join(tmp, f"out{i}") for i in range(REPEATS + 1))
        torch_only = [sys.executable, "-c", "import torch"]
        probe = subprocess.run(gen[:1] + ["-X", "importtime"] + gen[1:] + [next(outs)], env=env,
                               capture_output=True, text=True, check=True)
        imports_transformers = " transformers\n" in probe.stderr
        t_gen, t_torch = [], []
        for _ in range(REPEATS):
            t_torch.append(_time(torch_only, env))
            t_gen.append(_time(gen + [next(outs)], env))
    best_gen, best_torch = min(t_gen), min(t_torch)
    return {
        "name": "startup",
        "rows": [
            {"what": "python -c 'import torch' (best)", "value": best_torch, "unit": "s"},
            {"what": "jpeglm generate -n 1, bundled model (best)", "value": best_gen, "unit": "s"},
            {"what": "generate imports transformers", "value": float(imports_transformers),
             "unit": "(0/1)"},
        ],
        "ratio": best_gen / best_torch,
        "goal": "<= 2",
    }
