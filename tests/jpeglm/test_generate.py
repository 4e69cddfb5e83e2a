"""`jpeglm generate` / `jpeglm complete` and jpeglm.generate on a tiny random model.

With the scan grammar every sampled image is a complete, valid JPEG even from a random
model; without it, damaged streams are repaired to full size. Images are read back
with Pillow and checked with the strict codec.
"""

from __future__ import annotations

import re

import pytest
from PIL import Image

from codeclm.generation.sampling_config import SamplingConfig
from jpeglm import codec
from jpeglm.cli import main
from jpeglm.generate import DoneEvent, ImageEvent, McuEvent, generate_images, repair


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, encoded_tiny, tiny, random_model_dir):
    return random_model_dir(list(encoded_tiny.values()), 320, "jpeg", tiny, 2048,
                            tmp_path_factory.mktemp("m") / "jpeg")


@pytest.fixture(scope="module")
def h264_model_dir(tmp_path_factory, random_model_dir):
    from avclm.profile import TINY
    from codeclm.tokenizer import MIN_VOCAB

    return random_model_dir([b"\x00\x00\x01" + bytes(range(256))], MIN_VOCAB, "h264", TINY, 256,
                            tmp_path_factory.mktemp("m") / "avc")


def test_grammar_images_are_valid_and_stream_mcu_by_mcu(model_dir, tiny):
    events = list(generate_images(model_dir, 2, batch=2, config=SamplingConfig(seed=0)))
    mcus = [e for e in events if isinstance(e, McuEvent)]
    images = [e for e in events if isinstance(e, ImageEvent)]
    assert isinstance(events[-1], DoneEvent) and events[-1].stats["valid"] == 2
    for img in images:
        assert img.valid and img.n_intact == tiny.mcu_count
        codec.check(img.data, tiny)
        mine = [m for m in mcus if m.sample == img.sample]
        assert [m.index for m in mine] == list(range(tiny.mcu_count))
        assert codec.header(tiny) + b"".join(m.data for m in mine) == img.data
        assert img.image.size == tiny.size
    assert images[0].data != images[1].data


def test_cli_generate_writes_jpegs_grid_and_previews(model_dir, tmp_path, tiny):
    from codeclm.outputs import MARKER, read_marker

    out = tmp_path / "out"
    assert main(["generate", "-n", "3", "-o", str(out), "--model", str(model_dir), "--batch", "2",
                 "--seed", "1", "--preview", "--preview-every", "4", "--quiet"]) == 0
    for i in range(3):
        with Image.open(out / f"{i}.jpg") as im:
            assert im.size == tiny.size and im.format == "JPEG"
            im.load()
        codec.check((out / f"{i}.jpg").read_bytes(), tiny)
        with Image.open(out / f"preview_{i}.png") as im:
            assert im.size == tiny.size
    with Image.open(out / "grid.png") as g:
        assert g.size == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)
    # no temporary files left; the run's marker names every file it may write
    assert [p.name for p in out.glob(".*")] == [MARKER]
    assert {f"{i}.jpg" for i in range(3)} | {"grid.png"} <= set(read_marker(out)["files"])


