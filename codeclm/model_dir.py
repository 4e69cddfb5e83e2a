"""Model directories: what training exports and what the generators take.

A model directory is ordinary Hugging Face ``save_pretrained`` output plus the
codec profile::

    config.json  model.safetensors  generation_config.json   (LlamaForCausalLM)
    tokenizer.json  tokenizer_config.json                      (PreTrainedTokenizerFast)
    profile.json                                               (codec profile)

so ``AutoModelForCausalLM.from_pretrained(DIR)`` and
``PreTrainedTokenizerFast.from_pretrained(DIR)`` load it with no toolkit code.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from .errors import ModelError, TokenizerError
from .profile import load_profile, save_profile
from .tokenizer import ByteTokenizer

#: where each modality's bundled demo model lives (inside the installed package)
BUNDLED = {"jpeg": ("jpeglm", "assets/model"), "h264": ("avclm", "assets/model")}
COMMAND_OF = {"jpeg": "jpeglm", "h264": "avclm"}


@dataclasses.dataclass
class LoadedModel:
    model: object          #: transformers.LlamaForCausalLM, in eval mode
    tokenizer: ByteTokenizer
    profile: object        #: the codec profile the model was trained on
    path: Path


def bundled_model_dir(modality: str) -> Path | None:
    """The bundled demo model's directory for a modality, or None if not shipped."""
    import importlib

    pkg, sub = BUNDLED[modality]
    root = Path(importlib.import_module(pkg).__file__).parent / sub
    return root if (root / "config.json").is_file() else None


def save_model_dir(model, tokenizer: ByteTokenizer, profile, directory: str | os.PathLike,
                   card: str | None = None) -> Path:
    """Write a complete model directory atomically (built in a temp dir, then renamed)."""
    directory = Path(directory)
    if model.config.vocab_size != tokenizer.vocab_size:
        raise TokenizerError(f"model vocabulary ({model.config.vocab_size}) does not match the "
                             f"tokenizer ({tokenizer.vocab_size})")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        model.config.bos_token_id = tokenizer.bos_id
        model.config.eos_token_id = tokenizer.eos_id
        model.config.pad_token_id = tokenizer.pad_id
        _quiet_transformers()
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.to_hf().save_pretrained(tmp)
        save_profile(profile, tmp)
        if card:
            (tmp / "README.md").write_text(card)
        _normal_permissions(tmp)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _quiet_transformers() -> None:
    """No per-file progress bars from transformers ("Loading weights", "Writing model
    shards"): our CLIs report their own progress, and `--quiet` / `-o -` mean quiet."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _normal_permissions(directory: Path) -> None:
    """mkdtemp makes 0700 and some writers 0600: give the files what ``open`` would."""
    mask = os.umask(0)
    os.umask(mask)
    directory.chmod(0o777 & ~mask)
    for f in directory.iterdir():
        f.chmod(0o666 & ~mask)


def resolve_model_dir(path: str | os.PathLike | None, modality: str) -> Path:
    """``--model`` or, when absent, the bundled model; a clear error when neither exists."""
    if path is not None:
        return Path(path)
    bundled = bundled_model_dir(modality)
    if bundled is None:
        raise ModelError(f"no model given and no bundled {modality} model is installed; "
                         f"pass --model DIR (a directory made by `{COMMAND_OF[modality]} export`)")
    return bundled


def load_model_dir(path: str | os.PathLike, modality: str | None = None, device: str = "cpu",
                   dtype=None) -> LoadedModel:
    """Load a model directory and check that its parts fit together.

    ``modality`` ("jpeg" / "h264"), when given, must match the directory's profile:
    an image model handed to ``avclm`` is an error, not garbage output.
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: model directory not found")
    from .spm_dir import is_spm_dir, load_spm_dir

    if is_spm_dir(path):  # the published JPEG-LM checkpoint's format (SentencePiece)
        return load_spm_dir(path, modality, device, dtype)
    for name in ("config.json", "tokenizer.json", "profile.json"):
        if not (path / name).is_file():
            raise ModelError(f"{path}: not a model directory (missing {name})")
    profile = load_profile(path)
    if modality is not None and profile.modality != modality:
        raise ModelError(f"{path}: this is a {profile.modality} model ({COMMAND_OF[profile.modality]}); "
                         f"{COMMAND_OF[modality]} needs a {modality} model")
    tokenizer = ByteTokenizer.load(path / "tokenizer.json")
    if tokenizer.modality != profile.modality:
        raise TokenizerError(f"{path}: tokenizer is for {tokenizer.modality} but the profile is "
                             f"{profile.modality}")
    _quiet_transformers()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot load model ({e})") from e
    if model.config.vocab_size != tokenizer.vocab_size:
        raise TokenizerError(f"{path}: model vocabulary ({model.config.vocab_size}) does not match "
                             f"the tokenizer ({tokenizer.vocab_size})")
    model.to(device).eval()
    return LoadedModel(model, tokenizer, profile, path)
