"""Sampler speed against ``transformers`` ``model.generate``, and streaming latency.

Same saved model directory (random ``tiny`` and ``small`` Llama presets with an H.264
tokenizer), same settings (T=1.0, top-k 50, top-p 0.9, EOS blocked so both sides
write exactly N tokens), same run: each side is timed five times, alternating, and
the best time counts (the machine is shared). Tokens/s include the prefill of a
64-token prompt. Batch 8 uses 8 prompts of the same length (``generate`` would need
padding otherwise). Both sides run with the thread count the CLIs choose for the model
(:func:`codeclm.threads.choose_threads` without the environment's say: one thread for
these presets, also under ``make bench``, which sets ``OMP_NUM_THREADS=2``), reported in
the rows. Besides wall-clock time the ratio in
CPU time (``time.process_time``) is reported: on a loaded machine it moves less.

Our side runs the native skinny product of the decode step
(:mod:`codeclm.generation.native`) where it is built; a side without it (``torch.mm``,
``CODECLM_NATIVE=0``) runs in the same alternation and its gain is a row.

The small preset at batch 8 is also run with the opt-in ``torch.compile`` of the decode
step (:mod:`codeclm.generation.compiled`), a third side in the same alternation. Its
compile time is reported next to its ratio, twice: with a fresh, empty inductor cache
(cold) and again after ``compiled.reset()`` with that cache filled (warm, as a second
process would see it); each is the first compiled run's time minus the eager run's just
before it. Also: how many runs the compiled step takes to repay a cold compile.

Streaming latency: ``avclm.generate`` on the tiny model and tiny profile; for each
frame, the time from the sampling of the token that completes its last slice NAL to
the decoded RGB frame (goal < 5 ms on CPU). The NAL itself is known complete one token
after its last byte (the next start code); that one decode step is reported too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

N_TOKENS = 128
PROMPT = 64
REPEATS = 5


def _model_dir(root: Path, preset: str, tok, profile) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    from codeclm.model_dir import save_model_dir
    from codeclm.models import llama_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(preset, tok.vocab_size, 2048))
    return save_model_dir(model, tok, profile, root / preset)


@contextlib.contextmanager
def _env(name: str, value: str):
    """The environment variable ``name`` set to ``value`` inside, as it was after."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _ours(lm, prompts, compile: bool = False, native: bool = True) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``generate`` call (``compile``: the compiled step;
    ``native=False``: ``torch.mm`` instead of the native kernel, ``CODECLM_NATIVE=0``)."""
    from codeclm.generation import native as native_mod
    from codeclm.generation.sampling_config import SamplingConfig
    from codeclm.generation.session import generate

    with _env(native_mod.ENV, "1" if native else "0"):
        t, c = time.perf_counter(), time.process_time()
        res = generate(lm.weights, lm.tokenizer, prompts, SamplingConfig(1.0, 50, 0.9, seed=0),
                       max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS, modality="h264",
                       compile=compile)
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


def _prompts(lm, batch: int) -> list[list[int]]:
    import numpy as np

    rng = np.random.default_rng(batch)
    return [
        [lm.tokenizer.bos_id] + rng.integers(11, lm.tokenizer.vocab_size, PROMPT - 1).tolist()
        for _ in range(batch)
    ]


def _speed(lm, batch: int, compiled: bool = False) -> dict:
    """Tokens/s summed over the batch (batch * N / best wall time) of each side (``ours``,
    ``ours_mm``: without the native kernel, ``hf``, and with ``compiled``
    ``ours_compiled``), and the ratios of the best CPU times against ``hf``
    (``cpu_<side>``)."""
    prompts = _prompts(lm, batch)
    sides = {"ours": lambda: _ours(lm, prompts), "hf": lambda: _hf(lm, prompts),
             "ours_mm": lambda: _ours(lm, prompts, native=False)}
    if compiled:
        sides["ours_compiled"] = lambda: _ours(lm, prompts, compile=True)
    _ours(lm, prompts[:1])  # warm-up both paths
    _hf(lm, prompts[:1])
    times: dict[str, list] = {k: [] for k in sides}
    for _ in range(REPEATS):
        for k, run in sides.items():
            times[k].append(run())
    best = {k: (min(t[0] for t in v), min(t[1] for t in v)) for k, v in times.items()}
    out = {k: batch * N_TOKENS / b[0] for k, b in best.items()}
    out.update({f"cpu_{k}": best["hf"][1] / b[1] for k, b in best.items() if k != "hf"})
    out["best_s"] = {k: b[0] for k, b in best.items()}
    return out


def _stream_gbs() -> float:
    """This machine's single-thread streaming read bandwidth, GB/s: the best of 5 sums
    over a 256 MiB float32 tensor (far beyond any cache)."""
    import torch

    big = torch.ones(64 * 1024 * 1024)
    best = min(_timed_once(big.sum) for _ in range(5))
    return big.numel() * 4 / best / 1e9


def _timed_once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _bytes_per_step(lm, batch: int) -> float:
    """Bytes a decode step must read at the benchmark's mean cache length: every weight
    but the embedding table (a step reads ``batch`` of its rows), and each row's keys
    and values (fp32)."""
    cfg = lm.weights.config
    emb = lm.weights["model.embed_tokens.weight"]
    weights = (lm.weights.num_parameters() - emb.numel() + batch * emb.shape[1]) * 4
    mean_len = PROMPT + N_TOKENS / 2
    kv = (cfg.num_hidden_layers * 2 * batch * cfg.num_key_value_heads * mean_len
          * cfg.head_dim * 4)
    return float(weights + kv)


def _traffic_rows(lm, batch: int, sp: dict, stream: float) -> list[dict]:
    """What each side's decode step reads per second against the streaming bandwidth: a
    side near it is bound by memory, where a leaner step cannot gain."""
    need = _bytes_per_step(lm, batch)
    what = f"small batch {batch}"
    rows = [{"what": f"{what}: bytes a decode step reads (weights + mean KV)",
             "value": need / 1e6, "unit": "MB"},
            {"what": "single-thread streaming read bandwidth", "value": stream, "unit": "GB/s"}]
    for side in ("ours", "hf"):
        step = sp["best_s"][side] / N_TOKENS  # (the prefill is a small part)
        rows.append({"what": f"{what}: {side} reads at (share of streaming)",
                     "value": need / step / 1e9 / stream, "unit": "x"})
    return rows


def _compile_times(lm, batch: int) -> dict:
    """Compile time of the decode step (seconds beyond an eager run), cold (a fresh inductor
    cache directory) and warm (that directory filled, in-memory caches reset); or the
    failure."""
    from codeclm.generation import compiled

    prompts = _prompts(lm, batch)
    out = {}
    with tempfile.TemporaryDirectory() as cache, _env("TORCHINDUCTOR_CACHE_DIR", cache):
        for kind in ("cold", "warm"):
            compiled.reset()
            eager = _ours(lm, prompts)[0]
            out[kind] = _ours(lm, prompts, compile=True)[0] - eager
    if compiled.failure is not None:
        return {"failure": compiled.failure}
    return out


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


def _compiled_rows(preset: str, batch: int, sp: dict, comp: dict) -> tuple[list, dict]:
    """The rows of the compiled side, and its summary for the JSON (ratios, compile s)."""
    what = f"{preset} batch {batch}"
    if "failure" in comp:
        return ([{"what": f"{what}: torch.compile failed ({comp['failure']})", "value": None,
                  "unit": ""}], {"failure": comp["failure"]})
    ratio = sp["ours_compiled"] / sp["hf"]
    saved = sp["best_s"]["ours"] - sp["best_s"]["ours_compiled"]  # s per run
    repay = comp["cold"] / saved if saved > 0 else None
    info = {"ratio": ratio, "ratio_cpu": sp["cpu_ours_compiled"], "compile_s_cold": comp["cold"],
            "compile_s_warm": comp["warm"], "runs_to_repay_cold_compile": repay}
    return [
        {"what": f"{what}: ours, compiled decode step", "value": sp["ours_compiled"],
         "unit": "tok/s"},
        {"what": f"{what}: ratio, compiled", "value": ratio, "unit": "x"},
        {"what": f"{what}: ratio in CPU time, compiled", "value": sp["cpu_ours_compiled"],
         "unit": "x"},
        {"what": f"{what}: compile time, cold inductor cache", "value": comp["cold"],
         "unit": "s"},
        {"what": f"{what}: compile time, warm inductor cache", "value": comp["warm"],
         "unit": "s"},
        {"what": f"{what}: compiled runs to repay a cold compile", "value": repay,
         "unit": "runs" if repay is not None else "(never: the compiled step is not faster)"},
    ], info


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
    from codeclm.threads import apply_threads, choose_threads
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
            # as the CLIs choose with no OMP_NUM_THREADS set (`make bench` sets it to 2
            # for the other benchmarks); both sides
            threads = apply_threads(lm.weights.num_parameters(),
                                    requested=choose_threads(lm.weights.num_parameters(),
                                                             env=False))
            rows.append({"what": f"{preset}: torch threads (both sides)", "value": threads,
                         "unit": ""})
            for batch in (1, 8):
                with_compiled = (preset, batch) == ("small", 8)
                comp = _compile_times(lm, batch) if with_compiled else {}
                sp = _speed(lm, batch, with_compiled and "failure" not in comp)
                ours, hf = sp["ours"], sp["hf"]
                ratios[(preset, batch)] = ours / hf
                ratios[(preset, batch, "cpu")] = sp["cpu_ours"]
                rows += [
                    {"what": f"{preset} batch {batch}: ours", "value": ours, "unit": "tok/s"},
                    {
                        "what": f"{preset} batch {batch}: transformers generate",
                        "value": hf,
                        "unit": "tok/s",
                    },
                    {"what": f"{preset} batch {batch}: ratio", "value": ours / hf, "unit": "x"},
                    {"what": f"{preset} batch {batch}: ratio in CPU time",
                     "value": sp["cpu_ours"], "unit": "x"},
                    {"what": f"{preset} batch {batch}: ours without the native kernel "
                     "(torch.mm)", "value": sp["ours_mm"], "unit": "tok/s"},
                    {"what": f"{preset} batch {batch}: native kernel / torch.mm",
                     "value": ours / sp["ours_mm"], "unit": "x"},
                ]
                if with_compiled:
                    compiled_rows, compiled_info = _compiled_rows(preset, batch, sp, comp)
                    rows += compiled_rows
                    rows += _traffic_rows(lm, batch, sp, _stream_gbs())
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
            "small_batch8_compiled": compiled_info,
            "latency_goal": "< 5 ms (tiny profile, CPU)", "latency_ms": lat}
