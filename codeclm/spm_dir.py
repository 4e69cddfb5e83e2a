"""Model directories in the published JPEG-LM checkpoint's format, used as they are.

``uwnlp/jpeg-lm-reimplementation`` is a Hugging Face Llama directory with a SentencePiece
tokenizer and no codec profile::

    config.json  model.safetensors | model-0000N-of-0000M.safetensors + model.safetensors.index.json
    tokenizer.model  tokenizer_config.json  [special_tokens_map.json  tokenizer.json  ...]

:func:`codeclm.model_dir.load_model_dir` loads such a directory (recognised by
:func:`is_spm_dir`, checked by :func:`check_spm_dir`) for ``jpeglm generate|complete|eval
--model DIR``: the tokenizer is :class:`codeclm.spm_tokenizer.SpmTokenizer` over
``tokenizer.model``; the profile is ``profile.json`` when the directory has one, else the
``paper`` JPEG profile (the checkpoint was trained on it), which is said once on stderr.
Weights are read from safetensors only (one file or shards); PyTorch ``.bin`` pickles are
refused with the command that converts them (codeclm never unpickles). Nothing is
fetched from the network.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .errors import ModelError

log = logging.getLogger("codeclm")
_NOTED: set[str] = set()

SPM_FILE = "tokenizer.model"
SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def is_spm_dir(path: Path) -> bool:
    """Whether ``path`` is (or is meant to be) a SentencePiece model directory: it holds
    ``tokenizer.model``, or it has no ``profile.json`` and a ``LlamaTokenizer`` config
    (then :func:`check_spm_dir` names what is missing)."""
    if (path / SPM_FILE).is_file():
        return True
    if (path / "profile.json").is_file():
        return False
    try:
        tok_config = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(tok_config, dict) and "Llama" in str(tok_config.get("tokenizer_class"))


def check_spm_dir(path: str | os.PathLike, modality: str | None = None):
    """Every check of a SentencePiece model directory that needs no torch (files, config,
    weights present, profile or the `paper` default, tokenizer) -> ``(profile, tokenizer)``."""
    from .modality import wrong_modality
    from .profile import load_profile
    from .spm_tokenizer import SpmTokenizer

    path = Path(path)
    for name in ("config.json", SPM_FILE):
        if not (path / name).is_file():
            raise ModelError(f"{path}: incomplete SentencePiece model directory (missing {name})")
    _check_weights(path)
    config = _read_config(path)
    has_profile = (path / "profile.json").is_file()
    profile = load_profile(path) if has_profile else None
    kind = profile.modality if has_profile else "jpeg"
    if modality is not None and kind != modality:
        raise ModelError(wrong_modality(path, kind, modality))
    tokenizer = SpmTokenizer.load(path / SPM_FILE, kind)
    profile = profile or _paper_profile(path)
    if config.get("vocab_size", 0) < tokenizer.vocab_size:
        raise ModelError(f"{path}: model vocabulary ({config.get('vocab_size')}) is smaller than "
                         f"tokenizer.model's ({tokenizer.vocab_size} pieces)")
    return profile, tokenizer


def _paper_profile(path: Path):
    """The profile the published checkpoint was trained on; said once per directory."""
    from jpeglm.profile import PROFILES

    key = str(path.resolve())
    if key not in _NOTED:
        _NOTED.add(key)
        log.warning(f"{path}: SentencePiece model directory without profile.json: using the "
                    f"`paper` JPEG profile (256x256, quality 25, 4:2:0, a restart marker after "
                    f"every MCU)")
    return PROFILES["paper"]


def _read_config(path: Path) -> dict:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}/config.json: not a model config ({_first_line(e)})") from e
    if not isinstance(config, dict) or config.get("model_type") != "llama":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise ModelError(f"{path}/config.json: expected a Llama model, got model_type {kind!r}")
    return config


def _check_weights(path: Path) -> None:
    if any((path / n).is_file() for n in SAFETENSORS):
        return
    if any((path / n).is_file() for n in PICKLES):
        raise ModelError(
            f"{path}: the weights are PyTorch pickles (pytorch_model.bin), which codeclm does "
            "not load; convert them to safetensors once (see README, 'The published JPEG-LM "
            "checkpoint')")
    raise ModelError(f"{path}: no weights (model.safetensors or model.safetensors.index.json)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

