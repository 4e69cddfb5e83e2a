"""Pieces both eval commands share: media folders, resumable sample files, seeds, shard bpb.

Resumability: every generated sample is one file ``OUT/samples/<tag>/<item_id><ext>``
written atomically (temp file + rename), so a file that exists is complete; a re-run
skips it and regenerates nothing. Metrics are always recomputed from the files.

Seeds: sample ``k`` (its index in the evaluated item list) of seed ``s`` is drawn with
``sample_seed(s, k)``, whatever the batch it runs in, so results do not depend on
``--batch`` or on where an interrupted run stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import ConfigError, InputError, TokenizerError
from ..generation.args import (  # noqa: F401 (sampling_*: for the eval verbs)
    add_model_arguments,
    add_sampling_flags,
    sampling_config,
    sampling_settings,
)
from ..generation.loading import default_device  # noqa: F401 (for the eval verbs)
from ..io import atomic_write_bytes
from ..modality import extensions

#: the files each eval reads: the registry's lists (:func:`codeclm.modality.extensions`),
#: the same ones data_tools trains on
IMAGE_EXTS = extensions("image")
VIDEO_EXTS = extensions("video")


# ---------------------------------------------------------------------------- media folders
@dataclasses.dataclass(frozen=True)
class MediaItem:
    """One evaluation input: ``id`` (unique, file-name safe), ``path``, ``cls`` (name of
    its class subfolder, or None for files directly in the root)."""

    id: str
    path: Path
    cls: str | None


def list_media(root: str | os.PathLike, exts: Iterable[str]) -> list[MediaItem]:
    """Media files in ``root`` and its first-level subfolders (one class per subfolder,
    as ImageNet's layout), sorted by id. Deeper files belong to their first-level folder's
    class. ``id`` is the path below ``root`` without its suffix, ``/`` -> ``__`` (the suffix
    is kept only where two files would otherwise share an id)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    exts = {e.lower() for e in exts}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise InputError(f"{root}: no media files ({', '.join(sorted(exts))})")
    rels = [p.relative_to(root) for p in files]
    stems = [r.with_suffix("").as_posix() for r in rels]
    dup = {s for s in stems if stems.count(s) > 1}
    items = []
    for p, r, s in zip(files, rels, stems):
        key = r.as_posix().replace(".", "_") if s in dup else s
        items.append(MediaItem(key.replace("/", "__"), p, r.parts[0] if len(r.parts) > 1 else None))
    return sorted(items, key=lambda it: it.id)


def select(items: Sequence[MediaItem], n: int | None, seed: int = 0) -> list[MediaItem]:
    """``n`` items drawn at random (seeded; the paper's "5000 random images"), or all of
    them when ``n`` is None or not smaller than the list; sorted by id."""
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise ConfigError(f"--samples must be at least 1, got {n}")
    picked = random.Random(seed).sample(list(items), n)
    return sorted(picked, key=lambda it: it.id)


def class_frequencies(items: Sequence[MediaItem]) -> dict[str, float]:
    """Class -> fraction of ``items`` in it (the long-tail analysis' class frequency)."""
    counts: dict[str, int] = {}
    for it in items:
        if it.cls is not None:
            counts[it.cls] = counts.get(it.cls, 0) + 1
    total = sum(counts.values())
    return {c: n / total for c, n in sorted(counts.items())}


# ---------------------------------------------------------------------------- samples on disk
def ratio_tag(r: float) -> str:
    """``0.25`` -> ``"0.25"`` (the r of sample folder names)."""
    return f"{r:g}"


class SampleStore:
    """Generated samples under ``OUT/samples/<tag>/<item_id><ext>``, written atomically."""

    def __init__(self, out_dir: str | os.PathLike):
        self.root = Path(out_dir) / "samples"

    def path(self, tag: str, item_id: str, ext: str) -> Path:
        return self.root / tag / f"{item_id}{ext}"

    def pending(self, tag: str, ids: Sequence[str], ext: str) -> list[int]:
        """Indices into ``ids`` whose sample file does not exist yet."""
        return [k for k, i in enumerate(ids) if not self.path(tag, i, ext).is_file()]

    def write(self, tag: str, item_id: str, ext: str, data: bytes) -> Path:
        p = self.path(tag, item_id, ext)
        atomic_write_bytes(p, data)
        return p


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of sample ``index`` under run seed ``seed`` (fits in 63 bits)."""
    return (int(seed) * 1_000_003 + int(index)) % (1 << 62)


def runs(indices: Sequence[int]) -> list[list[int]]:
    """Split sorted indices into runs of consecutive numbers: ``[0, 1, 2, 5, 6]`` ->
    ``[[0, 1, 2], [5, 6]]`` (a generator seeds sample ``i`` of a call with ``seed + i``, so
    a run starting at ``k`` gets the seeds ``sample_seed(s, k) + i``)."""
    out: list[list[int]] = []
    for k in indices:
        if out and k == out[-1][-1] + 1:
            out[-1].append(k)
        else:
            out.append([k])
    return out


# ---------------------------------------------------------------------------- CLI pieces
def add_common_arguments(p: argparse.ArgumentParser, batch: bool = True) -> None:
    """Model, output (``-o``, ``--overwrite``), seeds, sampling, batching, device and bpb
    flags (the model and sampling flags are the generating verbs',
    :mod:`codeclm.generation.args`)."""
    add_model_arguments(p, batch)
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output directory; a re-run of the same run resumes there (its "
                        "run.json), another run is refused")
    p.add_argument("--overwrite", action="store_true",
                   help="remove the samples and reports of an earlier run in DIR first "
                        "(nothing else there is touched), then run afresh")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S",
                   help="sampling seeds; every seed generates a full set (default: 0 1 2)")
    add_sampling_flags(p)
    p.add_argument("--shards", default=None,
                   help="held-out shard directory: also report bits per byte on it")
    p.add_argument("--bpb-blocks", type=int, default=None,
                   help="score at most this many context-sized blocks of --shards (default: all)")
    p.add_argument("-q", "--quiet", "--no-progress", dest="no_progress", action="store_true",
                   help="no progress bars")


def add_fid_arguments(p: argparse.ArgumentParser, choices: Sequence[str] = ("inception", "pixels"),
                      default: str = "inception", help: str | None = None) -> None:
    """--extractor, --weights, --feature-batch."""
    p.add_argument("--extractor", default=default, choices=list(choices), help=help or (
        "FID features: the FID InceptionV3 (needs --weights) or weight-free pixel statistics "
        "(smoke tests; not comparable to published FID)"))
    p.add_argument("--weights", default=None,
                   help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid's FID Inception "
                        "weights); default $CODECLM_INCEPTION_WEIGHTS")
    p.add_argument("--feature-batch", type=int, default=32,
                   help="images per feature-extractor forward (default 32)")
    p.add_argument("--fid-backend", default="torchmetrics", choices=["torchmetrics", "fast"],
                   help="torchmetrics' FrechetInceptionDistance (default; its D x D eigvals takes "
                        "~10-40 s per FID on a CPU at 2048-d) or the same number from symmetric "
                        "linear algebra (fast; per-class FID always uses it)")


def common_settings(args: argparse.Namespace) -> dict:
    """The :class:`codeclm.eval.protocol.EvalConfig` fields from :func:`add_common_arguments`'
    flags (checks the sampling flags)."""
    return {"seeds": args.seeds, "sampling": sampling_config(args, None),
            "batch": getattr(args, "batch", 1), "device": args.device, "dtype": args.dtype,
            "quiet": args.no_progress, "overwrite": args.overwrite}


def scored_settings(args: argparse.Namespace) -> dict:
    """The :class:`codeclm.eval.protocol.ScoredEvalConfig` fields from the common and
    :func:`add_fid_arguments`' flags."""
    return {**common_settings(args), "extractor": args.extractor, "weights": args.weights,
            "feature_batch": args.feature_batch, "fid_backend": args.fid_backend,
            "shards": args.shards, "bpb_blocks": args.bpb_blocks, "cfg_scale": args.cfg_scale}


def check_common(args: argparse.Namespace) -> None:
    """Flag checks every eval verb shares (typed one-line errors)."""
    if getattr(args, "batch", 1) < 1:
        raise ConfigError(f"--batch must be at least 1, got {args.batch}")
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"--seeds has repeated values: {args.seeds}")


