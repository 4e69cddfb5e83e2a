"""Random walks over the H.264 slice masks at the issue's scale (issue 14).

For both profiles, three vocabularies (a byte-level one, ``MIN_VOCAB`` tokens trained on
the profile's encodes of the bundled sample clips; the bundled video model's trained
tokenizer from ``avclm/assets/model``; 1024 tokens trained on the same encodes) and both
slice kinds, :func:`avclm.slice_walks.walk_slices` replaces ``SLICES`` slices of a
canonical encode by walks drawn uniformly among the allowed tokens. Every walked slice
must pass the NAL verifier alone (x264's header, emulation prevention, the strict
one-macroblock decode by libavcodec) and every stream holding them must decode strictly
whole. ``ratio`` = slices passing / slices walked (goal 1: the masks never allow a token
that cannot continue a valid slice). ``python -m bench.bench_h264_walks [SLICES]``.
"""

from __future__ import annotations

import random
import sys
import time

#: slices walked per (profile, vocabulary, slice kind)
SLICES = 500


def _vocabularies(streams: list[bytes]) -> dict:
    from codeclm.model_dir import bundled_model_dir
    from codeclm.tokenizer import MIN_VOCAB, ByteTokenizer

    out = {f"trained {MIN_VOCAB}": ByteTokenizer.train(streams, MIN_VOCAB, "h264")}
    bundled = bundled_model_dir("h264")
    if bundled is not None:
        out["bundled model's"] = ByteTokenizer.load(bundled / "tokenizer.json")
    out["trained 1024"] = ByteTokenizer.train(streams, 1024, "h264")
    return out


def run(slices: int = SLICES) -> dict:
    from avclm.codec import SAMPLE_CLIPS, encode_video
    from avclm.profile import PAPER, TINY
    from avclm.slice_walks import walk_slices

    rows, cases = [], []
    walked = passed = 0
    for profile in (TINY, PAPER):
        streams = [encode_video(p, profile) for p in SAMPLE_CLIPS.values()]
        for vname, tok in _vocabularies(streams).items():
            for kind in ("I", "P"):
                t = time.perf_counter()
                r = walk_slices(tok, profile, streams[0], kind, slices, random.Random(0))
                secs = time.perf_counter() - t
                walked += r.slices
                passed += r.slices - r.failed
                what = f"{profile.name}, {vname} ({tok.vocab_size}), {kind}"
                cases.append({"case": what, "slices": r.slices, "failed": r.failed,
                              "tokens": r.tokens, "streams": r.streams,
                              "bad_streams": r.bad_streams, "reasons": r.reasons,
                              "seconds": round(secs, 1)})
                rows += [
                    {"what": f"walk {what}: slices failing / walked", "value": r.failed,
                     "unit": f"/ {r.slices}"},
                    {"what": f"walk {what}: streams not decoding strictly", "value": r.bad_streams,
                     "unit": f"/ {r.streams}"},
                    {"what": f"walk {what}: mask + advance per token", "value":
                     1e3 * secs / max(r.tokens, 1), "unit": "ms/token"},
                ]
    return {"name": "h264_walks", "rows": rows, "ratio": passed / max(walked, 1), "goal": "= 1",
            "baseline": "every walked slice (no baseline: share passing the verifier)",
            "slices_per_case": slices, "cases": cases}


if __name__ == "__main__":
    import json

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else SLICES), indent=2))
