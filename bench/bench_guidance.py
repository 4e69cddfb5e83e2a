"""Classifier-free guidance cost: guided vs plain conditional image sampling, per sample.

The bundled image model with three class tokens added (embedding rows grown by
``resize_token_embeddings``), saved as a model directory; ``jpeglm.generate_images`` with
the scan grammar, ``--class a`` at ``cfg_scale`` 1 (plain conditional sampling: one cache
row per sample) and at 3 (guided: two cache rows per sample, one decode step of 2B rows),
same seeds, batch 1 and batch 8, in one run. Each setting is timed three times,
alternating, and the best time counts (the machine is shared). Per-sample seconds include
everything ``generate_images`` does with a loaded model (prefill, grammar masks, decode to
pixels; not the model load); images
differ in length, so seconds per token are reported too. Goal: guided at most 2.1x plain
per sample at both batch sizes (the ratio reported is the larger of the two).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

REPEATS = 3
COUNTS = {1: 6, 8: 16}  # samples per timed run, by batch size


def _labelled_model(root: Path) -> Path:
    from codeclm.generation.loading import load_model
    from codeclm.labels import add_class_tokens
    from codeclm.model_dir import save_model_dir

    lm = load_model(None, "jpeg", "cpu")
    tok = add_class_tokens(lm.tokenizer, ["a", "b", "c"])
    model = lm.model
    model.resize_token_embeddings(tok.vocab_size)
    return save_model_dir(model, tok, lm.profile, root / "labelled")


def _run(lm, batch: int, scale: float) -> tuple[float, int]:
    """(seconds, tokens sampled) for COUNTS[batch] images from the loaded model ``lm``."""
    from codeclm.generation.sampling_config import SamplingConfig
    from jpeglm.generate import DoneEvent, generate_images

    t = time.perf_counter()
    events = list(generate_images(lm, COUNTS[batch], batch=batch, class_name="a",
                                  cfg_scale=scale, config=SamplingConfig(seed=0)))
    assert isinstance(events[-1], DoneEvent)
    stats = events[-1].stats
    return time.perf_counter() - t, stats["tokens_sampled"]


def run() -> dict:
    from codeclm.generation.loading import load_model

    rows, ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        lm = load_model(str(_labelled_model(Path(tmp))), "jpeg", "cpu")  # loaded once
        _run(lm, 1, 3.0)  # warm-up
        for batch in (1, 8):
            best: dict[float, tuple[float, int]] = {}
            for _ in range(REPEATS):
                for scale in (1.0, 3.0):
                    dt, n = _run(lm, batch, scale)
                    if scale not in best or dt < best[scale][0]:
                        best[scale] = (dt, n)
            per = {s: best[s][0] / COUNTS[batch] for s in best}
            per_tok = {s: best[s][0] / best[s][1] for s in best}
            ratios.append(per[3.0] / per[1.0])
            rows += [
                {"what": f"batch {batch}: plain conditional, s/sample", "value": per[1.0],
                 "unit": "s"},
                {"what": f"batch {batch}: guided (S=3), s/sample", "value": per[3.0], "unit": "s"},
                {"what": f"batch {batch}: guided / plain per sample", "value": ratios[-1],
                 "unit": "x"},
                {"what": f"batch {batch}: guided / plain per token",
                 "value": per_tok[3.0] / per_tok[1.0], "unit": "x"},
            ]
    return {"name": "guidance", "rows": rows, "ratio": max(ratios),
            "goal": "<= 2.1x per sample (batch 1 and 8)"}
