"""Codec profiles: one frozen dataclass per modality names every codec parameter.

A profile is saved as ``profile.json`` beside every model and every shard set;
everything downstream reads it instead of repeating numbers. The JSON carries a
``modality`` field (a name in the :mod:`codeclm.modality` registry) so
:func:`load_profile` can rebuild the right class without the caller knowing which one it is.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from . import modality as registry
from .errors import ProfileError

PROFILE_FILE = "profile.json"


def profiles_of(modality: str) -> dict[str, Any]:
    """The named profiles of a modality, e.g. ``profiles_of("jpeg")["paper"]``."""
    return registry.record(modality).load_profiles()


def get_profile(modality: str, name: str):
    """Look up a named profile; a clear error lists the known names."""
    known = profiles_of(modality)
    if name not in known:
        raise ProfileError(f"unknown {modality} profile {name!r}; "
                           f"known: {', '.join(sorted(known))}")
    return known[name]


def profile_to_dict(profile) -> dict[str, Any]:
    d = dataclasses.asdict(profile)
    d["modality"] = profile.modality
    return d


def profile_from_dict(d: dict[str, Any]):
    if not isinstance(d, dict):
        raise ProfileError(f"a profile is a JSON object, not {type(d).__name__}")
    d = dict(d)
    d.pop("versions", None)  # the codec libraries' versions (codeclm.versions), not settings
    modality = d.pop("modality", None)
    rec = registry.find(modality)
    if rec is None:
        raise ProfileError(f"profile has unknown modality {modality!r}")
    cls = rec.load_profile_class()
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields
    if unknown:
        raise ProfileError(f"profile has unknown fields {sorted(unknown)}")
    for k, v in list(d.items()):  # JSON turns tuples into lists
        if isinstance(v, list):
            d[k] = tuple(v)
    try:
        return cls(**d)
    except (TypeError, ValueError) as e:
        raise ProfileError(f"invalid {modality} profile ({e})") from e


def save_profile(profile, directory: str | os.PathLike,
                 versions: dict[str, str] | None = None) -> Path:
    """Write ``profile.json`` into ``directory`` (atomically), with the codec libraries'
    ``versions`` (:mod:`codeclm.versions`) under ``"versions"`` when given."""
    from .io import atomic_write

    path = Path(directory) / PROFILE_FILE
    d = profile_to_dict(profile)
    if versions:
        d["versions"] = dict(versions)
    with atomic_write(path, "w") as f:
        json.dump(d, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def load_profile(directory_or_file: str | os.PathLike):
    """Read a ``profile.json`` (or the one inside a directory)."""
    p = Path(directory_or_file)
    if p.is_dir():
        p = p / PROFILE_FILE
    if not p.is_file():
        raise ProfileError(f"{p}: no codec profile found")
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8
        raise ProfileError(f"{p}: unreadable profile ({e})") from e
    return profile_from_dict(d)
