"""Evaluation outputs: ``results.json``, Markdown tables in the paper's layout, CSVs, plots.

Every file is written atomically (:mod:`codeclm.io`). Plots use matplotlib's Agg backend
(no display needed).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write, atomic_write_bytes

#: published prompted-completion FID (Han et al., JPEG-LM, arXiv 2408.08459: the ImageNet-1K
#: and FFHQ completion results), keyed by the r values of each setting
PUBLISHED_FID = {
    (0.25, 0.5, 0.75): ("ImageNet-1K val, 5000 images, 3 seeds", {
        "JPEG-LM (paper)": (272.12, 123.09, 34.21),
        "VQ transformer (paper)": (302.92, 172.73, 71.88),
        "ImageGPT+SR (paper)": (289.48, 262.76, 258.11),
        "SD-inpaint (paper)": (266.71, 132.98, 58.17),
    }),
    (0.375, 0.4375, 0.5): ("FFHQ, 1000 images", {
        "JPEG-LM (paper)": (36.15, 31.22, 27.15),
        "VQ transformer (paper)": (53.25, 45.58, 41.15),
    }),
}
PUBLISHED_UNCOND_FID = {"JPEG-LM (paper)": 121.35, "VQ transformer (paper)": 155.51}


def jsonable(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None, tuples by lists, paths by strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return jsonable(obj.item())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    with atomic_write(path, "w") as f:
        json.dump(jsonable(obj), f, indent=2, sort_keys=False)
        f.write("\n")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([[fmt(v, 6) if isinstance(v, float) else v for v in row] for row in rows])
    return write_text(path, buf.getvalue())


def fmt(x: Any, digits: int = 2) -> str:
    """A number for a table: fixed ``digits`` decimals; "n/a" for None/NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for fewer than 1 / 2 finite values)."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None, None
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def seed_summary(by_seed: Mapping) -> dict:
    """``{seed: value}`` -> ``{"mean", "std", "by_seed"}`` (std over seeds; None for one)."""
    m, sd = mean_std(list(by_seed.values()))
    return {"mean": m, "std": sd, "by_seed": dict(by_seed)}


def fmt_mean_std(values: Sequence[float], digits: int = 2) -> str:
    m, s = mean_std(values)
    if m is None:
        return "n/a"
    return fmt(m, digits) if s is None else f"{fmt(m, digits)} ± {fmt(s, digits)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def ratio_label(r: float) -> str:
    return f"r = {r:g}"


def fid_table(model: str, ratios: Sequence[float], fid_by_ratio: Mapping[float, Sequence[float]],
              comparable: bool) -> str:
    """The paper's table layout: one row per model, one column per r, FID (mean ± std over
    seeds). Published rows for the same r values are appended when ``comparable``."""
    label = model if comparable else f"{model} (pixels features: not comparable to published FID)"
    rows = [[label] + [fmt_mean_std(fid_by_ratio.get(r, [])) for r in ratios]]
    note = ""
    pub = PUBLISHED_FID.get(tuple(float(r) for r in ratios))
    if pub and comparable:
        setting, models = pub
        rows += [[name] + [fmt(v) for v in vals] for name, vals in models.items()]
        note = f"\nPublished rows: {setting}.\n"
    return markdown_table(["Model"] + [ratio_label(r) for r in ratios], rows) + note


def line_plot(path: str | os.PathLike, series: Mapping[str, tuple[Sequence[float], Sequence[float],
                                                                    Sequence[float] | None]],
              xlabel: str, ylabel: str, title: str) -> Path:
    """One line per series ``label -> (xs, ys, yerr or None)``, saved as PNG (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    for label, (xs, ys, err) in series.items():
        pts = [(x, y, (err[i] if err else None)) for i, (x, y) in enumerate(zip(xs, ys))
               if y is not None and math.isfinite(y)]
        if not pts:
            continue
        px, py, pe = zip(*pts)
        if any(e is not None for e in pe):
            ax.errorbar(px, py, yerr=[e or 0.0 for e in pe], marker="o", capsize=3, label=label)
        else:
            ax.plot(px, py, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
