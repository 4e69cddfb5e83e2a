"""The one stats type of a decode run and the event that ends every event stream.

Torch-free. :class:`DecodeStats` counts what a :class:`~codeclm.generation.session.Session`
did (tokens, seconds, tokens/s); event streams (``jpeglm.generate.generate_images``,
``avclm.generate.generate_video``) end with a :class:`DoneEvent` holding
:meth:`DecodeStats.as_dict` plus their own counts.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class DecodeStats:
    """Counts and timings of one or more decode runs.

    ``sampled``: tokens drawn (rolled-back ones included; forced tokens not);
    ``steps``: decode steps (forwards: one token per row each, or a lone row's unfed
    tokens together); ``jumped``: forced tokens of a lone row added without a forward
    of their own (fed with the next step's: jump-forward); ``rejected``: units sampled
    again;
    ``prefill_s`` / ``decode_s``: seconds spent in prompt prefill / decode steps;
    ``decode_cpu_s``: the decode steps' CPU seconds in this thread (a measure that a
    loaded machine disturbs less); ``constrained``: draws made filters-first under a
    constraint (:mod:`~codeclm.generation.filters_first`), ``changed``: of those, the
    draws whose token is not the model's own free draw (the masks intervened);
    ``finished``: of those, the draws where the model asked to end a unit that could not
    end yet and the constraint finished it (``finish_early``), ``finish_tokens`` the
    tokens it wrote for them (the first drawn, the rest forced; the model's boundary
    token that follows a finish included);
    ``seed``: the run's seed (row ``r`` draws with ``seed + r``)."""

    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_cpu_s: float = 0.0
    steps: int = 0
    jumped: int = 0
    sampled: int = 0
    rejected: int = 0
    constrained: int = 0
    changed: int = 0
    finished: int = 0
    finish_tokens: int = 0
    seed: int | None = None

    @property
    def tokens_per_s(self) -> float:
        """Sampled tokens per second of decode time (0 before any step)."""
        return self.sampled / self.decode_s if self.decode_s > 0 else 0.0

    def add(self, other: DecodeStats) -> None:
        """Add ``other``'s counts and timings to these (the seed is kept)."""
        for f in ("prefill_s", "decode_s", "decode_cpu_s", "steps", "jumped", "sampled",
                  "rejected", "constrained", "changed", "finished", "finish_tokens"):
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def as_dict(self) -> dict:
        """The fields plus ``tokens_per_s`` and ``tokens_sampled`` (the same as ``sampled``)."""
        d = dataclasses.asdict(self)
        d["tokens_per_s"] = self.tokens_per_s
        d["tokens_sampled"] = self.sampled
        return d


def changed_note(stats: dict, constraint: str, unit: str) -> str:
    """"CONSTRAINT changed C of N draws" for a run whose draws were made filters-first
    (``stats``: :meth:`DecodeStats.as_dict`), with " (F UNITs finished early)" where the
    constraint finished units the model would have ended early; "" otherwise."""
    if not stats.get("constrained"):
        return ""
    f = stats.get("finished", 0)
    early = f" ({f} {unit}{'s' if f != 1 else ''} finished early)" if f else ""
    return f"{constraint} changed {stats['changed']} of {stats['constrained']} draws{early}"


@dataclasses.dataclass(frozen=True)
class DoneEvent:
    """The end of an event stream: ``stats`` holds per-run counts and timings
    (:meth:`DecodeStats.as_dict` plus the generator's own; see its docstring)."""

    stats: dict
