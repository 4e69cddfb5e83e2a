"""The run record of an eval output directory: which run its samples belong to.

Every generating eval verb (``jpeglm eval complete|uncond|classes``, ``avclm eval
continue|classes``) resumes in its ``-o DIR``: a sample file that exists is reused
(:class:`codeclm.eval.runner.SampleStore`). So that a re-run never mixes samples of two
runs, ``DIR/run.json`` records, before the first sample is written, what the samples
depend on: the task, the model (tokenizer fingerprint, SHA-256 of ``config.json`` and
the weights files, profile) and every setting that changes a sample's bytes
(:func:`sample_settings`; sampling, counts, grammar/verify switches,
guidance, the prompt folder...). Settings that never change a sample (``batch``,
``device``, progress bars, FID features, bits per byte) are left out, so a run resumes
under other values of them.

The rule (:func:`check_run_dir`, then :func:`start_run`):

* a new or empty DIR, or one whose ``run.json`` equals this run's: used (resumed);
* ``run.json`` of another run: refused, naming the first setting that differs;
* samples without ``run.json``, or a non-empty DIR holding no eval run: refused;
* ``overwrite``: the earlier run's files are removed first: ``run.json``, the reports
  (:data:`REPORT_FILES`) and, under ``samples/`` and ``reference/``, the files of the
  names and suffixes an eval writes (:data:`RUN_TREES`); nothing else is touched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from ..errors import OutputError
from ..io import describe_os_error
from ..outputs import existing_entries

RUN_FILE = "run.json"
#: what a run record says it is (a ``run.json`` without it is not ours)
TOOL = "codeclm eval"
#: files an eval writes directly in DIR (all rewritten at the end of every run)
REPORT_FILES = (RUN_FILE, "results.json", "results.md", "fid_vs_r.png", "psnr_vs_frame.png",
                "per_class_fid.csv")
#: folder -> (depth of its files below it, suffixes of the files an eval writes there):
#: ``samples/<set>/<item><ext>`` and ``reference/<clip>.h264``
RUN_TREES = {"samples": (2, (".jpg", ".h264", ".json")), "reference": (1, (".h264",))}
#: config fields that never change a sample's bytes, and the lists each of whose values
#: has its own sample folder (``..._seed{s}``, ``r{ratio}_...``, ``s{S}_...``): adding a
#: seed, ratio or guidance scale to a run resumes it and generates only the new sets
NOT_SAMPLE_FIELDS = frozenset({
    "batch", "device", "quiet", "overwrite", "extractor", "weights", "feature_batch",
    "fid_backend", "shards", "bpb_blocks", "class_counts", "real_samples",
    "seeds", "ratios", "cfg_scales"})
_DIGESTS: dict[tuple, str] = {}


# ---------------------------------------------------------------------------- the record
def weights_digest(model_dir: str | os.PathLike) -> str:
    """SHA-256 over a model directory's ``config.json`` and safetensors files (names and
    bytes, read in 1 MiB chunks); remembered per file size and mtime within a process."""
    from ..weights import weight_files

    d = Path(model_dir)
    files = [f for f in [d / "config.json", *weight_files(d)] if f.is_file()]
    key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def model_identity(model_dir: str | os.PathLike, tokenizer, profile) -> dict:
    """The model a run's samples came from: tokenizer fingerprint, weights digest,
    profile name (not its path: a copied model directory is the same model)."""
    return {"tokenizer": tokenizer.fingerprint(), "weights_sha256": weights_digest(model_dir),
            "profile": profile.name}


def model_dir_identity(model: str | os.PathLike | None, modality: str) -> dict:
    """:func:`model_identity` of ``--model`` (None: the bundled model) without loading
    it (no torch): what a command checks its output directory with before loading."""
    from ..model_dir import check_model_dir, resolve_model_dir

    d = resolve_model_dir(model, modality)
    profile, tokenizer = check_model_dir(d, modality)
    return model_identity(d, tokenizer, profile)


def loaded_identity(lm) -> dict:
    """:func:`model_identity` of a loaded model (a ``LoadedModel``)."""
    return model_identity(lm.path, lm.tokenizer, lm.profile)


def sample_settings(config) -> dict:
    """The fields of an eval config (a dataclass) that change sample bytes: every field
    but :data:`NOT_SAMPLE_FIELDS`; ``sampling`` as temperature, top-k, top-p."""
    from .protocol import sampling_record

    out = {}
    for f in dataclasses.fields(config):
        if f.name in NOT_SAMPLE_FIELDS:
            continue
        value = getattr(config, f.name)
        if f.name == "sampling":
            out.update(sampling_record(value))
        elif isinstance(value, os.PathLike):
            out[f.name] = os.fspath(value)
        else:
            out[f.name] = value
    return out


def run_record(task: str, model: dict, config, **extra) -> dict:
    """The record of one run: ``task``, ``model`` (:func:`model_identity`), the settings
    of ``config`` that change samples, and ``extra`` ones (the prompt folder, the
    modality's class-eval settings). JSON values (what ``run.json`` holds)."""
    settings = {**sample_settings(config), **extra}
    return json.loads(json.dumps({"tool": TOOL, "task": task, "model": model,
                                  "settings": settings}))


def prompt_folder(path: str | os.PathLike) -> str:
    """How the record names a folder of prompts: its absolute path."""
    return str(Path(path).resolve())


# ---------------------------------------------------------------------------- the rule
def read_record(out: str | os.PathLike) -> dict | None:
    """``DIR/run.json`` if it is a run record of ours, else None."""
    try:
        data = json.loads((Path(out) / RUN_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    ok = isinstance(data, dict) and data.get("tool") == TOOL and all(
        isinstance(data.get(k), dict) for k in ("model", "settings"))
    return data if ok else None


def _flat(record: dict) -> dict:
    flat = {"task": record.get("task")}
    flat.update({f"model {k}": v for k, v in record.get("model", {}).items()})
    flat.update(record.get("settings", {}))
    return flat


def _show(value) -> str:
    if isinstance(value, str):
        return value[:12] if len(value) == 64 else value  # a digest: its first 12 digits
    return json.dumps(value)


def first_difference(old: dict, new: dict) -> str | None:
    """``"temperature 1.0 there, 0.7 now"`` for the first key whose value differs
    (task, then model, then settings), or None when the records agree."""
    a, b = _flat(old), _flat(new)
    for key in list(b) + [k for k in a if k not in b]:
        there, now = a.get(key, "(absent)"), b.get(key, "(absent)")
        if there != now:
            return f"{key} {_show(there)} there, {_show(now)} now"
    return None


def check_run_dir(out: str | os.PathLike, record: dict, overwrite: bool = False) -> None:
    """Refuse ``out`` by the rule in the module docstring (:class:`OutputError`, one
    line); only looks."""
    p = Path(out)
    entries = existing_entries(out)
    if not entries or overwrite:
        return
    hint = "use another -o or --overwrite"
    old = read_record(p)
    if old is not None:
        diff = first_difference(old, record)
        if diff is not None:
            raise OutputError(f"{out}: holds samples from another run ({diff}); {hint}")
    elif (p / RUN_FILE).exists():
        raise OutputError(f"{p / RUN_FILE}: not a run record of {TOOL}; {hint}")
    elif (p / "samples").exists():
        raise OutputError(f"{out}: holds samples but no {RUN_FILE} (from an eval before run "
                          f"records, or not ours), so they may be of another run; {hint}")
    else:
        raise OutputError(f"{out}: is not empty and holds no eval run; {hint} (it removes "
                          "only an eval's files)")


def start_run(out: str | os.PathLike, record: dict, overwrite: bool = False) -> None:
    """Check ``out`` (:func:`check_run_dir`), remove the earlier run's files when
    ``overwrite``, and write ``run.json`` (atomically): call before the first sample."""
    from ..io import atomic_write

    check_run_dir(out, record, overwrite)
    p = Path(out)
    try:
        if overwrite and p.is_dir():
            remove_run_files(p)
        p.mkdir(parents=True, exist_ok=True)
        if read_record(p) != record:
            with atomic_write(p / RUN_FILE, "w") as f:
                json.dump(record, f, indent=1)
    except OSError as e:
        raise OutputError(f"{out}: cannot write ({describe_os_error(e)})") from e


def remove_run_files(out: Path) -> None:
    """Remove what an eval writes in ``out``: :data:`REPORT_FILES`, and in each folder
    of :data:`RUN_TREES` the plain files at its depth with its suffixes (and leftover
    ``.NAME.part`` temp files), then the folders this leaves empty. Nothing else;
    symbolic links to folders are never followed."""
    for name in REPORT_FILES:
        q = out / name
        if q.is_symlink() or q.is_file():
            q.unlink()
    for tree, (depth, suffixes) in RUN_TREES.items():
        root = out / tree
        if root.is_symlink() or not root.is_dir():
            continue
        for dirpath, _, filenames in os.walk(root, topdown=False):
            here = Path(dirpath)
            if len(here.relative_to(root).parts) == depth - 1:
                for name in filenames:
                    f = here / name
                    temp = name.startswith(".") and name.endswith(".part")
                    if not f.is_symlink() and (f.suffix in suffixes or temp):
                        f.unlink()
            try:
                here.rmdir()
            except OSError:
                pass  # not empty: something that is not ours is in it
