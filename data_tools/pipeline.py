"""A folder of media -> litdata token shards (the ``images`` / ``videos`` commands).

Two phases:

1. **encode** (parallel, resumable): each work unit (:mod:`data_tools.units`: a whole
   file, one clip of a video, one random crop of an image) is turned into canonical
   codec bytes (``codeclm.modality.modality_for(profile).encode_path``,
   :mod:`avclm.clips`, :mod:`data_tools.crops`), tokenized as ``[<s>] + tokens + [</s>]``
   and appended as one record to the result log (:mod:`data_tools.cache`); a bad unit
   records its reason instead. Units already in the cache are not redone, so a killed
   run picks up where it stopped.
2. **build** (one process, deterministic): the cached samples are written, in sorted
   unit order, as a litdata TokensLoader shard set (:mod:`data_tools.shards`) into a
   staging folder that then replaces the output's shards; ``profile.json``,
   ``tokenizer.json``, ``skipped.jsonl``, ``stats.json`` and ``manifest.jsonl`` (each
   sample's file and clip start or crop, in shard order) are written beside them.

The same inputs, profile and tokenizer give byte-identical shards and stats, whatever
the number of workers and however often the run was interrupted.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np

from codeclm import versions
from codeclm.errors import InputError, ProfileError, TokenizerError
from codeclm.io import atomic_write, atomic_write_bytes
from codeclm.labels import save_labels
from codeclm.profile import profile_to_dict, save_profile
from codeclm.tokenizer import ByteTokenizer

from . import outdir, shards
from .cache import InputCache, LogWriter, input_key, sha256_file
from .labelling import Labelling, plan_labels
from .sources import kind_of, kind_of_modality, list_files, modality_of_kind, source_root
from .units import Unit, plan
from .workers import progress, run_parallel

CACHE_DIR = ".cache"
STAGING_DIR = ".staging"
STATS_FILE = "stats.json"
SKIPPED_FILE = "skipped.jsonl"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.jsonl"


@dataclasses.dataclass
class BuildResult:
    out: Path
    samples: int        #: samples written to the shards
    skipped: int        #: units (files, clips, crops) recorded in skipped.jsonl
    encoded: int        #: units encoded by this run
    reused: int         #: units found already encoded (an earlier, interrupted run)
    errors: int         #: skipped units that raised an unexpected (non-library) exception
    stats: dict
    files: int = 0      #: media files the samples come from

    def summary(self, kind: str) -> str:
        s = self.stats
        line = (f"{kind}s: {self.samples} samples, {s['total_tokens']} tokens "
                f"({s['tokens_per_sample']['mean']:.1f}/sample, {s['pixels_to_tokens']:.1f}x fewer "
                f"than pixel values), {s['chunks']} chunks -> {self.out}")
        if self.files and self.files != self.samples:
            line = line.replace(" samples, ", f" samples from {self.files} files, ", 1)
        if self.skipped:
            line += f"; {self.skipped} skipped (see {self.out / SKIPPED_FILE})"
        if self.errors:
            line += f", {self.errors} of them by unexpected errors"
        if self.reused:
            line += f"; {self.reused} reused from an earlier run"
        return line


# --- phase 1: encode in workers ---------------------------------------------------------

_W: dict = {}


def _init_worker(profile, tokenizer_path: str, cache_root: str, crop_seed: int = 0) -> None:
    from codeclm.modality import modality_for

    _W["profile"] = profile
    _W["modality"] = modality_for(profile)
    _W["tokenizer"] = ByteTokenizer.load(tokenizer_path)
    _W["log"] = LogWriter(cache_root)
    _W["crop_seed"] = crop_seed
    _close_reader()


def _close_reader() -> None:
    reader = _W.pop("reader", None)
    if reader is not None:
        reader.close()


def _clip_bytes(path: str, unit: Unit) -> bytes:
    """One clip, through a reader kept open between consecutive clips of one file (it
    decodes on instead of seeking; the bytes are the same either way)."""
    from avclm.clips import ClipReader

    reader = _W.get("reader")
    if reader is None or reader.path != path:
        _close_reader()
        reader = _W["reader"] = ClipReader(path, _W["profile"])
    return reader.encode(unit.clip, unit.next_clip)


def _unit_bytes(path: str, unit: Unit) -> bytes:
    if unit.clip is not None:
        return _clip_bytes(path, unit)
    if unit.crop is not None:
        from .crops import encode_crop

        return encode_crop(path, _W["profile"], _W["crop_seed"], unit.rel, unit.crop)
    return _W["modality"].encode_path(path)


def _encode_job(job: tuple[str, str, Unit]) -> int:
    """(absolute path, cache key, unit) -> number of tokens logged; raises typed errors."""
    path, key, unit = job
    data = _unit_bytes(path, unit)
    ids = _W["tokenizer"].encode_array(data)
    _W["log"].put_tokens(key, ids)
    return len(ids)


# --- the whole job ---------------------------------------------------------------------


def build_dataset(src: str | os.PathLike, out: str | os.PathLike, kind: str, profile,
                  tokenizer_path: str | os.PathLike, workers: int = 1,
                  chunk_bytes: int = shards.DEFAULT_CHUNK_BYTES, keep_cache: bool = False,
                  show_progress: bool | None = None, strict: bool = False,
                  limit: int | None = None, overwrite: bool = False, clips: int | None = None,
                  stride=None, crops: int = 0, crop_seed: int = 0, labels: str | None = None,
                  drop_label: float = 0.1) -> BuildResult:
    """Encode and tokenize every ``kind`` file under ``src`` into a shard set in ``out``.

    ``kind``: "image" or "video" (must match ``profile.modality``: jpeg / h264).
    Videos: ``clips`` clips per file (None: every clip) every ``stride`` seconds (None:
    the clip length, non-overlapping); ``clips=1`` is the first clip only, without
    probing. Images: ``crops`` seeded random crops (``crop_seed``) besides the fit crop.
    ``labels``: ``"folder"`` or a CSV path (class-conditional samples, ``drop_label`` of
    them with the null class; :mod:`data_tools.labelling`).
    ``limit``: use only the first N files (sorted order). ``keep_cache``: keep
    ``out/.cache`` after success (otherwise removed). ``strict``: unexpected exceptions
    stop the job instead of being recorded as skipped. ``out`` must be new, empty or
    one of ours (``overwrite``: any folder without foreign ``.cache``/``.staging``/chunks);
    one run at a time holds it (:mod:`data_tools.outdir`).
    Raises :class:`InputError` if ``src`` is missing or empty or no input is usable,
    :class:`OutputError` if ``out`` is not ours to write or another run holds it.
    """
    src, out = Path(src), Path(out)
    if modality_of_kind(kind) != profile.modality:
        raise ProfileError(f"profile {profile.name!r} is a {profile.modality} profile; "
                           f"{kind}s need a {modality_of_kind(kind) or '?'} profile")
    tokenizer_path = Path(tokenizer_path)
    if tokenizer_path.is_dir():
        tokenizer_path = tokenizer_path / TOKENIZER_FILE
    tokenizer = ByteTokenizer.load(tokenizer_path)
    if tokenizer.modality != profile.modality:
        raise TokenizerError(f"{tokenizer_path}: tokenizer is for "
                             f"{kind_of_modality(tokenizer.modality)}s "
                             f"({tokenizer.modality}), not {kind}s")
    outdir.check_out(src, out, overwrite)
    libs = _check_versions(out, profile.modality)

    # a labels CSV kept among the media is input, not a file to skip
    rels = list_files(src, exclude=[out, *([labels] if labels not in (None, "folder") else [])])
    if not rels:
        raise InputError(f"{src}: no files found")
    if limit is not None:
        rels = rels[:limit]
    root = source_root(src)

    tok_sha = sha256_file(tokenizer_path)  # the file's checksum, for stats.json
    # the cache key covers the codec libraries too: tokens made by another build never mix in
    prof_sha = _sha256_text(json.dumps([profile_to_dict(profile), libs], sort_keys=True))
    cache = InputCache(out / CACHE_DIR)
    skipped: dict[Unit, str] = {}
    stats_of: dict[str, os.stat_result] = {}  # relpath -> stat, media files only
    for rel in rels:
        r = rel.as_posix()
        if kind_of(rel) != kind:
            other = kind_of(rel)
            skipped[Unit(r)] = (f"not {'an' if kind == 'image' else 'a'} {kind} file "
                                f"({'a ' + other if other else 'unknown'} extension "
                                f"{rel.suffix or '(none)'!r})")
            continue
        try:
            stats_of[r] = (root / rel).stat()
        except OSError as e:  # a broken link, or vanished / unreadable since it was listed
            what = "broken symbolic link" if (root / rel).is_symlink() else "cannot read file"
            skipped[Unit(r)] = f"{what} ({e.strerror or e})"
    labelling, unlabelled = plan_labels(labels, drop_label, root, list(stats_of), tokenizer)
    skipped.update(unlabelled)
    units, unplanned = plan([r for r in stats_of if Unit(r) not in unlabelled], root, kind,
                            profile, clips, stride, crops)
    skipped.update(unplanned)
    keys: dict[Unit, str] = {}  # unit -> cache key
    for u in units:
        st = stats_of[u.rel]
        keys[u] = input_key(u.cache_name(crop_seed), st.st_size, st.st_mtime_ns, prof_sha,
                            tokenizer.fingerprint())

    with outdir.claimed(out, f"data_tools {kind}s"):
        return _encode_and_build(out, kind, profile, tokenizer, tokenizer_path, tok_sha, cache,
                                 keys, skipped, root, workers, chunk_bytes, keep_cache,
                                 show_progress, strict, src, crop_seed, labelling)


def _encode_and_build(out: Path, kind: str, profile, tokenizer: ByteTokenizer,
                      tokenizer_path: Path, tok_sha: str, cache: InputCache,
                      keys: dict[Unit, str], skipped: dict[Unit, str], root: Path, workers: int,
                      chunk_bytes: int, keep_cache: bool, show_progress: bool | None,
                      strict: bool, src: Path, crop_seed: int,
                      labelling: Labelling | None = None) -> BuildResult:
    """Phases 1 and 2 inside the claimed ``out``."""
    errors: dict[Unit, str] = {}
    cache.scan()
    todo = [u for u, k in keys.items() if not cache.has(k)]
    reused = len(keys) - len(todo)
    skip_log = None
    jobs = [(str((root / u.rel).resolve()), keys[u], u) for u in todo]
    results = run_parallel(_encode_job, jobs, workers, _init_worker,
                           (profile, str(tokenizer_path.resolve()), str(cache.root.resolve()),
                            crop_seed), strict=strict)
    for job, outcome in progress(results, total=len(keys), initial=reused, enabled=show_progress,
                                 desc=f"encoding {kind}s", unit="sample"):
        unit = job[2]
        if outcome.status == "skip":
            skip_log = skip_log or LogWriter(cache.root)
            skip_log.put_skip(job[1], unit.rel, outcome.reason)
        elif outcome.status == "error":  # not cached: a re-run tries again
            errors[unit] = outcome.reason
    _close_reader()
    for log in (skip_log, _W.get("log")):  # the in-process worker's log, when workers == 1
        if log is not None:
            log.close()
    cache.scan()

    return _build(out, kind, profile, tokenizer, tokenizer_path, tok_sha, cache, keys, skipped,
                  errors, encoded=len(todo), reused=reused, chunk_bytes=chunk_bytes,
                  keep_cache=keep_cache, src=src, root=root, strict=strict, crop_seed=crop_seed,
                  labelling=labelling)


def _redo(path: Path, key: str, unit: Unit, cache: InputCache, profile, tokenizer_path: Path,
          strict: bool, crop_seed: int):
    """Encode one unit in this process: its tokens, or its non-ok Outcome."""
    from .workers import call_safely

    _init_worker(profile, str(tokenizer_path), str(cache.root), crop_seed)
    try:
        outcome = call_safely(_encode_job, (str(path.resolve()), key, unit), strict=strict)
    finally:
        _close_reader()
        _W["log"].close()
    if outcome.status != "ok":
        return outcome
    return cache.scan().get(key)


def _check_versions(out: Path, modality: str) -> dict[str, str]:
    """The running codec libraries' versions; :class:`ProfileError` if ``out`` already holds
    a shard set made with others (adding to it would mix two encoders' bytes)."""
    running = versions.current(modality)
    recorded = versions.read(out) if (out / "profile.json").is_file() else None
    diff = versions.differences(recorded, running) if recorded else []
    if diff:
        raise ProfileError(f"{out}: this shard set was made with other codec libraries "
                           f"({'; '.join(diff)}); adding to it would mix their bytes: build "
                           "into a new OUT")
    return running


def _sha256_text(s: str) -> str:
    import hashlib

    return hashlib.sha256(s.encode()).hexdigest()


# --- phase 2: shards and metadata ---------------------------------------------------------


def _build(out: Path, kind: str, profile, tokenizer: ByteTokenizer, tokenizer_path: Path,
           tok_sha: str, cache: InputCache, keys: dict[Unit, str], skipped: dict[Unit, str],
           errors: dict[Unit, str], encoded: int, reused: int, chunk_bytes: int,
           keep_cache: bool, src: Path, root: Path, strict: bool,
           crop_seed: int = 0, labelling: Labelling | None = None) -> BuildResult:
    data_tok = tokenizer
    if labelling is not None:  # the shards' tokenizer: with the class tokens
        tokenizer = labelling.tokenizer
    lengths: list[int] = []
    byte_lengths: list[int] = []
    written: list[Unit] = []
    tb_len = np.array([len(b) if b else 0 for b in tokenizer.token_bytes], np.int64)

    def samples():
        for unit in sorted(keys, key=Unit.sort_key):
            if unit in errors:
                skipped[unit] = errors[unit]
                continue
            got = cache.get(keys[unit])
            if got is None:  # its record was lost (e.g. the log removed under us): redo it
                got = _redo(root / unit.rel, keys[unit], unit, cache, profile, tokenizer_path,
                            strict, crop_seed)
                if not isinstance(got, np.ndarray):
                    got = got.reason
            if isinstance(got, str):
                skipped[unit] = got
                continue
            if labelling is not None:
                got = labelling.apply(unit, got)
            written.append(unit)
            lengths.append(int(got.size))
            byte_lengths.append(int(tb_len[got].sum()))
            yield got

    staging = out / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    gen = samples()
    first = next(gen, None)
    if first is None:
        _write_skipped(out, skipped)
        reasons = sorted(set(skipped.values()))
        raise InputError(f"{src}: none of the {len(skipped)} inputs could be used "
                         f"(e.g. {reasons[0]}); see {out / SKIPPED_FILE}")
    info = shards.write_shards(itertools.chain([first], gen), staging, tokenizer.vocab_size,
                               chunk_bytes)
    shards.install_shards(staging, out)
    save_profile(profile, out, versions=versions.current(profile.modality))
    if tokenizer is data_tok:
        atomic_write_bytes(out / TOKENIZER_FILE, tokenizer_path.read_bytes())
    else:
        tokenizer.save(out / TOKENIZER_FILE)
        save_labels(tokenizer, out)
    _write_skipped(out, skipped)
    _write_manifest(out, kind, written)
    stats = compute_stats(kind, profile, lengths, byte_lengths, info, skipped,
                          profile_sha=sha256_file(out / "profile.json"), tokenizer_sha=tok_sha,
                          tokenizer_name=tokenizer_path.name, vocab_size=tokenizer.vocab_size,
                          tokenizer_fingerprint=tokenizer.fingerprint())
    with atomic_write(out / STATS_FILE, "w") as f:
        json.dump(stats, f, indent=2, sort_keys=True)
        f.write("\n")
    if keep_cache:
        cache.compact([keys[u] for u in sorted(keys, key=Unit.sort_key)])
    else:
        cache.remove()
    return BuildResult(out, len(lengths), len(skipped), encoded, reused, len(errors), stats,
                       files=len({u.rel for u in written}))


def _write_skipped(out: Path, skipped: dict[Unit, str]) -> None:
    """skipped.jsonl: one row per skipped file, clip or crop: ``path`` (and
    ``clip_start`` seconds or ``crop``), ``reason``; sorted."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / SKIPPED_FILE, "w") as f:
        for unit in sorted(skipped, key=Unit.sort_key):
            f.write(json.dumps({**unit.describe(), "reason": skipped[unit]}) + "\n")


def _write_manifest(out: Path, kind: str, written: list[Unit]) -> None:
    """manifest.jsonl: row i is shard sample i: ``sample``, ``path`` and, for a video,
    ``clip_start`` (seconds into the file; the clip lasts the profile's ``seconds``), for
    an image's random crop ``crop`` (its index)."""
    with atomic_write(out / MANIFEST_FILE, "w") as f:
        for i, unit in enumerate(written):
            row = {"sample": i, **unit.describe()}
            if kind == "video" and unit.clip is None:
                row["clip_start"] = 0.0
            f.write(json.dumps(row) + "\n")


def compute_stats(kind: str, profile, lengths, byte_lengths, info: dict, skipped: dict,
                  profile_sha: str, tokenizer_sha: str, tokenizer_name: str,
                  vocab_size: int, tokenizer_fingerprint: str | None = None) -> dict:
    """stats.json: counts, tokens per sample (incl. <s> and </s>), modeled bytes per
    sample, and pixel values per token (``pixels_per_sample / mean tokens``)."""
    from codeclm.modality import modality_for

    t = np.asarray(lengths, np.int64)
    b = np.asarray(byte_lengths, np.int64)
    pixels = int(modality_for(profile).pixels_per_sample())

    def summary(a):
        return {"mean": float(a.mean()), "median": float(np.median(a)), "min": int(a.min()),
                "max": int(a.max())}

    return {
        "kind": kind,
        "modality": profile.modality,
        "samples": int(t.size),
        "skipped": len(skipped),
        "inputs": int(t.size) + len(skipped),
        "total_tokens": int(t.sum()),
        "tokens_per_sample": summary(t),
        "total_bytes": int(b.sum()),
        "bytes_per_sample": summary(b),
        "bytes_per_token": float(b.sum() / max(1, t.sum() - 2 * t.size)),
        "pixels_per_sample": pixels,
        "pixels_to_tokens": float(pixels / t.mean()),
        "sample_layout": "[<s>] + tokens(modeled bytes) + [</s>]",
        "token_dtype": info["dtype"],
        "chunks": info["chunks"],
        "profile": {"name": profile.name, "sha256": profile_sha},
        "tokenizer": {"name": tokenizer_name, "sha256": tokenizer_sha, "vocab_size": vocab_size,
                      "fingerprint": tokenizer_fingerprint},
    }
