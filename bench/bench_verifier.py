"""NAL verification cost: the one-macroblock decode check against a whole-picture check.

For every slice NAL of canonical encodings (the bundled sample clips at the ``tiny`` and
``paper`` profiles) the verifier's check (:meth:`avclm.verifier.NalVerifier.check`:
x264's header bits, emulation prevention, then the slice decoded by libavcodec with
``err_detect=explode`` as the only macroblock of a 16x16 picture) is timed against the
baseline a verifier without the one-macroblock fact would run: decode a whole picture
made of the candidate at its own address and canonical slices (flat intra / P_Skip)
at every other address, in a full-size decoder that holds the same three references.
Both are run on the same slices, warm (but with the verdict memo emptied before each of
ours: each decodes), alternating clips; ``ratio`` = baseline
microseconds per NAL / ours at the paper profile (goal > 1). Failing checks (one data
bit flipped, when that breaks the slice) are timed too: a failed P slice costs a
re-prime of the test decoder's references.

Also: full token-mask cost per token (``allowed_mask`` + ``advance``, the second walk)
over the canonical tokenization of the same clips with a BPE tokenizer trained on them
(the macroblock-layer masks built in full: generation checks single tokens instead,
``h264_goals``), and the
counts per clip of a random tiny model generating 3 frames through
``avclm.generate.generate_video`` with the verifier as its gate.
"""

from __future__ import annotations

import random
import time

from avclm import nal as nalmod


class _FullPicture:
    """Baseline check: the candidate slice inside a whole picture of canonical slices."""

    def __init__(self, facts, idr: bool):
        import av

        from avclm.bits import compose_slice_header, data_bits, nal_bytes, parse_slice_fields
        from avclm.slice_gate import template_pictures

        self.facts, self.idr = facts, idr
        ctx = av.CodecContext.create("h264", "r")
        ctx.thread_count, ctx.thread_type = 1, "NONE"
        ctx.options = {"err_detect": "crccheck+bitstream+buffer+explode+aggressive"}
        self.ctx, self.av = ctx, av
        _, pictures = template_pictures(facts.profile)
        self.head = nalmod.join_annexb([facts.sps_nal, facts.pps_nal])
        self.prime = [b"".join(p) for p in pictures[:facts.max_refs + 1]]
        template = pictures[0] if idr else pictures[min(facts.max_refs, len(pictures) - 1)]
        parsed = [parse_slice_fields(nalmod.strip_start_code(u), facts.sps, facts.pps)
                  for u in template]
        L = facts.log2_max_frame_num

        def fill(f, key: int) -> bytes:
            f = _with_idr(f, key) if idr else f
            return compose_slice_header(f, L, None, 0 if idr else key)

        # canonical slices for every address and frame_num (IDR: idr_pic_id), made once
        self.fills = {key: [nalmod.START_CODE
                            + nal_bytes(f.nal_byte, fill(f, key), data_bits(v, t, hn))
                            for f, hn, v, t in parsed]
                      for key in (range(2) if idr else range(facts.max_frame_num))}
        self.compose, self.nal_bytes = compose_slice_header, nal_bytes
        self.frame_num = 0
        self.primed = idr
        self.pending = self.head if idr else b""  # parameter sets go with the first packet

    def _prime(self) -> None:
        self.ctx.decode(self.av.Packet(self.head + self.prime[0]))
        for p in self.prime[1:]:
            self.ctx.decode(self.av.Packet(p))
        self.frame_num, self.primed = len(self.prime), True

    def check(self, fields, data) -> bool:
        if not self.primed:
            self._prime()
        key = fields.idr_pic_id if self.idr else self.frame_num
        fills = self.fills[key]
        fn = 0 if self.idr else self.frame_num
        cand = nalmod.START_CODE + self.nal_bytes(
            fields.nal_byte, self.compose(fields, self.facts.log2_max_frame_num, None, fn), data)
        k = fields.first_mb
        packet = self.pending + b"".join(fills[:k]) + cand + b"".join(fills[k + 1:])
        self.pending = b""
        try:
            frames = self.ctx.decode(self.av.Packet(packet))
            ok = len(frames) == 1 and not frames[0].is_corrupt
        except self.av.error.FFmpegError:
            ok = False
        if self.idr:
            return ok
        if ok:
            self.frame_num = (self.frame_num + 1) % self.facts.max_frame_num
        else:
            self.primed = False
        return ok


