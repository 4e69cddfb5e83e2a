"""Issue 14's speed goal measured against a noisy machine: per-step minima.

On a shared virtual machine one clip's time per token swings by up to 1.6x from run to
run, so ``h264_goals``' constrained / unconstrained tokens/s (one run of each per seed)
moves by +-0.1 between sittings. Here the same generations (the bundled video model,
seeds ``0..SEEDS-1``, ``FRAMES`` frames, slice masks on and ``verify=False``) run
``REPS`` times, the two settings interleaved; a seeded generation repeats exactly, so
each decode step's thread CPU time is taken as its minimum over the repetitions, for the
forward (``KVCacheLM.decode``) and for the rest of the step apart (``Session.step`` less
its forward: the draw with its filters, noise and masks, the constraint's advance over
the chosen token, the NAL splitter and the unit checks; before the fifteenth session
only ``Session._choose``, the draw, was timed). ``ratio``: constrained / unconstrained
tokens/s from those minima (goal >= 0.9); also with the unconstrained run's forward cost
per token, which tells the draw's cost from the longer clips' (a constrained clip is
longer, so its average context, hence its forward, costs more per token).
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
    """Records the thread CPU time of every ``Session.step`` less its ``KVCacheLM.decode``
    (``rest``) and of that decode (``forward``), patched on the classes while open, and
    each decode's cache slot (row 0's)."""

    def __init__(self):
        from codeclm.generation import session
        from codeclm.generation.forward import KVCacheLM

        self.rest: list[int] = []
        self.forward: list[int] = []
        self.positions: list[int] = []
        self._saved = [(session.Session, "step"), (KVCacheLM, "decode")]
        self._originals = [getattr(c, n) for c, n in self._saved]
        session.Session.step = self._step(self._originals[0])
        KVCacheLM.decode = self._timed(self._originals[1], self.forward, self.positions)

    def clear(self) -> None:
        for out in (self.rest, self.forward, self.positions):
            out.clear()

    @staticmethod
    def _timed(fn, out: list[int], positions: list[int] | None = None):
        def timed(*args, **kwargs):
            if positions is not None:  # decode(self, tokens, positions)
                positions.append(args[2][0])
            t = time.thread_time_ns()
            result = fn(*args, **kwargs)
            out.append(time.thread_time_ns() - t)
            return result
        return timed

    def _step(self, fn):
        def step(*args, **kwargs):
            n = len(self.forward)
            t = time.thread_time_ns()
            result = fn(*args, **kwargs)
            spent = time.thread_time_ns() - t
            if len(self.forward) > n:  # (a step with no live row runs no forward)
                self.rest.append(spent - self.forward[-1])
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
        per_token[name] = (n, sum(rest) / n / 1e3, sum(forward) / n / 1e3)
    (nm, cm, fm), (nf, cf, ff) = per_token["masks"], per_token["free"]
    ratio = (cf + ff) / (cm + fm)
    free_at = best["free"][2]
    fm_eq = forward_at(best["masks"][2], best["masks"][1], free_at)
    ff_eq = forward_at(best["free"][2], best["free"][1], free_at)
    ratio_eq = None if fm_eq is None else (cf + ff_eq / 1e3) / (cm + fm_eq / 1e3)
    rows = [
        {"what": f"draws, slice masks ({seeds} seeds x {frames} frames)", "value": nm, "unit": ""},
        {"what": "draws, no masks", "value": nf, "unit": ""},
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
    return {"name": "h264_mask_cost", "rows": rows, "ratio": ratio,
            "ratio_equal_positions": ratio_eq, "goal": ">= 0.9",
            "baseline": "the same seeds without masks (verify=False), interleaved",
            "setting": {"seeds": seeds, "frames": frames, "reps": reps}}


if __name__ == "__main__":
    out = run(*[int(a) for a in sys.argv[1:]])
    for row in out["rows"]:
        print(f"{row['what']:<64} {row['value']:>10.4g} {row['unit']}")
