"""Issue 14's speed goal measured against a noisy machine: per-step minima.

On a shared virtual machine one clip's time per token swings by up to 1.6x from run to
run, so ``h264_goals``' constrained / unconstrained tokens/s (one run of each per seed)
moves by +-0.1 between sittings. Here the same generations (the bundled video model,
seeds ``0..SEEDS-1``, ``FRAMES`` frames, slice masks on and ``verify=False``) run
``REPS`` times, the two settings interleaved; a seeded generation repeats exactly, so
each step's thread CPU time is taken as its minimum over the repetitions, for the
forward (``KVCacheLM.decode``, or the ``extend`` of a jump-forward step; 0 for a forced
token added without a forward, since the nineteenth session) and for the rest of the
step apart (``Session.step`` less its forward: the draw with its filters, noise and
masks, the constraint's advance over the chosen token, the NAL splitter and the unit
checks; before the fifteenth session only ``Session._choose``, the draw, was timed).
Every step adds one token (the clip's one row), so costs are per token. ``ratio``:
constrained / unconstrained tokens/s from those minima (goal >= 0.9); also with the
unconstrained run's forward cost per token, which tells the draw's cost from the longer
clips' (a constrained clip is longer, so its average context, hence its forward, costs
more per token).
``ratio_equal_positions``: the same ratio with both forwards weighed by the
unconstrained run's cache positions (buckets of :data:`BUCKET` slots): the masks' whole
cost per token, draws and their interference with the forward included, without the
longer clips' deeper contexts.

``python -m bench.bench_h264_mask_cost [SEEDS FRAMES REPS]``.
"""

from __future__ import annotations

import sys
import time

SEEDS, FRAMES, REPS = 3, 16, 6
#: cache slots per bucket of the equal-positions comparison
BUCKET = 128


class _StepTimes:
    """Records, for every ``Session.step`` that adds a token (the one row's), the thread
    CPU time of its forward (``forward``: ``KVCacheLM.decode``, or the ``extend`` /
    ``prefill`` of a jump-forward step's unfed tokens; 0 for a forced token added
    without a forward) and of the rest of the step (``rest``), patched on the classes
    while open, and the token's cache slot (``positions``)."""

    def __init__(self):
        from codeclm.generation import session
        from codeclm.generation.forward import KVCacheLM

        self.rest: list[int] = []
        self.forward: list[int] = []
        self.positions: list[int] = []
        self._in_step: list[int] = []  # forward times of the step running now
        self._saved = [(session.Session, "step"), (KVCacheLM, "decode"), (KVCacheLM, "extend"),
                       (KVCacheLM, "prefill")]
        self._originals = [getattr(c, n) for c, n in self._saved]
        session.Session.step = self._step(self._originals[0])
        KVCacheLM.decode = self._timed(self._originals[1])
        KVCacheLM.extend = self._timed(self._originals[2])
        KVCacheLM.prefill = self._timed(self._originals[3])

    def clear(self) -> None:
        for out in (self.rest, self.forward, self.positions):
            out.clear()

    def _timed(self, fn):
        def timed(*args, **kwargs):
            depth = len(self._in_step)
            t = time.thread_time_ns()
            result = fn(*args, **kwargs)
            del self._in_step[depth:]  # (extend's fallback is a timed prefill)
            self._in_step.append(time.thread_time_ns() - t)
            return result
        return timed

    def _step(self, fn):
        def step(session, *args, **kwargs):
            self._in_step = []
            rows = [r for r in session.rows if not r.done]
            slot = len(rows[0].tokens) - 1 if rows else 0
            t = time.thread_time_ns()
            result = fn(session, *args, **kwargs)
            spent = time.thread_time_ns() - t
            if rows:  # (a step with no live row adds nothing)
                forward = sum(self._in_step)
                self.rest.append(spent - forward)
                self.forward.append(forward)
                self.positions.append(slot)
            return result
        return step

    def close(self) -> None:
        for (cls, name), orig in zip(self._saved, self._originals):
            setattr(cls, name, orig)


def _minima(best: tuple | None, cur: tuple) -> tuple:
    if best is None:
        return cur
    if [len(x) for x in best] != [len(x) for x in cur] or best[2] != cur[2]:
        raise RuntimeError("a repeated seeded generation took other steps")
    return tuple([min(a, b) for a, b in zip(x, y)] for x, y in zip(best[:2], cur[:2])) + (cur[2],)