def test_cli_complete_keeps_the_prompt_mcus(model_dir, tmp_path, tiny, samples):
    out = tmp_path / "c"
    paths = [str(p) for p in samples[:2]]
    assert (
        main(
            [
                "complete",
                *paths,
                "--prefix-ratio",
                "0.5",
                "-o",
                str(out),
                "--model",
                str(model_dir),
                "--seed",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    for i, p in enumerate(samples[:2]):
        done = codec.to_modeled((out / f"{i}_{p.stem}.jpg").read_bytes(), tiny)
        codec.check(done, tiny)
        want = codec.split_mcus(codec.encode_image(p, tiny))[1][:tiny.mcu_count // 2]
        assert codec.split_mcus(done)[1][:len(want)] == want
        assert (out / f"{i}_{p.stem}_prompt.png").is_file()
    with Image.open(out / "grid.png") as g:
        assert g.size == (3 * 64 + 4 * 2, 2 * 64 + 3 * 2)


def test_no_grammar_output_is_repaired_to_full_size(model_dir, tmp_path, tiny):
    out = tmp_path / "raw"
    assert main(["generate", "-n", "1", "-o", str(out), "--model", str(model_dir), "--no-grammar",
                 "--max-mcu-tokens", "20", "--seed", "3", "--quiet"]) == 0
    data = (out / "0.jpg").read_bytes()
    codec.check(data, tiny)
    with Image.open(out / "0.jpg") as im:
        assert im.size == tiny.size


def test_repair_keeps_intact_mcus(encoded_tiny, tiny):
    data = next(iter(encoded_tiny.values()))
    hdr, units, _ = codec.split_mcus(data)
    cut = hdr + b"".join(units[:6]) + units[6][:3]
    fixed, n = repair(cut, tiny)
    codec.check(fixed, tiny)
    assert n == 6 and codec.split_mcus(fixed)[1][:6] == units[:6]
    assert repair(data, tiny) == (data, tiny.mcu_count)


def test_cli_errors(model_dir, h264_model_dir, tmp_path, capsys, samples):
    from codeclm.model_dir import bundled_model_dir

    if bundled_model_dir("jpeg") is None:
        assert main(["generate", "-n", "1", "-o", str(tmp_path / "x")]) == 1
        assert "no model given" in capsys.readouterr().err
    assert (
        main(["generate", "-n", "1", "-o", str(tmp_path / "x"), "--model", str(h264_model_dir)])
        == 1
    )
    err = capsys.readouterr().err
    assert "h264 model" in err and err.count("\n") == 1
    assert main(["complete", str(samples[0]), "--prefix-ratio", "1.0", "-o", str(tmp_path / "y"),
                 "--model", str(model_dir)]) == 1
    assert "prefix-ratio" in capsys.readouterr().err


def test_cli_names_the_outputs_not_valid_as_sampled(model_dir, tmp_path, capsys):
    """--max-tokens 5 ends every image before its last MCU: the summary says none is
    valid as sampled, names each file and says why."""
    out = tmp_path / "out"
    assert main(["generate", "-n", "2", "-o", str(out), "--model", str(model_dir),
                 "--seed", "1", "--max-tokens", "5"]) == 0
    err = capsys.readouterr().err
    assert "(0 valid as sampled" in err
    # every draw was made under the grammar, filters-first (2 images x 5 tokens, some of
    # them forced where an MCU was finished early)
    got = re.search(r" (\d+) tokens, \d+ tok/s, grammar changed \d+ of (\d+) draws"
                    r"(?: \(\d+ MCUs? finished early\))?, seed 1\)", err)
    assert got and got[1] == got[2] and int(got[2]) <= 10, err
    assert "not valid as sampled: 0.jpg, 1.jpg." in err and "ran out of tokens" in err


def test_mcus_the_model_would_end_early_are_finished_plainly(capsys, tmp_path):
    """The bundled image model often draws a restart marker inside an MCU (seed 2: 16
    images, 32 MCUs). By default the grammar then finishes the MCU plainly (forced
    single bytes, counted as ``finished``); with ``finish_early=False``
    (``--no-finish-early``) it draws the model's next allowed token instead, and the
    images take more tokens. Every image is valid as sampled either way."""
    from codeclm.model_dir import bundled_model_dir
    from jpeglm.generate import DoneEvent

    if bundled_model_dir("jpeg") is None:
        pytest.skip("no bundled image model")
    stats = {}
    for finish in (True, False):
        done = [e for e in generate_images(None, 4, config=SamplingConfig(seed=2),
                                           finish_early=finish) if isinstance(e, DoneEvent)]
        stats[finish] = done[0].stats
        assert stats[finish]["valid"] == 4
    assert 0 < stats[True]["finished"] <= stats[True]["finish_tokens"]
    assert stats[False]["finished"] == 0
    assert stats[True]["tokens_sampled"] < stats[False]["tokens_sampled"]
    for flag, said in (([], True), (["--no-finish-early"], False)):
        assert main(["generate", "-n", "4", "--seed", "2", "-o", str(tmp_path / str(said)),
                     *flag]) == 0
        assert ("MCUs finished early)" in capsys.readouterr().err) is said
