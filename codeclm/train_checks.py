"""Checks of a training command line that need neither torch nor Lightning.

``jpeglm train`` / ``avclm train`` run :func:`check_files` before importing Lightning, so
a missing, non-YAML ``--config`` or an empty, truncated or random ``--ckpt_path`` fails
in a fraction of a second with one line, not a parser dump or an unpickling traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError

#: ``--ckpt_path`` values Lightning resolves itself (not file names)
CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


def _option_values(argv: Sequence[str], *names: str) -> list[str]:
    """Every value given to the options ``names`` (``--opt V`` or ``--opt=V``)."""
    found = []
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                found.append(argv[i + 1])
            elif a.startswith(n + "="):
                found.append(a[len(n) + 1:])
    return found


def check_files(argv: Sequence[str]) -> None:
    """``--config`` files must be YAML mappings and a ``--ckpt_path`` file a torch
    checkpoint (a zip archive), checked before anything is built: one-line
    :class:`ConfigError` instead of a parser dump or an unpickling traceback."""
    import zipfile

    import yaml

    for value in _option_values(argv, "--config", "-c"):
        p = Path(value)
        if not p.exists():
            raise ConfigError(f"--config {value}: no such file")
        if not p.is_file():
            raise ConfigError(f"--config {value}: not a regular file")
        try:
            cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"--config {value}: not a YAML file (not text)") from None
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise ConfigError(f"--config {value}: not valid YAML{line}") from None
        except OSError as e:
            raise ConfigError(f"--config {value}: cannot read ({e.strerror or e})") from None
        if not isinstance(cfg, dict):
            raise ConfigError(f"--config {value}: a config is a YAML mapping (key: value), not "
                              f"{type(cfg).__name__}")
    for value in _option_values(argv, "--ckpt_path"):
        if value in CKPT_KEYWORDS or value in ("null", "None") or "://" in value:
            continue
        p = Path(value)
        if not p.exists():
            raise ConfigError(f"--ckpt_path {value}: no such checkpoint")
        if p.is_dir():
            raise ConfigError(f"--ckpt_path {value}: a directory; give the .ckpt file")
        if p.stat().st_size == 0:
            raise ConfigError(f"--ckpt_path {value}: empty checkpoint file")
        if not zipfile.is_zipfile(p):
            raise ConfigError(f"--ckpt_path {value}: not a readable checkpoint (truncated, or not "
                              f"written by torch.save)")
