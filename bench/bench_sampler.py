"""Sampler speed against ``transformers`` ``model.generate``, and streaming latency.

Same saved model directory (random ``tiny`` and ``small`` Llama presets with an H.264
tokenizer), same settings (T=1.0, top-k 50, top-p 0.9, EOS blocked so both sides
write exactly N tokens), same run: each side is timed three times, alternating, and
the best time counts (the machine is shared). Tokens/s include the prefill of a
64-token prompt. Batch 8 uses 8 prompts of the same length (``generate`` would need
padding otherwise). Both sides run with the thread count the CLIs choose for the model
(:func:`codeclm.threads.apply_threads`: one thread for these presets, unless
``OMP_NUM_THREADS`` is set), reported in the rows. Besides wall-clock time the ratio in
CPU time (``time.process_time``) is reported: on a loaded machine it moves less.

Streaming latency: ``avclm.generate`` on the tiny model and tiny profile; for each
frame, the time from the sampling of the token that completes its last slice NAL to
the decoded RGB frame (goal < 5 ms on CPU). The NAL itself is known complete one token
after its last byte (the next start code); that one decode step is reported too.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

N_TOKENS = 128
PROMPT = 64
REPEATS = 3


def _model_dir(root: Path, preset: str, tok, profile) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    from codeclm.model_dir import save_model_dir
    from codeclm.models import llama_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(preset, tok.vocab_size, 2048))
    return save_model_dir(model, tok, profile, root / preset)


def _ours(lm, prompts) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``generate`` call."""
    from codeclm.generation.sampling_config import SamplingConfig
    from codeclm.generation.session import generate

    t, c = time.perf_counter(), time.process_time()
    res = generate(lm.weights, lm.tokenizer, prompts, SamplingConfig(1.0, 50, 0.9, seed=0),
                   max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS, modality="h264")
    dt, dc = time.perf_counter() - t, time.process_time() - c
    assert all(len(x) == N_TOKENS for x in res.tokens)
    return dt, dc


def _hf(lm, prompts) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``model.generate`` call."""
    import torch

    ids = torch.tensor(prompts)
    torch.manual_seed(0)
    t, c = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                temperature=1.0, top_k=50, top_p=0.9, max_new_tokens=N_TOKENS,
                                min_new_tokens=N_TOKENS, pad_token_id=lm.tokenizer.pad_id)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    assert out.shape[1] == PROMPT + N_TOKENS
    return dt, dc


def _speed(lm, batch: int) -> tuple[float, float, float]:
    """(ours, hf) tokens/s summed over the batch (batch * N / best wall time), and the
    ratio of the best CPU times (hf / ours)."""
    import numpy as np

    rng = np.random.default_rng(batch)
    prompts = [
        [lm.tokenizer.bos_id] + rng.integers(11, lm.tokenizer.vocab_size, PROMPT - 1).tolist()
        for _ in range(batch)
    ]
    _ours(lm, prompts[:1])  # warm-up both paths
    _hf(lm, prompts[:1])
    ours, hf = [], []
    for _ in range(REPEATS):
        ours.append(_ours(lm, prompts))
        hf.append(_hf(lm, prompts))
    best = [min(t[i] for t in side) for side in (ours, hf) for i in (0, 1)]
    return batch * N_TOKENS / best[0], batch * N_TOKENS / best[2], best[3] / best[1]


def _latency(model_dir: Path) -> dict:
    import numpy as np

    from avclm.generate import FrameEvent, generate_video
    from codeclm.generation.sampling_config import SamplingConfig

    lat, step = [], None
    for ev in generate_video(model_dir, 12, config=SamplingConfig(seed=0), max_nal_tokens=24,
                             max_attempts=2):
        if isinstance(ev, FrameEvent) and ev.source == "model":
            lat.append(ev.latency_s)
        elif not isinstance(ev, FrameEvent) and hasattr(ev, "stats"):
            step = ev.stats["decode_s"] / max(ev.stats["steps"], 1)
    return {"mean_ms": 1e3 * float(np.mean(lat)), "median_ms": 1e3 * float(np.median(lat)),
            "max_ms": 1e3 * float(np.max(lat)),
            "step_ms": 1e3 * step}


def run() -> dict:
    import torch

    before = torch.get_num_threads()
    try:
        return _run()
    finally:
        torch.set_num_threads(before)  # the benchmarks after this one get torch's setting


def _run() -> dict:
    import numpy as np

    from avclm.codec import encode_frames
    from avclm.profile import TINY
    from codeclm.model_dir import load_model_dir
    from codeclm.threads import apply_threads
    from codeclm.tokenizer import ByteTokenizer

    rng = np.random.default_rng(0)
    clips = []
    for s in range(4):
        frames = []
        base = rng.integers(0, 255, 3)
        for i in range(TINY.frames):
            a = np.zeros((TINY.height, TINY.width, 3), np.uint8)
            a[:] = base
            a[10:30, (4 * i + 7 * s) % 40:(4 * i + 7 * s) % 40 + 20] = 255 - base
            frames.append(a)
        clips.append(encode_frames(frames, TINY))
    tok = ByteTokenizer.train(clips, 512, "h264")
    rows, ratios = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("tiny", "small"):
            d = _model_dir(Path(tmp), preset, tok, TINY)
            lm = load_model_dir(d, modality="h264")
            threads = apply_threads(lm.weights.num_parameters())  # as the CLIs do; both sides
            rows.append({"what": f"{preset}: torch threads (both sides)", "value": threads,
                         "unit": ""})
            for batch in (1, 8):
                ours, hf, cpu_ratio = _speed(lm, batch)
                ratios[(preset, batch)] = ours / hf
                ratios[(preset, batch, "cpu")] = cpu_ratio
                rows += [
                    {"what": f"{preset} batch {batch}: ours", "value": ours, "unit": "tok/s"},
                    {
                        "what": f"{preset} batch {batch}: transformers generate",
                        "value": hf,
                        "unit": "tok/s",
                    },
                    {"what": f"{preset} batch {batch}: ratio", "value": ours / hf, "unit": "x"},
                    {"what": f"{preset} batch {batch}: ratio in CPU time", "value": cpu_ratio,
                     "unit": "x"},
                ]
        lat = _latency(Path(tmp) / "tiny")
    rows += [
        {
            "what": "tiny stream: last token -> decoded frame (mean)",
            "value": lat["mean_ms"],
            "unit": "ms",
        },
        {
            "what": "tiny stream: last token -> decoded frame (median)",
            "value": lat["median_ms"],
            "unit": "ms",
        },
        {
            "what": "tiny stream: last token -> decoded frame (max)",
            "value": lat["max_ms"],
            "unit": "ms",
        },
        {
            "what": "tiny stream: +1 token to see the NAL end (one step)",
            "value": lat["step_ms"],
            "unit": "ms",
        },
    ]
    return {"name": "sampler", "rows": rows, "ratio": ratios[("tiny", 1)], "goal": ">= 3",
            "ratio_small_batch1": ratios[("small", 1)],
            "ratio_small_batch8": ratios[("small", 8)], "goal_small_batch8": ">= 2",
            "ratio_small_batch8_cpu": ratios[("small", 8, "cpu")],
            "latency_goal": "< 5 ms (tiny profile, CPU)", "latency_ms": lat}
