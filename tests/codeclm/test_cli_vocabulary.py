"""One flag vocabulary across `jpeglm` and `avclm`: --version, verbs described in the
top-level help, verb help that keeps its layout, -q/--quiet (old --no-progress), -n/--num."""

from __future__ import annotations

import argparse

import pytest

import codeclm
from avclm.cli import main as avclm_main
from jpeglm.cli import main as jpeglm_main

TOOLS = {"jpeglm": jpeglm_main, "avclm": avclm_main}


@pytest.mark.parametrize("prog", TOOLS)
def test_version(prog, capsys):
    with pytest.raises(SystemExit) as e:
        TOOLS[prog](["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"{prog} {codeclm.__version__}"


@pytest.mark.parametrize("prog", TOOLS)
def test_top_level_help_describes_every_verb(prog, capsys):
    import importlib

    verbs = importlib.import_module(f"{prog}.cli").VERBS
    with pytest.raises(SystemExit):
        TOOLS[prog](["--help"])
    out = capsys.readouterr().out
    for verb, (_, line) in verbs.items():
        assert any(ln.split()[:1] == [verb] and line.split()[0] in ln
                   for ln in out.splitlines()), (verb, out)


def test_eval_help_keeps_its_usage_lines(capsys):
    with pytest.raises(SystemExit):
        jpeglm_main(["eval", "--help"])
    out = capsys.readouterr().out
    # the docstring's synopsis lines stay lines (RawDescriptionHelpFormatter), not one paragraph
    assert "\n  jpeglm eval complete --model DIR" in out
    assert "\n  jpeglm eval uncond   --model DIR" in out


def _parsed(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("spelling", ["-q", "--quiet", "--no-progress"])
def test_quiet_spellings(spelling):
    from avclm.commands import generate as avc_generate
    from jpeglm.commands import complete, generate

    assert _parsed(generate, ["-n", "1", "-o", "d", spelling]).quiet
    assert _parsed(complete, ["x.png", "-o", "d", spelling]).quiet
    assert _parsed(avc_generate, ["--frames", "1", spelling]).quiet
    from jpeglm.commands import eval as jpeg_eval

    ns = _parsed(jpeg_eval, ["uncond", "--images", "d", "-o", "o", spelling])
    assert ns.no_progress
    from data_tools.commands import images, synth

    assert _parsed(images, ["src", "out", "--profile", "tiny", "--tokenizer", "t.json",
                            spelling]).progress is False
    assert _parsed(synth, ["out", "--kind", "image", "--count", "1", spelling]).progress is False


def test_avclm_generate_num_and_batch_are_one_flag():
    from avclm.commands import generate

    assert _parsed(generate, ["--frames", "1", "-n", "3"]).batch == 3
    assert _parsed(generate, ["--frames", "1", "--num", "2"]).batch == 2
    assert _parsed(generate, ["--frames", "1", "--batch", "4"]).batch == 4  # old spelling


@pytest.mark.parametrize("verb", ["jpeglm.commands.generate", "jpeglm.commands.complete",
                                  "avclm.commands.generate"])
def test_generating_verbs_take_dtype(verb):
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(verb).add_arguments(parser)
    assert any("--dtype" in a.option_strings for a in parser._actions)
