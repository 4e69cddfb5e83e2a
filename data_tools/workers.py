"""Running one function over many inputs in worker processes, surviving bad inputs.

:func:`run_parallel` calls ``fn(item)`` for every item, in ``workers`` spawned
processes (or in this process when ``workers == 1``), and yields
``(item, Outcome)`` pairs as they finish (not in input order). An input never stops
the job:

* a typed library error (:class:`~codeclm.errors.CodecLMError`: bad media, failed
  encode) becomes ``Outcome("skip", reason)``;
* any other exception becomes ``Outcome("error", "unexpected <Type>: msg")`` unless
  ``strict`` (then it propagates): it is reported, never hidden, but it is treated
  as a possible bug rather than a property of the input, so callers do not cache it;
* a worker process that dies (a decoder crash) breaks the pool; the inputs that were
  in flight are then re-run one at a time in fresh single-worker pools to find the
  culprit, which becomes ``Outcome("skip", "worker process crashed ...")``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from codeclm.errors import CodecLMError, OutputError


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str          #: "ok", "skip" (bad input) or "error" (unexpected exception)
    value: Any = None    #: fn's return value when ok
    reason: str = ""     #: one line, when not ok


def call_safely(fn: Callable, item, strict: bool = False) -> Outcome:
    """``fn(item)`` as an :class:`Outcome` (see the module docstring)."""
    from codeclm.io import DISK_FULL, describe_os_error

    try:
        return Outcome("ok", fn(item))
    except OutputError:  # our own output failing (disk full) stops the run: no input is to blame
        raise
    except CodecLMError as e:
        return Outcome("skip", reason=_one_line(str(e)))
    except Exception as e:  # reported as "error", never hidden; strict mode re-raises
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            raise OutputError(
                f"{e.filename or 'output'}: cannot write ({describe_os_error(e)})"
            ) from e
        if strict:
            raise
        return Outcome("error", reason=_one_line(f"unexpected {type(e).__name__}: {e}"))


def _one_line(s: str) -> str:
    return " ".join(s.split())[:500]


_WORKER_FN: Callable | None = None
_WORKER_STRICT = False


def _init(fn, initializer, initargs, strict):
    global _WORKER_FN, _WORKER_STRICT
    _WORKER_FN, _WORKER_STRICT = fn, strict
    if initializer is not None:
        initializer(*initargs)


def _call(item) -> Outcome:
    return call_safely(_WORKER_FN, item, _WORKER_STRICT)


def _call_batch(batch: list) -> list[Outcome]:
    return [_call(item) for item in batch]


def run_parallel(fn: Callable, items: Sequence, workers: int = 1,
                 initializer: Callable | None = None, initargs: tuple = (),
                 strict: bool = False, batch: int | None = None) -> Iterator[tuple[Any, Outcome]]:
    """Yield ``(item, Outcome)`` for every item, as each finishes.

    ``fn`` and ``initializer`` must be module-level functions (they are sent to
    spawned processes); ``initializer(*initargs)`` runs once per process before the
    first item (e.g. to load a tokenizer). Items travel in batches of ``batch``
    (default: up to 16, fewer when there are few items per worker) to keep the
    inter-process overhead small.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        _init(fn, initializer, initargs, strict)
        for item in items:
            yield item, _call(item)
        return
    if batch is None:
        batch = max(1, min(16, len(items) // (workers * 8)))
    batches = [items[i:i + batch] for i in range(0, len(items), batch)]
    ctx = multiprocessing.get_context("spawn")
    pending = list(reversed(batches))  # pop() from the end = input order
    while pending:
        crashed: list = []
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init,
                                 initargs=(fn, initializer, initargs, strict)) as pool:
            inflight: dict = {}
            try:
                while pending or inflight:
                    while pending and len(inflight) < workers * 2:
                        b = pending.pop()
                        inflight[pool.submit(_call_batch, b)] = b
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for fut in done:
                        results = fut.result()  # BrokenProcessPool surfaces here
                        yield from zip(inflight.pop(fut), results)
            except BrokenProcessPool:
                crashed = [item for b in inflight.values() for item in b]
            except BaseException:  # interrupted or closed early: do not run the queue
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        for item in crashed:  # isolate the culprit(s): one fresh process per suspect
            yield item, _run_isolated(ctx, fn, initializer, initargs, strict, item)


def _run_isolated(ctx, fn, initializer, initargs, strict, item) -> Outcome:
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=_init,
                             initargs=(fn, initializer, initargs, strict)) as pool:
        try:
            return pool.submit(_call, item).result()
        except BrokenProcessPool:
            return Outcome("skip", reason="worker process crashed while reading this input "
                                          "(decoder crash)")


def progress(iterable: Iterable, total: int, desc: str, enabled: bool | None = None,
             initial: int = 0, unit: str = "file"):
    """A tqdm progress bar on stderr (``enabled=None``: only on a terminal)."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, initial=initial, unit=unit,
                disable=None if enabled is None else not enabled, dynamic_ncols=True)
