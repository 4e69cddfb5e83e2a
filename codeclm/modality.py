"""The modality registry: every fact about "jpeg" and "h264" that shared code needs.

Each modality package declares one :class:`ModalityRecord` (``jpeglm.modality.RECORD``,
``avclm.modality.RECORD``); :data:`DECLARED` is the one line that lists them. Shared
code (profiles, model directories, the tokenizer's unit split, the streaming splitter,
data tools, evaluation inputs, training help) asks the registry instead of naming a
modality: :func:`record`, :func:`names`, :func:`extensions`, :func:`modality_of_kind`.

Adding a modality: write its package (a profile registry, a class implementing
:class:`Modality`, its CLI) with a ``RECORD`` in it, and add that record's
``"module:attribute"`` to :data:`DECLARED`. Nothing else in ``codeclm`` or
``data_tools`` changes. :func:`register` adds a record at run time (tests, plugins).

The records are read lazily: importing this module imports no modality, and a record's
module must stay light (no codec libraries at import time).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Protocol

import numpy as np

#: the registry line: where each modality's record lives ("module:attribute")
DECLARED = ("jpeglm.modality:RECORD", "avclm.modality:RECORD")

#: unit-marker sides: "after" = the marker closes a unit and stays with it (JPEG RST);
#: "before" = the marker opens a unit and stays with it (H.264 start code)
SIDES = ("after", "before")


@dataclasses.dataclass(frozen=True)
class ModalityRecord:
    """What one modality is, declared once in its own package.

    ``unit_marker`` is a regular expression over bytes written only with ``\\xHH``
    escapes, character classes, ranges and ``?``: the same text, each ``\\xHH`` spelled
    as its BPE character, is the tokenizer's pre-split pattern (:meth:`split_pattern`),
    so tokens never cross a unit boundary; the streaming splitter and the fast encoder
    search for it too. ``end_marker`` (optional, same syntax) also closes the last unit
    while streaming (JPEG's EOI), but is no tokenizer split.
    """

    #: modality name stored in profiles, tokenizers and checkpoints: "jpeg", "h264"
    name: str
    #: its command-line program: "jpeglm", "avclm"
    command: str
    #: the media kind it models: "image", "video" (one modality per kind)
    media_kind: str
    #: lower-case file extensions (with the dot) read as that media kind
    extensions: frozenset[str]
    #: "module:attribute" of the profile registry, a ``dict[str, profile]``
    profiles: str
    #: "module:attribute" of the profile dataclass (rebuilt from ``profile.json``)
    profile_class: str
    #: "module:attribute" of the :class:`Modality` implementation (built from a profile)
    implementation: str
    #: regex over bytes of the unit-boundary marker (see the class docstring)
    unit_marker: bytes
    #: "after" or "before" (see :data:`SIDES`)
    marker_side: str
    #: "package/relative/dir" of the bundled demo model (may be absent on disk)
    bundled_model: str
    #: one line for help texts, e.g. "JPEG-LM (images as JPEG bytes)"
    description: str
    #: regex over bytes that also closes the last unit while streaming, or None
    end_marker: bytes | None = None
    #: "module:function" returning ``{library: version}`` of the codec libraries that make
    #: its canonical bytes (recorded in profile.json, :mod:`codeclm.versions`), or None
    codec_versions: str | None = None

    def __post_init__(self) -> None:
        if self.marker_side not in SIDES:
            from .errors import ConfigError

            raise ConfigError(f"{self.name}: marker_side must be one of {SIDES}, "
                              f"not {self.marker_side!r}")

    def split_pattern(self, byte_char) -> tuple[str, str]:
        """The tokenizer's unit split: (pattern over BPE characters, ``tokenizers`` Split
        behaviour). ``byte_char(b)`` is the character that spells byte ``b``."""
        text = re.sub(rb"\\x([0-9a-fA-F]{2})",
                      lambda m: byte_char(int(m.group(1), 16)).encode("utf-8"), self.unit_marker)
        behavior = "merged_with_previous" if self.marker_side == "after" else "merged_with_next"
        return text.decode("utf-8"), behavior

    def stream_pattern(self) -> bytes:
        """Regex over bytes of every marker that closes (or opens) a unit while streaming."""
        if self.end_marker is None:
            return self.unit_marker
        return b"(?:" + self.unit_marker + b")|(?:" + self.end_marker + b")"

    def unit_starts(self, data: bytes) -> np.ndarray:
        """Byte offsets (int64, sorted) where a unit starts, as the tokenizer's split has
        it: after each marker ("after") or at each marker's first byte ("before")."""
        pos = [m.end() if self.marker_side == "after" else m.start()
               for m in _compiled(self.unit_marker).finditer(data)]
        return np.asarray(pos, dtype=np.int64)

    def load_profiles(self) -> dict:
        """The profile registry, ``{name: profile}``."""
        return _attribute(self.profiles)

    def load_profile_class(self) -> type:
        return _attribute(self.profile_class)

    def load_codec_versions(self):
        """The ``codec_versions`` function (call it for ``{library: version}``)."""
        return _attribute(self.codec_versions)

    def bundled_dir(self):
        """Where the bundled model would be (a ``Path``; it may not exist)."""
        from pathlib import Path

        package, _, sub = self.bundled_model.partition("/")
        return Path(importlib.import_module(package).__file__).parent / sub


