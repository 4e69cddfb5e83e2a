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
import fnmatch
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError, OutputError, TokenizerError
from .labels import save_labels
from .modality import command_of, record, wrong_modality
from .profile import load_profile, save_profile
from .tokenizer import ByteTokenizer
from .versions import warn_if_different

if TYPE_CHECKING:  # torch loads only with the weights, after every cheap check
    from .llama_weights import LlamaWeights

#: the names a model directory's files may have: only a directory holding nothing else is
#: ever replaced (``export --overwrite``); anything else in it is the user's
MODEL_DIR_FILES = ("config.json", "generation_config.json", "model.safetensors",
                   "model.safetensors.index.json", "model-*-of-*.safetensors", "tokenizer.json",
                   "tokenizer_config.json", "special_tokens_map.json", "profile.json",
                   "README.md", "chat_template.jinja", "labels.json")


@dataclasses.dataclass
class LoadedModel:
    """A model directory, loaded. ``weights`` is what generation runs on (no
    transformers import); ``model`` builds the ``transformers.LlamaForCausalLM`` on first
    use, from the same tensors (for evaluation forwards and compatibility checks)."""

    weights: LlamaWeights  #: the checked tensors, on the loading device and dtype
    tokenizer: ByteTokenizer
    profile: object        #: the codec profile the model was trained on
    path: Path
    _hf: object = dataclasses.field(default=None, repr=False)

    @property
    def model(self):
        """``transformers.LlamaForCausalLM`` in eval mode, sharing ``weights``' tensors."""
        if self._hf is None:
            self._hf = hf_model_from_weights(self.path, self.weights)
        return self._hf


def hf_model_from_weights(path: Path, weights: LlamaWeights):
    """A ``LlamaForCausalLM`` with the config of ``path`` holding ``weights``' tensors
    (assigned, not copied: built on the meta device, then filled)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    _quiet_transformers()
    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=weights["model.norm.weight"].dtype)
    state = dict(weights.tensors)
    if weights.config.tie_word_embeddings:
        state["lm_head.weight"] = weights.lm_head
    model.load_state_dict(state, strict=True, assign=True)
    if weights.config.tie_word_embeddings:
        model.tie_weights()
    # the RoPE buffers are not in the state dict (still on meta): build that module anew
    rotary = model.model.rotary_emb
    model.model.rotary_emb = type(rotary)(config=model.config).to(weights.lm_head.device)
    return model.eval()


def bundled_model_dir(modality: str) -> Path | None:
    """The bundled demo model's directory for a modality (its record's ``bundled_model``),
    or None if not shipped."""
    root = record(modality).bundled_dir()
    return root if (root / "config.json").is_file() else None


def check_model_target(directory: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse a model directory output that would lose anything: an existing file, a
    non-empty directory (unless ``overwrite``), or one holding files that are not a model
    directory's (never replaced). Creates nothing; raises :class:`OutputError`."""
    from .outputs import check_dir_path

    d = Path(directory)
    if not check_dir_path(d):
        return
    entries = sorted(os.listdir(d))
    if not entries:
        return
    if not overwrite:
        raise OutputError(f"{d}: already exists and is not empty (pass --overwrite to replace "
                          f"the model directory)")
    foreign = [e for e in entries if not (d / e).is_file() or (d / e).is_symlink()
               or not any(fnmatch.fnmatchcase(e, pat) for pat in MODEL_DIR_FILES)]
    if foreign:
        raise OutputError(f"{d}: holds {len(foreign)} file(s) that are not part of a model "
                          f"directory (e.g. {foreign[0]}); refusing to replace it")


def save_model_dir(model, tokenizer: ByteTokenizer, profile, directory: str | os.PathLike,
                   card: str | None = None, overwrite: bool = False,
                   versions: dict | None = None) -> Path:
    """Write a complete model directory atomically (built in a temp dir, then renamed).
    ``versions``: the codec libraries that made the training bytes, recorded in
    ``profile.json`` (:mod:`codeclm.versions`; from the checkpoint on export).

    An existing directory is replaced only with ``overwrite`` and only if it holds
    nothing but model directory files (:func:`check_model_target`)."""
    directory = Path(directory)
    check_model_target(directory, overwrite)
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
        save_profile(profile, tmp, versions=versions)
        save_labels(tokenizer, tmp)  # labels.json, for a class-conditional model only
        if card:
            (tmp / "README.md").write_text(card)
        _normal_permissions(tmp)
        _install(tmp, directory, overwrite)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            from .io import describe_os_error

            raise OutputError(f"{directory}: cannot write ({describe_os_error(e)})") from e
        if type(e).__name__ == "SafetensorError":  # safetensors' own wrapper of an IO error
            full = any(k in str(e) for k in ("StorageFull", "os error 28", "os error 27",
                                             "code: 28", "code: 27"))
            raise OutputError(f"{directory}: cannot write the weights "
                              f"({'disk full' if full else ' '.join(str(e).split())[:200]})") from e
        raise
    return directory


