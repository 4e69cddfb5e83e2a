"""Training checkpoint -> model directory (``jpeglm export`` / ``avclm export``).

A Lightning checkpoint written by :class:`codeclm.lightning_module.CodecLM` carries the
tokenizer, the codec profile and the Llama config (``checkpoint["codeclm"]``), so the
checkpoint alone is enough::

    jpeglm export runs/tiny/checkpoints/last.ckpt -o models/jpeglm-tiny

writes ``config.json model.safetensors tokenizer.json profile.json ...`` (see
:mod:`codeclm.model_dir`), loadable with ``AutoModelForCausalLM.from_pretrained``.
The model is assembled on the meta device and the checkpoint tensors are assigned to it,
so exporting a 7B checkpoint needs no second copy of the weights in memory.

An FSDP run with ``state_dict_type="sharded"`` saves a checkpoint *directory*; consolidate
it first with ``python -m lightning.pytorch.utilities.consolidate_checkpoint DIR``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .errors import ModelError
from .modality import command_of, find

DTYPES = ("float32", "bfloat16", "float16")


def check_checkpoint_file(path: str | os.PathLike) -> Path:
    """Cheap checks (no torch): a regular, non-empty file in torch's zip format."""
    import zipfile

    p = Path(path)
    if p.is_dir():
        raise ModelError(f"{p}: a sharded checkpoint directory; consolidate it first with "
                         f"`python -m lightning.pytorch.utilities.consolidate_checkpoint {p}`")
    if not p.is_file():
        raise ModelError(f"{p}: no such checkpoint")
    if p.stat().st_size == 0:
        raise ModelError(f"{p}: empty checkpoint file")
    if not zipfile.is_zipfile(p):
        raise ModelError(f"{p}: not a readable checkpoint (truncated, or not written by "
                         "torch.save)")
    return p


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a training checkpoint (tensors and plain data only: ``weights_only=True``)."""
    import pickle

    import torch

    p = check_checkpoint_file(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise ModelError(f"{p}: not a readable checkpoint ({lines[0][:200]})") from e
    except Exception as e:  # zipfile / pickle internals raise assorted types on random bytes
        raise ModelError(f"{p}: not a readable checkpoint ({type(e).__name__})") from e
    if not isinstance(ckpt, dict):
        raise ModelError(f"{p}: not a training checkpoint (holds a {type(ckpt).__name__})")
    return ckpt


def export_checkpoint(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike,
                      modality: str | None = None, dtype: str = "float32",
                      overwrite: bool = False) -> Path:
    """Write the model directory for a training checkpoint; returns its path.

    ``modality`` ("jpeg"/"h264"), when given, must be the checkpoint's. An existing
    ``out_dir`` is replaced only with ``overwrite`` and only if it holds nothing but a
    model directory's files (:func:`codeclm.model_dir.check_model_target`).
    """
    from .model_dir import check_model_target, save_model_dir

    if dtype not in DTYPES:
        raise ModelError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    check_model_target(out_dir, overwrite)
    check_checkpoint_file(ckpt_path)

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, LlamaConfig

    from .lightning_module import CKPT_KEY
    from .profile import profile_from_dict
    from .tokenizer import ByteTokenizer

    ckpt = load_checkpoint(ckpt_path)
    info = ckpt.get(CKPT_KEY)
    if not isinstance(info, dict) or not isinstance(ckpt.get("state_dict"), dict) or \
            not all(k in info for k in ("modality", "tokenizer", "llama_config")):
        raise ModelError(f"{ckpt_path}: not a checkpoint of `jpeglm train` / `avclm train`")
    if find(info["modality"]) is None:
        raise ModelError(f"{ckpt_path}: unknown modality {info['modality']!r} in the checkpoint")
    if modality is not None and info["modality"] != modality:
        raise ModelError(f"{ckpt_path}: this is a {info['modality']} checkpoint "
                         f"(export it with `{command_of(info['modality'])} export`)")
    try:
        backend = Tokenizer.from_str(info["tokenizer"])
    except Exception as e:  # tokenizers raises plain Exception subclasses
        raise ModelError(f"{ckpt_path}: stored tokenizer is unreadable ({e})") from e
    tokenizer = ByteTokenizer(backend, info["modality"])
    if info.get("profile") is None:
        raise ModelError(f"{ckpt_path}: checkpoint has no codec profile")
    profile = profile_from_dict(info["profile"])

    try:
        config = LlamaConfig.from_dict(info["llama_config"])
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    except Exception as e:  # transformers raises many types for a bad config
        raise ModelError(f"{ckpt_path}: stored model config is unusable ({e})") from e
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items()
             if isinstance(k, str) and k.startswith(prefix)}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ModelError(f"{ckpt_path}: weights do not fit the stored config "
                         f"({str(e).splitlines()[0]})") from e
    model = model.to(getattr(torch, dtype))
    card = (f"# {command_of(info['modality'])} model\n\nExported from `{Path(ckpt_path).name}` "
            f"(global step {ckpt.get('global_step')}, epoch {ckpt.get('epoch')}); "
            f"codec profile `{profile.name}`, vocabulary {tokenizer.vocab_size}, "
            f"context {config.max_position_embeddings} tokens.\n")
    return save_model_dir(model, tokenizer, profile, out_dir, card=card, overwrite=overwrite,
                          versions=info.get("versions"))


# --- the CLI verb, shared by jpeglm/commands/export.py and avclm/commands/export.py ---------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint",
                        help="a .ckpt written by `train fit` (e.g. DIR/checkpoints/last.ckpt)")
    parser.add_argument("-o", "--output", required=True,
                        help="model directory to write (must be new or empty)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing model directory (only one that holds nothing "
                             "but model files)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="weight dtype of the exported model (default: float32)")


def run(args: argparse.Namespace, modality: str) -> int:
    path = export_checkpoint(args.checkpoint, args.output, modality=modality, dtype=args.dtype,
                             overwrite=args.overwrite)
    print(path)
    return 0
