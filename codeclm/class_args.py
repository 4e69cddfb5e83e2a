"""The class-conditioning flags of the generating verbs: ``--class``, ``--cfg-scale``,
``--list-classes``. Torch-free: a bad class or scale fails before a model is loaded.

``--list-classes`` prints the model's classes (one a line; nothing for an unconditional
model) and exits 0; it may be given without the verb's required arguments
(``jpeglm generate --list-classes --model DIR``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .errors import ConfigError


class _ListClasses(argparse.Action):
    """``--list-classes``: set the flag and waive the verb's other required arguments."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        for action in parser._actions:
            action.required = False


def add_class_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("class conditioning (models trained with --labels)")
    g.add_argument("--class", dest="class_name", metavar="NAME", default=None,
                   help="generate this class (see --list-classes)")
    g.add_argument("--cfg-scale", type=float, default=None, metavar="S",
                   help="classifier-free guidance scale with --class: 1 = plain conditional, "
                        "0 = unconditional, >1 = stronger (default: 3)")
    g.add_argument("--list-classes", action=_ListClasses,
                   help="print the model's classes and exit")


#: the guidance scale of ``--class NAME`` without ``--cfg-scale``
DEFAULT_CFG_SCALE = 3.0


def check_scale(scale: float) -> float:
    """``scale`` if it is a usable guidance scale (finite, >= 0)."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 0):
        raise ConfigError(f"--cfg-scale must be a finite number >= 0, got {scale}")
    return float(scale)


def check_class_args(args: argparse.Namespace) -> None:
    """Range checks before any model is read."""
    s = args.cfg_scale
    if s is not None:
        check_scale(s)
    if s is not None and args.class_name is None:
        raise ConfigError("--cfg-scale needs --class NAME (guidance toward a class)")


def list_classes(args: argparse.Namespace, modality: str) -> bool:
    """With ``--list-classes``: print the classes of ``--model`` (checked first) and return
    True (the verb then exits 0); else False."""
    from .labels import class_names
    from .model_dir import check_model_dir, resolve_model_dir
    from .tokenizer import ByteTokenizer

    if not args.list_classes:
        return False
    path = resolve_model_dir(args.model, modality)
    check_model_dir(path, modality)
    for name in class_names(ByteTokenizer.load(Path(path) / "tokenizer.json")):
        print(name)
    return True


def check_class_of_model(args: argparse.Namespace, model_dir: str | Path) -> None:
    """``--class`` must name a class of the model in ``model_dir`` (one-line errors)."""
    from .labels import class_id
    from .tokenizer import ByteTokenizer

    if args.class_name is not None:
        class_id(ByteTokenizer.load(Path(model_dir) / "tokenizer.json"), args.class_name)
