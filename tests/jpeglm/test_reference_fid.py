"""jpeglm.reference_fid: the FID floor of real images through the canonical codec against
held-out images, on real photo crops and the weight-free pixels extractor."""

from __future__ import annotations

import json

import pytest

from jpeglm.reference_fid import main, reference_fid


@pytest.fixture(scope="module")
def crops(tmp_path_factory, tiny):
    from data_tools.synth import synth

    root = tmp_path_factory.mktemp("fidref")
    held = synth(root / "heldout", "image", tiny, 12, seed=1, sources=("photo-crops",),
                 split="heldout", workers=1)
    train = synth(root / "train", "image", tiny, 24, seed=2, sources=("photo-crops",),
                  workers=1)
    return held, train


def test_the_images_themselves_score_near_zero_other_photos_do_not(crops, tiny):
    """Through the codec, the held-out images score only the codec's round-trip loss;
    crops of other photos score more (the floor a model of them reaches)."""
    held, train = crops
    itself = reference_fid(held, held, tiny)
    others = reference_fid(held, train[:len(held)], tiny)
    assert 0 <= itself < others
    assert itself < 0.2 * others


def test_cli_reports_json_and_refuses_bad_inputs_in_one_line(crops, tmp_path, capsys):
    held, train = crops
    out = tmp_path / "floor.json"
    argv = ["--images", str(held[0].parent), "--reference", str(train[0].parent)]
    assert main(argv + ["-n", "6", "-o", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["heldout"] == res["reference"] == 6 and res["fid"] > 0
    assert json.loads(capsys.readouterr().out) == res
    # the reference images are a seeded draw: the same seed, the same number
    assert main(argv + ["-n", "6", "-o", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["fid"] == res["fid"]
    capsys.readouterr()
    before = out.read_bytes()
    for bad, why in [(["-n", "6", "-o", str(out)], "already exists"),
                     (["-n", "1"], "-n must be >= 2")]:
        assert main(argv + bad) == 1
        err = capsys.readouterr().err
        assert why in err and len(err.strip().splitlines()) == 1, err
    assert out.read_bytes() == before
    same = ["--images", str(held[0].parent), "--reference", str(held[0].parent)]
    assert main(same) == 1 and "shares images" in capsys.readouterr().err
    fewer = ["--images", str(train[0].parent), "--reference", str(held[0].parent)]  # 24 vs 12
    assert main(fewer) == 1 and "as many reference ones" in capsys.readouterr().err
