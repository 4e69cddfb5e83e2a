"""The plumbing every CLI shares: lazy verb dispatch and one-line errors.

Each verb lives in its own module with two functions::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int | None: ...

and an optional module docstring (its first line is the verb's help). Modules are
imported only when their verb runs, so ``jpeglm --help`` does not import torch.
A verb whose module defines ``RAW_ARGV = True`` receives the remaining argv
untouched as ``args.argv`` (used by ``train``, which hands it to LightningCLI).

Exit status: 0 success; 1 an error (one line on stderr, ``prog: error: ...``, never a
traceback); 2 a usage error found by argparse (unknown flag, missing or non-numeric
argument; one line too); 130 interrupted (SIGINT, Ctrl-C); 143
terminated (SIGTERM, what ``timeout`` and schedulers send). Interrupted or terminated,
a command removes its temporary files and leaves no partial output.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from .errors import CodecLMError

#: set to 1 to get Python's traceback for an unexpected exception (a bug) instead of one line
TRACEBACK_ENV = "CODECLM_TRACEBACK"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every cleanup (temp files, locks) runs."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with the toolkit's error style: ``prog: error: msg`` on one line, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: object) -> str:
    """``text`` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(str(text).split())


def _on_sigterm(signum, frame):
    raise Terminated()


def run_cli(prog: str, description: str, verbs: Mapping[str, str | tuple[str, str]],
            argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run a verb; turn library errors into ``prog: error: msg`` + exit 1.

    ``verbs`` maps a verb to its module, or to ``(module, one-line help)`` so that the
    top-level ``--help`` describes each verb without importing it."""
    from . import __version__

    argv = list(sys.argv[1:] if argv is None else argv)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)
    modules = {name: (v if isinstance(v, str) else v[0]) for name, v in verbs.items()}
    if argv and argv[0] in modules:
        module = importlib.import_module(modules[argv[0]])
        if getattr(module, "RAW_ARGV", False):
            return _guarded(prog, module.run, argparse.Namespace(argv=argv[1:]))
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", title="verbs")
    sub.required = True
    for name, target in verbs.items():
        line = None if isinstance(target, str) else target[1]
        if argv and argv[0] == name:
            module = importlib.import_module(modules[name])
            doc = (module.__doc__ or "").strip()
            p = sub.add_parser(name, help=line or (doc.splitlines()[0] if doc else None),
                               description=doc,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
        else:  # help text only; the module is not imported
            sub.add_parser(name, help=line)
    args = parser.parse_args(argv)
    return _guarded(prog, args._run, args)


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` (no progress bars or summary); ``--no-progress`` is a hidden alias."""
    parser.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                        help="no progress bars or summary")


def _say(line: str) -> None:
    """``line`` and its newline in one write: processes sharing one stderr (the ranks of a
    multi-process training run, unbuffered under ``python -u`` / ``PYTHONUNBUFFERED``)
    cannot interleave inside it, as ``print``'s separate write of the newline let them."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _guarded(prog: str, fn, args) -> int:
    try:
        rc = fn(args)
    except CodecLMError as e:
        _say(f"{prog}: error: {one_line(e)}")
        return 1
    except Terminated:
        _say(f"{prog}: terminated")
        return 143
    except KeyboardInterrupt:
        _say(f"{prog}: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `avclm generate -o - | head`
        return 0
    except OSError as e:  # an unreadable / unwritable place no library check caught
        from .io import describe_os_error

        where = f"{e.filename}: " if e.filename else ""
        _say(f"{prog}: error: {where}{one_line(describe_os_error(e))}")
        return 1
    except Exception as e:
        if os.environ.get(TRACEBACK_ENV):
            raise
        _say(f"{prog}: error: unexpected {type(e).__name__}: {one_line(e)[:300]} "
             f"(a bug; {TRACEBACK_ENV}=1 shows the traceback)")
        return 1
    return int(rc or 0)