def _with_idr(fields, idr_pic_id: int):
    import dataclasses

    return dataclasses.replace(fields, idr_pic_id=idr_pic_id)


def _slices(data: bytes, facts) -> list:
    """(fields, data bits, nal) of every slice of a canonical stream."""
    from avclm.bits import data_bits, parse_slice_fields

    out = []
    for nal in nalmod.split_annexb(data):
        if nalmod.is_picture_nal(nal):
            f, hn, v, t = parse_slice_fields(nal, facts.sps, facts.pps)
            out.append((f, data_bits(v, t, hn), nal))
    return out


def _time_checks(streams, profile) -> dict:
    from avclm.slice_check import decode_check_for
    from avclm.stream_plan import stream_facts
    from avclm.verifier import NalVerifier

    facts = stream_facts(profile)
    base = {False: _FullPicture(facts, False), True: _FullPicture(facts, True)}
    ours_s = base_s = 0.0
    n = 0
    fail_s, fails = 0.0, 0
    rng = random.Random(0)
    for data in streams:
        gate = NalVerifier(profile, after_header=False)
        nals = nalmod.split_annexb(data)
        for nal in nals:  # warm-up pass (decoders primed, caches filled)
            assert gate.check(nal) is None
            gate.observe(nal)
        check = decode_check_for(profile)
        gate = NalVerifier(profile, after_header=False)
        for nal in nals:
            check.forget_verdicts()  # (each timed check decodes, repeats too)
            t = time.perf_counter()
            gate.check(nal)
            ours_s += time.perf_counter() - t
            gate.observe(nal)
        n += len(nals)
        slices = _slices(data, facts)
        t = time.perf_counter()
        for f, d, _ in slices:
            assert base[f.is_idr].check(f, d)
        base_s += time.perf_counter() - t
        base_s += ours_s / n * (len(nals) - len(slices))  # SPS/PPS: same cost both ways
        # failing checks: one data bit flipped (kept if it breaks the slice)
        gate = NalVerifier(profile, after_header=False)
        for nal in nals:
            if nalmod.is_picture_nal(nal) and len(nal) > 4:
                b = bytearray(nal)
                bit = rng.randrange(8 * (len(b) - 2), 8 * len(b) - 1)
                b[bit // 8] ^= 0x80 >> (bit % 8)
                if b[-1] and not nalmod.START_CODE_RE.search(bytes(b)):
                    check.forget_verdicts()
                    t = time.perf_counter()
                    reason = gate.check(bytes(b))
                    dt = time.perf_counter() - t
                    if reason is not None:
                        fail_s += dt
                        fails += 1
            gate.observe(nal)
    return {"ours_us": 1e6 * ours_s / n, "baseline_us": 1e6 * base_s / n, "nals": n,
            "fail_us": 1e6 * fail_s / max(fails, 1), "fails": fails}


def _mask_cost(streams, profile, vocab: int) -> float:
    from avclm.nal_masks import NalConstraint
    from codeclm.tokenizer import ByteTokenizer

    tok = ByteTokenizer.train(streams, vocab, "h264")
    tokens = 0
    secs = 0.0
    for rep in range(2):  # the first walk fills the mask cache
        for data in streams:
            c = NalConstraint(tok, profile=profile)
            ids = tok.encode(data, bos=False, eos=False)
            t = time.perf_counter()
            for i in ids:
                c.allowed_mask()
                c.advance(i)
            if rep:
                secs += time.perf_counter() - t
                tokens += len(ids)
    return 1e6 * secs / tokens


def _random_model_counts() -> list[dict]:
    import tempfile
    from pathlib import Path

    import torch
    from transformers import LlamaForCausalLM

    from avclm.codec import SAMPLE_CLIPS, encode_video
    from avclm.generate import generate_video
    from avclm.profile import TINY
    from avclm.verifier import NalVerifier
    from codeclm.generation.sampling_config import SamplingConfig
    from codeclm.model_dir import save_model_dir
    from codeclm.models import llama_config
    from codeclm.tokenizer import ByteTokenizer

    tok = ByteTokenizer.train([encode_video(p, TINY) for p in SAMPLE_CLIPS.values()], 384, "h264")
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config("tiny", tok.vocab_size, 1024, hidden_size=32,
                                          intermediate_size=64))
    gates: list = []

    def gate(profile):
        gates.append(NalVerifier(profile))
        return gates[-1]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = save_model_dir(model, tok, TINY, Path(tmp) / "m")
            for _ in generate_video(d, 3, batch=2, config=SamplingConfig(seed=0), gate_factory=gate,
                                    max_nal_tokens=24, max_attempts=4):
                pass
    finally:
        torch.set_num_threads(threads)
    return [g.stats.as_dict() for g in gates]


