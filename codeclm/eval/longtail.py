"""The long-tail analysis: per-class FID against how common each class is.

The paper finds JPEG-LM's advantage over VQ grows for rare classes. Here each class's
FID (generated vs real images of that class, :func:`codeclm.eval.metrics.grouped_fid`)
is tabled beside the class frequency (from a training-set count file, or else the
evaluated folder's own class shares), with the Spearman correlation between the two.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from .runner import MediaItem
from .runner import class_frequencies as folder_frequencies

CSV_HEADER = ("r", "class", "n", "fid", "class_frequency")


def class_frequencies(items: Sequence[MediaItem], counts_file: str | os.PathLike | None = None
                      ) -> dict[str, float]:
    """Class -> frequency (fraction): from ``counts_file`` (CSV ``class,count`` with an
    optional header row, or a JSON object ``{class: count}``), else the classes' shares of
    ``items``."""
    if counts_file is None:
        return folder_frequencies(items)
    p = Path(counts_file)
    try:
        text = p.read_text()
        if p.suffix.lower() == ".json":
            counts = {str(k): float(v) for k, v in json.loads(text).items()}
        else:
            rows = [r for r in csv.reader(text.splitlines()) if r]
            if rows and not _is_number(rows[0][1]):
                rows = rows[1:]
            counts = {r[0]: float(r[1]) for r in rows}
    except (OSError, ValueError, IndexError, AttributeError) as e:
        raise InputError(f"{p}: not a class-count CSV (class,count) or JSON object ({e})") from e
    total = sum(counts.values())
    if total <= 0:
        raise InputError(f"{p}: class counts sum to {total}")
    return {k: v / total for k, v in counts.items()}


def _is_number(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def per_class_rows(per_class: dict, freq: dict[str, float], ratios: Sequence[float]
                   ) -> tuple[list[list], dict]:
    """``per_class[r][seed]`` = ``grouped_fid`` output -> (CSV rows ``r, class, n, FID (mean
    over seeds), class frequency``, per-r summary ``{classes, spearman_rho, spearman_p}``;
    rho/p are None with fewer than 3 classes that have both numbers, or constant ones)."""
    from scipy.stats import spearmanr

    rows, summary = [], {}
    for r in ratios:
        if r not in per_class:
            continue
        by_seed = per_class[r]
        classes = sorted({c for d in by_seed.values() for c in d}, key=str)
        xs, ys = [], []
        for c in classes:
            vals = [d[c]["fid"] for d in by_seed.values() if d[c]["fid"] is not None]
            f = sum(vals) / len(vals) if vals else None
            n = next(iter(by_seed.values()))[c]["n"]
            rows.append([f"{r:g}", c, n, f, freq.get(c)])
            if f is not None and freq.get(c) is not None:
                xs.append(f)
                ys.append(freq[c])
        rho = p = None
        if len(xs) >= 3 and len(set(ys)) > 1 and len(set(xs)) > 1:
            res = spearmanr(xs, ys)
            rho, p = float(res.statistic), float(res.pvalue)
        summary[r] = {"classes": len(classes), "spearman_rho": rho, "spearman_p": p}
    return rows, summary