def model_label(loaded) -> str:
    """The model's row label in tables: its directory name."""
    return Path(loaded.path).name or str(loaded.path)


def progress(iterable=None, total: int | None = None, desc: str = "", disable: bool = False):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=disable, unit="sample", leave=False,
                dynamic_ncols=True)


# ---------------------------------------------------------------------------- bits per byte
def shard_bpb(loaded, path: str | os.PathLike, batch_size: int = 4, max_blocks: int | None = None,
              context: int | None = None, show_progress: bool = True) -> dict:
    """Bits per byte of ``loaded.model`` on a held-out shard directory.

    The shards' token stream is cut into blocks of ``context + 1`` tokens (default: the
    model's context) exactly as training's validation does (litdata TokensLoader; the
    tokens left at a chunk's end are skipped), and scored with
    :func:`codeclm.eval.metrics.bits_per_byte`. The shards' tokenizer must be the model's.
    Returns the metrics plus ``path`` and ``block_tokens``.
    """
    from ..data_module import collate_blocks, load_shard_meta
    from ..lightning_module import token_byte_lengths
    from ..litdata_offline import offline_litdata
    from .metrics import bits_per_byte

    info, tok, _ = load_shard_meta(path, loaded.profile.modality)
    if tok.fingerprint() != loaded.tokenizer.fingerprint():
        raise TokenizerError(f"{path}: the shards were tokenized with a different tokenizer "
                             f"({tok.vocab_size} entries) than the model's "
                             f"({loaded.tokenizer.vocab_size})")
    ctx = int(context or loaded.model.config.max_position_embeddings)
    block = ctx + 1
    n_blocks = info.blocks(block)
    if n_blocks == 0:
        raise ConfigError(f"{path}: no shard chunk holds a block of {block} tokens (the model's "
                          f"context + 1); largest chunk has {max(info.chunk_tokens)} tokens")
    if max_blocks is not None:
        n_blocks = min(n_blocks, max_blocks)

    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    offline_litdata()
    ds = StreamingDataset(str(Path(path).resolve()), item_loader=TokensLoader(block_size=block),
                          shuffle=False)
    n_blocks = min(n_blocks, len(ds))
    device = next(loaded.model.parameters()).device

    def blocks():
        bar = progress(total=n_blocks, desc="bpb", disable=not show_progress)
        for i in range(0, n_blocks, batch_size):
            idx = range(i, min(i + batch_size, n_blocks))
            yield collate_blocks([ds[j] for j in idx])
            bar.update(len(idx))
        bar.close()

    res = bits_per_byte(loaded.model, blocks(), token_byte_lengths(loaded.tokenizer), device)
    res.update(path=str(path), block_tokens=block)
    return res
