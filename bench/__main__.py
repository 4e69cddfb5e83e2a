"""Run every ``bench/bench_*.py`` and print a table of ratios.

Each module defines ``run() -> dict`` returning::

    {"name": str, "rows": [{"what": str, "value": float, "unit": str}, ...],
     "ratio": float, "goal": str}

The result is written to ``bench/results/<name>.json``. ``python -m bench NAME...``
runs only the named modules (``jpeg``, ``h264``, ``sampler``, ...).
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def _modules(selected: list[str]) -> list[str]:
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if selected:
        wanted = {f"bench_{s}" if not s.startswith("bench_") else s for s in selected}
        unknown = wanted - set(names)
        if unknown:
            sys.exit(f"bench: unknown benchmark(s) {sorted(unknown)}; known: {names}")
        names = [n for n in names if n in wanted]
    return names


def main(argv: list[str]) -> int:
    from codeclm.io import atomic_write

    RESULTS.mkdir(exist_ok=True)
    failures = 0
    table = []
    for name in _modules(argv):
        t0 = time.perf_counter()
        try:
            res = importlib.import_module(f"bench.{name}").run()
        except Exception:  # noqa: BLE001 - a broken benchmark must not hide the others
            traceback.print_exc()
            failures += 1
            table.append((name, "FAILED", "", ""))
            continue
        res["seconds"] = round(time.perf_counter() - t0, 2)
        res["machine"] = {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        }
        with atomic_write(RESULTS / f"{res['name']}.json", "w") as f:
            json.dump(res, f, indent=2)
        for row in res["rows"]:
            unit = row.get("unit", "")
            value = "n/a" if row["value"] is None else f"{row['value']:.4g}"  # (not measured)
            print(f"  {res['name']:>18} | {row['what']:<48} {value:>12} {unit}")
        table.append((res["name"], f"{res['ratio']:.3f}x", res["goal"], f"{res['seconds']:.0f}s"))
    print()
    print(f"{'benchmark':<20} {'ratio':>10}  {'goal':<10} {'time':>6}")
    for name, ratio, goal, secs in table:
        print(f"{name:<20} {ratio:>10}  {goal:<10} {secs:>6}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