class Modality(Protocol):
    """What a modality does for the shared stages, for one codec profile."""

    #: the record's name, "jpeg" or "h264"
    name: str
    #: the codec profile (frozen dataclass) this instance encodes with
    profile: object

    def encode_path(self, path: str) -> bytes:
        """A media file on disk -> the canonical modeled bytes (raises typed errors)."""

    def split_units(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """Modeled bytes -> (header, units). ``header + b"".join(units)`` == ``data``
        up to a trailer; units are MCUs (JPEG) or NAL units (H.264)."""

    def decode_tolerant(self, data: bytes) -> list[np.ndarray]:
        """Possibly damaged modeled bytes -> RGB frames (H, W, 3) uint8 at the profile's
        size; never raises on corrupt data (an undecodable stream gives grey frames)."""

    def pixels_per_sample(self) -> int:
        """Raw pixel values (H * W * 3 * frames) one sample stands for."""


_registry: dict[str, ModalityRecord] | None = None


def _attribute(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


_patterns: dict[bytes, re.Pattern] = {}


def _compiled(pattern: bytes) -> re.Pattern:
    if pattern not in _patterns:
        _patterns[pattern] = re.compile(pattern)
    return _patterns[pattern]


def _records() -> dict[str, ModalityRecord]:
    global _registry
    if _registry is None:
        found = {}
        for spec in DECLARED:
            rec = _attribute(spec)
            found[rec.name] = rec
        _registry = found
    return _registry


def register(rec: ModalityRecord) -> None:
    """Add (or replace) a modality at run time; :func:`unregister` removes it."""
    _records()[rec.name] = rec


def unregister(name: str) -> None:
    _records().pop(name, None)


def names() -> list[str]:
    """Registered modality names, in declaration order."""
    return list(_records())


def find(name: object) -> ModalityRecord | None:
    """The record of modality ``name``, or None (callers raise their own typed error)."""
    return _records().get(name) if isinstance(name, str) else None


def record(name: str) -> ModalityRecord:
    """The record of modality ``name``; :class:`~codeclm.errors.ProfileError` if unknown."""
    rec = find(name)
    if rec is None:
        from .errors import ProfileError

        raise ProfileError(f"unknown modality {name!r}; expected one of {sorted(_records())}")
    return rec


def command_of(name: str) -> str:
    """The CLI program of a modality ("jpeglm"), or "?" for an unknown name."""
    rec = find(name)
    return rec.command if rec else "?"


def wrong_modality(path, found: str, wanted: str) -> str:
    """The message for a model of modality ``found`` handed to the command of ``wanted``."""
    return (f"{path}: this is a {found} model ({command_of(found)}); "
            f"{command_of(wanted)} needs a {wanted} model")


def media_kinds() -> list[str]:
    """The media kinds of the registered modalities ("image", "video"), in order."""
    return list(dict.fromkeys(r.media_kind for r in _records().values()))


def extensions(kind: str) -> frozenset[str]:
    """Every file extension read as media kind ``kind`` (empty for an unknown kind): the one
    list that data tools, evaluation and apps use to find media."""
    return frozenset().union(*(r.extensions for r in _records().values() if r.media_kind == kind))


def modality_of_kind(kind: str) -> str | None:
    """The modality that models media kind ``kind`` ("image" -> "jpeg"), or None."""
    return next((r.name for r in _records().values() if r.media_kind == kind), None)


def modality_for(profile) -> Modality:
    """Build the Modality implementation that matches ``profile.modality``."""
    return _attribute(record(profile.modality).implementation)(profile)