def run() -> dict:
    import inspect
    import warnings

    from avclm.codec import SAMPLE_CLIPS, encode_video
    from avclm.generate import generate_video
    from avclm.profile import PAPER, TINY

    warnings.filterwarnings("ignore")
    rows = []
    res = {}
    for profile, vocab in ((TINY, 384), (PAPER, 1024)):
        streams = [encode_video(p, profile) for p in SAMPLE_CLIPS.values()]
        r = res[profile.name] = _time_checks(streams, profile)
        r["mask_us"] = _mask_cost(streams, profile, vocab)
        rows += [
            {"what": f"{profile.name}: NAL check, canonical NALs", "value": r["ours_us"],
             "unit": "us/NAL"},
            {"what": f"{profile.name}: baseline whole-picture decode", "value": r["baseline_us"],
             "unit": "us/NAL"},
            {"what": f"{profile.name}: NAL check, failing (1 bit flipped)", "value": r["fail_us"],
             "unit": "us/NAL"},
            {"what": f"{profile.name}: full token mask + advance, second walk (vocab {vocab}; "
                     "the masks' cache holds a tiny clip's states, not a paper one's)",
             "value": r["mask_us"], "unit": "us/token"},
        ]
    counts = _random_model_counts()
    masks = "constraint_factory" in inspect.signature(generate_video).parameters
    for i, c in enumerate(counts):
        rows += [
            {"what": f"random tiny model, clip {i}: NALs checked / passed",
             "value": c["nals_checked"], "unit": f"/ {c['passed']}"},
            {"what": f"random tiny model, clip {i}: truncated (24 tokens)",
             "value": c["truncated"], "unit": ""},
            {"what": f"random tiny model, clip {i}: retries", "value": c["retries"], "unit": ""},
            {"what": f"random tiny model, clip {i}: substitutions", "value": c["substitutions"],
             "unit": f"of {3 * TINY.mbs_per_frame} slices"},
        ]
    p = res["paper"]
    return {"name": "verifier", "rows": rows, "ratio": p["baseline_us"] / p["ours_us"],
            "goal": "> 1",
            "baseline": "whole-picture decode per NAL (candidate + canonical slices), "
                        "paper profile",
            "results": res, "random_model": counts, "token_masks_in_generate": masks}


if __name__ == "__main__":
    out = run()
    for row in out["rows"]:
        print(f"{row['what']:<58} {row['value']:>10.4g} {row['unit']}")
    print(f"ratio {out['ratio']:.2f} (goal {out['goal']})")
