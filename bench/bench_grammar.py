"""Constrained vs unconstrained sampling speed: the JPEG scan grammar's overhead.

The same tiny random ``LlamaForCausalLM`` (hidden 64, 2 layers, vocabulary 320 = a BPE
tokenizer trained here on canonical encodings of the bundled samples) samples JPEG-LM
streams of the ``tiny`` profile (64x64, 16 MCUs) in a plain KV-cache loop
(``model(ids, past_key_values=..., use_cache=True)``, softmax + multinomial). The
constrained loop differs only by ``logits + grammar.allowed_bias()`` before sampling and
``grammar.advance()`` after.

This machine is shared, so the two loops run in *lockstep*: every step first advances
an unconstrained stream, then a constrained one, each timed on its own, so load
changes hit both alike. A run lasts until the constrained stream emits EOS; the ratio
is the median over runs of (unconstrained seconds / constrained seconds) for the same
number of tokens, i.e. constrained tokens/s over unconstrained tokens/s (wall clock; the
same ratio by thread CPU time, which preemption by other processes does not inflate, is
reported too). The grammar's
mask cache is shared by all generations of a vocabulary (like an FSM index): ``WARM``
constrained generations run first; the first (cold) one is reported on its own row.
Every constrained stream is checked with the strict decoder.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

N_MAX = 1500        # safety cap on tokens per run (a random-model tiny stream: ~750)
RUNS = 5
WARM = 3            # constrained generations before the timed runs (the first is "cold")


def _vocab(profile):
    from PIL import Image

    from codeclm.tokenizer import ByteTokenizer
    from jpeglm import codec
    from jpeglm.assets import sample_paths
    from jpeglm.profile import PROFILES

    # BPE learns from scan data mostly: the bundled photos at the paper size plus
    # smooth random images at the tiny size
    rng = np.random.default_rng(0)
    streams = [codec.encode_image(p, PROFILES["paper"]) for p in sample_paths()]
    for _ in range(64):
        arr = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(arr).resize((64, 64), Image.Resampling.BICUBIC)
        streams.append(codec.encode_image(img, profile))
    return ByteTokenizer.train(streams, 320, "jpeg")


def _model(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=2048)
    return LlamaForCausalLM(cfg).eval()


class _Stream:
    """One sampling loop: KV cache, generator, optional grammar, timers."""

    def __init__(self, model, prompt: list[int], seed: int, grammar=None):
        self.model, self.grammar = model, grammar
        self.gen = torch.Generator().manual_seed(seed)
        self.out: list[int] = []
        self.sec = self.gsec = self.cpu = 0.0
        t0, c0 = time.perf_counter(), time.thread_time()
        res = model(torch.tensor([prompt]), use_cache=True)
        self.pkv, self.logits = res.past_key_values, res.logits[0, -1]
        self.sec += time.perf_counter() - t0
        self.cpu += time.thread_time() - c0

    def step(self) -> bool:
        """Sample one token and feed it; False once the grammar is finished."""
        c0 = time.thread_time()
        t0 = time.perf_counter()
        logits = self.logits
        g = self.grammar
        if g is not None:
            logits = logits.add_(g.allowed_bias())   # 0 / -inf (logits is ours)
        t1 = time.perf_counter()
        tok = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen))
        self.out.append(tok)
        t2 = time.perf_counter()
        if g is not None:
            g.advance(tok)
            if g.finished:
                t3 = time.perf_counter()
                self.gsec += (t1 - t0) + (t3 - t2)
                self.sec += t3 - t0
                self.cpu += time.thread_time() - c0
                return False
        t3 = time.perf_counter()
        res = self.model(torch.tensor([[tok]]), past_key_values=self.pkv, use_cache=True)
        self.pkv, self.logits = res.past_key_values, res.logits[0, -1]
        self.gsec += (t1 - t0) + (t3 - t2)
        self.sec += time.perf_counter() - t0
        self.cpu += time.thread_time() - c0
        return True


def run() -> dict:
    import warnings

    from jpeglm import codec
    from jpeglm.grammar import JpegScanGrammar
    from jpeglm.profile import PROFILES

    warnings.filterwarnings("ignore", message=".*past_key_values.*")
    profile = PROFILES["tiny"]
    tok = _vocab(profile)
    model = _model(len(tok))
    header = codec.header(profile)
    prompt = tok.encode(header, bos=True, eos=False)
    t0 = time.perf_counter()
    template = JpegScanGrammar.from_profile(profile, tok.token_bytes, tok.eos_id)
    compile_s = time.perf_counter() - t0
    template.feed_bytes(header)
    comp = template.compiled

    def pair(seed: int) -> tuple[_Stream, _Stream]:
        free = _Stream(model, prompt, seed)
        con = _Stream(model, prompt, seed + 10_000, template.copy())
        with torch.inference_mode():
            for _ in range(N_MAX):
                free.step()
                if not con.step():
                    break
        data = header + tok.decode(con.out)
        codec.decode(data, profile, strict=True)  # raises if the stream were invalid
        return free, con

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from threads; less noise
    try:
        free, con = pair(100)
        cold = (free.sec / con.sec, con.gsec / len(con.out) * 1e6, comp.stats["entries_built"])
        for r in range(WARM - 1):
            pair(200 + r)
        calls0, built0 = comp.stats["mask_calls"], comp.stats["entries_built"]
        ratios, cpu_ratios, u_rates, c_rates, g_us, lens = [], [], [], [], [], []
        for r in range(RUNS):
            free, con = pair(r)
            n = len(con.out)
            ratios.append(free.sec / con.sec)
            cpu_ratios.append(free.cpu / con.cpu)
            u_rates.append(n / free.sec)
            c_rates.append(n / con.sec)
            g_us.append(con.gsec / n * 1e6)
            lens.append(n)
    finally:
        torch.set_num_threads(threads)
    info = comp.cache_info()
    calls = info["mask_calls"] - calls0
    built = info["entries_built"] - built0
    rows = [
        {"what": "unconstrained tokens/s (median)", "value": statistics.median(u_rates),
         "unit": "tok/s"},
        {"what": f"constrained tokens/s (median, after {WARM} generations)",
         "value": statistics.median(c_rates), "unit": "tok/s"},
        {"what": "ratio, first (cold) generation", "value": cold[0], "unit": "x"},
        {"what": "ratio by thread CPU time (median runs)",
         "value": statistics.median(cpu_ratios), "unit": "x"},
        {"what": "ratio per run, min", "value": min(ratios), "unit": "x"},
        {"what": "ratio per run, max", "value": max(ratios), "unit": "x"},
        {"what": "grammar time per token (bias + advance)", "value": statistics.median(g_us),
         "unit": "us"},
        {"what": "grammar time per token, cold generation", "value": cold[1], "unit": "us"},
        {"what": "tokens per constrained stream (median)", "value": statistics.median(lens),
         "unit": "tokens"},
        {"what": "mask cache misses per token (timed runs)", "value": built / max(calls, 1),
         "unit": ""},
        {"what": "mask entries built in the cold generation", "value": cold[2], "unit": ""},
        {"what": "distinct token-boundary cores seen", "value": info["distinct_cores"],
         "unit": ""},
        {"what": "automaton states (k-free)", "value": info["automaton_states"], "unit": ""},
        {"what": "grammar compile time (tables + vocabulary)", "value": compile_s, "unit": "s"},
    ]
    return {"name": "jpeg_grammar", "rows": rows, "ratio": statistics.median(ratios),
            "goal": ">= 0.95"}


if __name__ == "__main__":
    res = run()
    for row in res["rows"]:
        print(f"{row['what']:<52} {row['value']:>12.4g} {row['unit']}")
    print(f"ratio {res['ratio']:.3f} (goal {res['goal']})")