def forward_at(positions: list[int], forward: list[int], at: list[int]) -> float | None:
    """Mean forward time (ns) over the slots ``at``, each costed at the mean of
    ``forward`` over the steps whose slot (``positions``) falls in the same bucket of
    :data:`BUCKET` slots; None when a bucket of ``at`` has no such step."""
    sums: dict[int, list[int]] = {}
    for p, t in zip(positions, forward):
        sums.setdefault(p // BUCKET, []).append(t)
    mean = {b: sum(v) / len(v) for b, v in sums.items()}
    try:
        return sum(mean[p // BUCKET] for p in at) / len(at)
    except KeyError:
        return None


def _extend_rows(lm, slot: int = 500, reps: int = 50) -> list[dict]:
    """Jump-forward's feed of S tokens at once (``KVCacheLM.extend``) against S decode
    steps, the bundled model at cache slot ``slot``, one thread: thread CPU time, the
    minimum of ``reps`` interleaved repetitions."""
    import torch

    from codeclm.generation.forward import KVCacheLM

    kv = KVCacheLM(lm.model, 1, slot + 8)
    ids = torch.randint(3, lm.tokenizer.vocab_size, (slot + 8,),
                        generator=torch.Generator().manual_seed(0))
    kv.prefill(0, ids[:slot])
    rows = []
    for S in (2, 3, 4):
        best = {"extend": float("inf"), "decodes": float("inf")}
        for _ in range(reps):
            t = time.thread_time_ns()
            kv.extend(0, ids[slot:slot + S], slot)
            best["extend"] = min(best["extend"], time.thread_time_ns() - t)
            t = time.thread_time_ns()
            for j in range(S):
                kv.decode(ids[slot + j:slot + j + 1], [slot + j])
            best["decodes"] = min(best["decodes"], time.thread_time_ns() - t)
        rows.append({"what": f"jump-forward: {S} tokens fed by one extend / by {S} decode steps",
                     "value": best["extend"] / best["decodes"], "unit": "x (thread CPU time)"})
    return rows


def run(seeds: int = SEEDS, frames: int = FRAMES, reps: int = REPS) -> dict:
    import torch

    from avclm.generate import generate_video, load_model
    from avclm.slice_check import decode_check_for
    from codeclm.generation.sampling_config import SamplingConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = load_model(None, "h264")
    times = _StepTimes()
    best: dict[str, tuple | None] = {"masks": None, "free": None}
    try:
        for _ in range(reps):
            for name, verify in (("masks", True), ("free", False)):
                times.clear()
                for seed in range(seeds):
                    # each clip as in a fresh process: the safety net's verdict memo empty
                    decode_check_for(model.profile).forget_verdicts()
                    for _ev in generate_video(model, frames, config=SamplingConfig(seed=seed),
                                              verify=verify):
                        pass
                best[name] = _minima(best[name], (list(times.rest), list(times.forward),
                                                  list(times.positions)))
    finally:
        times.close()
        torch.set_num_threads(threads)
    per_token = {}
    for name, (rest, forward, _positions) in best.items():
        n = len(rest)
        per_token[name] = (n, sum(rest) / n / 1e3, sum(forward) / n / 1e3,
                           sum(1 for f in forward if f))
    (nm, cm, fm, wm), (nf, cf, ff, _wf) = per_token["masks"], per_token["free"]
    ratio = (cf + ff) / (cm + fm)
    free_at = best["free"][2]
    fm_eq = forward_at(best["masks"][2], best["masks"][1], free_at)
    ff_eq = forward_at(best["free"][2], best["free"][1], free_at)
    ratio_eq = None if fm_eq is None else (cf + ff_eq / 1e3) / (cm + fm_eq / 1e3)
    rows = [
        {"what": f"tokens, slice masks ({seeds} seeds x {frames} frames)", "value": nm,
         "unit": ""},
        {"what": "forwards, slice masks (forced tokens jump forward)", "value": wm, "unit": ""},
        {"what": "tokens (and forwards), no masks", "value": nf, "unit": ""},
        {"what": "rest of a step (draw, advance, checks) per token, slice masks", "value": cm,
         "unit": "us"},
        {"what": "rest of a step per token, no masks", "value": cf, "unit": "us"},
        {"what": "forward per token, slice masks", "value": fm, "unit": "us"},
        {"what": "forward per token, no masks", "value": ff, "unit": "us"},
        {"what": "constrained / unconstrained tokens/s (per-step minima)", "value": ratio,
         "unit": "(goal >= 0.9)"},
        {"what": "the same with the unconstrained forward cost per token", "value":
         (cf + ff) / (cm + ff), "unit": "x (the rest of the step's cost alone)"},
    ]
    if ratio_eq is not None:
        rows += [
            {"what": "forward per token at the unconstrained run's positions, slice masks",
             "value": fm_eq / 1e3, "unit": "us"},
            {"what": "forward per token at the same positions, no masks", "value": ff_eq / 1e3,
             "unit": "us"},
            {"what": "constrained / unconstrained tokens/s at equal positions", "value":
             ratio_eq, "unit": "x (draws and their interference, not the longer clips)"},
        ]
    rows += _extend_rows(model)
    return {"name": "h264_mask_cost", "rows": rows, "ratio": ratio,
            "ratio_equal_positions": ratio_eq, "goal": ">= 0.9",
            "baseline": "the same seeds without masks (verify=False), interleaved",
            "setting": {"seeds": seeds, "frames": frames, "reps": reps}}


if __name__ == "__main__":
    out = run(*[int(a) for a in sys.argv[1:]])
    for row in out["rows"]:
        print(f"{row['what']:<64} {row['value']:>10.4g} {row['unit']}")
