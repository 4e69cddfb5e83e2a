"""The data pipeline (``python -m data_tools images``) vs a bare Pillow decode + save.

Same files, same run: ``N`` synthetic 256x256 PNGs (shapes and lavfi sources, the
paper profile's size). The baseline opens each file with Pillow, converts it to RGB and
saves a JPEG (quality 25) to a file: the least any image-to-JPEG job does. The pipeline
is the whole ``images`` job with the paper profile and a 320-entry tokenizer (trained
beforehand, not timed): listing, decode, canonical encode, tokenize, per-input cache
file, shard writing, stats. The ratio is pipeline images/s with 1 worker divided by
baseline images/s (goal >= 0.7: canonical encoding, tokenization and bookkeeping may
cost at most ~30% on top of decode + save).

Informational rows: worker scaling, 1 vs 2 workers over the images copied
``SCALING_COPIES`` times (spawned processes, start-up included; a 2-core machine busy
with anything else shows little gain), and the per-image stages alone.
The canonical encode costs about what the baseline does (it *is* a decode + JPEG save),
so tokenizing and bookkeeping must fit in the remaining ~40%. Hugging Face
``tokenizers`` alone costs about as much as the encode on ~5 KB of JPEG bytes (ratio
~0.35-0.4 when the pipeline used it); :mod:`codeclm.fast_bpe` gives the same ids in a
fraction of that. Both tokenizers are timed here on the same streams.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

N_IMAGES = 240
#: the worker-scaling rows run over the images this many times (distinct file names), so
#: that ~1 s of process start-up does not hide the steady-state throughput
SCALING_COPIES = 4


def _pillow_baseline(files: list[Path], out: Path) -> float:
    from PIL import Image

    out.mkdir()
    t0 = time.perf_counter()
    for i, f in enumerate(files):
        with Image.open(f) as im:
            im.convert("RGB").save(out / f"{i}.jpg", "JPEG", quality=25)
    return time.perf_counter() - t0


def _pipeline(src: Path, out: Path, tok: Path, workers: int, n: int = N_IMAGES) -> float:
    from codeclm.profile import get_profile
    from data_tools.pipeline import build_dataset

    t0 = time.perf_counter()
    r = build_dataset(src, out, "image", get_profile("jpeg", "paper"), tok, workers=workers,
                      show_progress=False)
    dt = time.perf_counter() - t0
    assert r.samples == n, r
    return dt


def _stages(files: list[Path], profile, tok: Path) -> tuple[float, float, float]:
    """Seconds for the per-image stages alone: canonical encode, tokenize (the pipeline's
    fast encoder), tokenize with Hugging Face ``tokenizers`` (same ids)."""
    from codeclm.modality import modality_for
    from codeclm.tokenizer import ByteTokenizer, bytes_to_text

    m, t = modality_for(profile), ByteTokenizer.load(tok)
    assert t.fast is not None
    t0 = time.perf_counter()
    datas = [m.encode_path(str(f)) for f in files]
    t1 = time.perf_counter()
    fast = [t.encode_array(d) for d in datas]
    t2 = time.perf_counter()
    hf = [t.backend.encode(bytes_to_text(d), add_special_tokens=False).ids for d in datas]
    t3 = time.perf_counter()
    assert all(a[1:-1].tolist() == b for a, b in zip(fast, hf))
    return t1 - t0, t2 - t1, t3 - t2


def run() -> dict:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from codeclm.profile import get_profile
    from data_tools.bpe import train_bpe
    from data_tools.synth import synth

    profile = get_profile("jpeg", "paper")
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline."))
    try:
        src = tmp / "src"
        synth(src, "image", profile, N_IMAGES, seed=0, sources=("shapes", "testsrc2", "mandelbrot"))
        files = sorted(src.glob("*.png"))
        trained = train_bpe(src, "image", profile, 320, limit=100, workers=1)
        tok = trained.tokenizer.save(tmp / "tok.json")
        # warm the file cache and imports on both sides, then measure (best of 2)
        _pillow_baseline(files[:10], tmp / "warm")
        base = min(_pillow_baseline(files, tmp / f"pil{i}") for i in range(2))
        one = min(_pipeline(src, tmp / f"p1_{i}", tok, 1) for i in range(2))
        many = tmp / "many"  # the scaling set: every image SCALING_COPIES times
        many.mkdir()
        for c in range(SCALING_COPIES):
            for f in files:
                shutil.copyfile(f, many / f"{c}-{f.name}")
        n_many = SCALING_COPIES * N_IMAGES
        one_many = _pipeline(many, tmp / "s1", tok, 1, n_many)
        two_many = _pipeline(many, tmp / "s2", tok, 2, n_many)
        stats = __import__("json").loads((tmp / "p1_0" / "stats.json").read_text())
        enc, tokz, tokz_hf = _stages(files, profile, tok)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rate = lambda t: N_IMAGES / t
    ratio = rate(one) / rate(base)
    return {
        "name": "data_pipeline",
        "rows": [
            {"what": "Pillow decode + JPEG save (baseline)", "value": rate(base),
             "unit": "images/s"},
            {"what": "data_tools images, 1 worker", "value": rate(one), "unit": "images/s"},
            {"what": f"data_tools images, {n_many} images, 1 worker", "value": n_many / one_many,
             "unit": "images/s"},
            {"what": f"data_tools images, {n_many} images, 2 workers (start-up included)",
             "value": n_many / two_many, "unit": "images/s"},
            {"what": "speed-up of 2 workers over 1", "value": one_many / two_many, "unit": "x"},
            {"what": "stage: canonical encode only (decode+fit+JPEG)", "value": rate(enc),
             "unit": "images/s"},
            {"what": "stage: tokenize only (codeclm.fast_bpe, 320 vocab)", "value": rate(tokz),
             "unit": "images/s"},
            {"what": "stage: tokenize only (HF tokenizers, same ids)", "value": rate(tokz_hf),
             "unit": "images/s"},
            {"what": "tokens per image (paper profile, 320 vocab)",
             "value": stats["tokens_per_sample"]["mean"], "unit": "tokens"},
        ],
        "ratio": ratio,
        "goal": ">= 0.7",
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