def _install(tmp: Path, directory: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` onto ``directory``; an old model directory there is moved
    aside first (checked again: only model files) and removed after."""
    if not directory.exists():
        os.replace(tmp, directory)
        return
    check_model_target(directory, overwrite)
    if not any(directory.iterdir()):
        os.replace(tmp, directory)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
    os.replace(directory, old / "model")
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def _quiet_transformers() -> None:
    """No per-file progress bars from transformers ("Loading weights", "Writing model
    shards"): our CLIs report their own progress, and `--quiet` / `-o -` mean quiet."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # no multi-line load reports on stderr


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
                         f"pass --model DIR (a directory made by `{command_of(modality)} export`)")
    return bundled


def check_model_dir(path: str | os.PathLike, modality: str | None = None):
    """Every check of a model directory that needs no torch: its files, config.json (JSON),
    profile and tokenizer (and their modality), and the safetensors headers. Returns
    (profile, tokenizer). Commands call it before loading torch, so a bad ``--model``
    fails in a fraction of a second; :func:`load_model_dir` calls it too."""
    import json

    from .weights import stored_tensors

    path = Path(path)
    cli = {"jpeg": "jpeglm", "h264": "avclm"}.get(modality or "", "jpeglm|avclm")
    if not path.is_dir():
        if path.is_file() and path.suffix == ".ckpt":  # a training checkpoint: say how
            raise ModelError(f"{path}: a training checkpoint, not a model directory: make "
                             f"one with `{cli} export {path} -o DIR`")
        what = "not a directory" if path.exists() else "model directory not found"
        raise ModelError(f"{path}: {what}")
    last = path / "checkpoints" / "last.ckpt"
    if not (path / "config.json").exists() and last.is_file():  # a training run's folder
        raise ModelError(f"{path}: a training run's folder, not a model directory: make one "
                         f"with `{cli} export {last} -o DIR`")
    from .spm_dir import check_spm_dir, is_spm_dir

    if is_spm_dir(path):  # the published JPEG-LM checkpoint's format (SentencePiece)
        return check_spm_dir(path, modality)
    for name in ("config.json", "tokenizer.json", "profile.json"):
        if not (path / name).is_file():
            raise ModelError(f"{path}: not a model directory (missing {name})")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"{path / 'config.json'}: not a readable JSON config ({e})") from e
    if not isinstance(config, dict):
        raise ModelError(f"{path / 'config.json'}: not a JSON object")
    profile = load_profile(path)
    if modality is not None and profile.modality != modality:
        raise ModelError(wrong_modality(path, profile.modality, modality))
    tokenizer = ByteTokenizer.load(path / "tokenizer.json")
    if tokenizer.modality != profile.modality:
        raise TokenizerError(f"{path}: tokenizer is for {tokenizer.modality} but the profile is "
                             f"{profile.modality}")
    if config.get("vocab_size") != tokenizer.vocab_size:
        raise TokenizerError(f"{path}: model vocabulary ({config.get('vocab_size')}) does not "
                             f"match the tokenizer ({tokenizer.vocab_size})")
    stored_tensors(path)
    return profile, tokenizer


def load_model_dir(path: str | os.PathLike, modality: str | None = None, device: str = "cpu",
                   dtype=None) -> LoadedModel:
    """Load a model directory and check that its parts fit together.

    ``modality`` ("jpeg" / "h264"), when given, must match the directory's profile:
    an image model handed to ``avclm`` is an error, not garbage output. Loading is strict
    and needs no ``transformers`` (:func:`codeclm.llama_weights.load_weights`):
    safetensors only, and every weight the config needs must be stored with its shape,
    nothing more; anything else is a one-line :class:`ModelError`. ``dtype`` None keeps
    float32. SentencePiece directories (the published JPEG-LM checkpoint) load through
    :mod:`codeclm.spm_dir`.
    """
    import torch

    from .llama_weights import load_weights
    from .spm_dir import check_spm_dir, is_spm_dir

    path = Path(path)
    if path.is_dir() and is_spm_dir(path):  # the published JPEG-LM checkpoint's format
        profile, tokenizer = check_spm_dir(path, modality)
        weights = load_weights(path, device=device, dtype=dtype or torch.float32)
        return LoadedModel(weights, tokenizer, profile, path)
    profile, tokenizer = check_model_dir(path, modality)
    warn_if_different(path, profile.modality)
    weights = load_weights(path, device=device, dtype=dtype or torch.float32)
    if weights.config.vocab_size != tokenizer.vocab_size:
        raise TokenizerError(f"{path}: model vocabulary ({weights.config.vocab_size}) does not "
                             f"match the tokenizer ({tokenizer.vocab_size})")
    return LoadedModel(weights, tokenizer, profile, path)
