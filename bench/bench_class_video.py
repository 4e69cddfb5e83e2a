"""Class conditioning for video: does guidance raise class accuracy of a briefly trained model?

A labelled synthetic clip set (``data_tools.labelled_synth.write_labelled_clips``: 30
clips per class, tiny profile, 64x64 x 8 frames), ``data_tools videos --labels folder``
(drop-label 0.1), the tiny AVC-LM recipe for ``$BENCH_CLASS_STEPS`` steps (default 300)
at context 1024, batch 2, export, then :func:`codeclm.eval.classes.evaluate_classes`
(``avclm eval classes``: 6 clips of 3 frames per class at S = 0, 1, 3, seed 0). Rows:
mean class accuracy per scale and validity; the ratio is accuracy at S = 3 over S = 0
(unconditional). Goal: >= 1.5 (guidance clearly above chance). Measured (see the
README, "Class conditioning and guidance"): not met at 300-1200 steps on 90 clips; the
recipe ``recipes/train-classes-video.sh`` (3,000 clips, 3,000 steps, about 13 CPU
minutes) gives 0.33 / 0.89 / 1.00, ratio 3.0, and its model is measured on every
``make test`` (``tests/avclm/test_class_video_model.py``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS, SAMPLES, FRAMES, SCALES = 30, 6, 3, (0.0, 1.0, 3.0)


def _train(d: Path, steps: int) -> Path:
    from avclm.cli import main
    from codeclm.export import export_checkpoint
    from codeclm.short_fit import short_fit_argv
    from data_tools.labelled_synth import labelled_shards

    shards = labelled_shards(d, "video", PER_CLASS, 384)["shards"]
    assert main(short_fit_argv(ROOT / "recipes" / "avclm-tiny.yaml", shards, d / "run", steps,
                               context=1024, batch=2)) == 0
    export_checkpoint(d / "run" / "checkpoints" / "last.ckpt", d / "model")
    return d / "model"


def run() -> dict:
    from avclm.evaluation import ClipClasses
    from codeclm.eval.classes import ClassEvalConfig, evaluate_classes
    from codeclm.generation.loading import load_model

    steps = int(os.environ.get("BENCH_CLASS_STEPS", "300"))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        lm = load_model(str(_train(d, steps)), "h264", "cpu")
        res = evaluate_classes(lm, ClipClasses(frames=FRAMES), d / "media", d / "ev",
                               ClassEvalConfig(samples=SAMPLES, cfg_scales=list(SCALES),
                                               seeds=[0], batch=SAMPLES, quiet=True))
    acc = {s: res["overall"][f"{s:g}"]["class_accuracy"]["mean"] for s in SCALES}
    rows = [{"what": f"class accuracy S={s:g} ({steps} steps)", "value": acc[s], "unit": ""}
            for s in SCALES]
    rows += [{"what": f"validity S={s:g}", "value": res["overall"][f"{s:g}"]["validity"]["mean"],
              "unit": ""} for s in SCALES]
    return {"name": "class_video", "rows": rows, "ratio": acc[3.0] / max(acc[0.0], 1e-9),
            "goal": ">= 1.5"}
