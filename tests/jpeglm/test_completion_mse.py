"""jpeglm.completion_mse: completion vs mean-colour fill on real images, a real (random) model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jpeglm import codec
from jpeglm.completion_mse import completion_report, generated_mask, main, masked_mse, mean_fill


def test_mask_at_half_is_the_bottom_rows_of_mcus(tiny):
    m = generated_mask(tiny, 0.5)
    assert m.shape == (tiny.height, tiny.width)
    assert not m[: tiny.height // 2].any() and m[tiny.height // 2:].all()
    assert generated_mask(tiny, 0.25).sum() == 3 * tiny.width * tiny.height // 4
    # a ratio that is not whole rows: MCUs in raster order
    k = tiny.mcus_per_row + 1
    m = generated_mask(tiny, k / tiny.mcu_count)
    assert not m[: tiny.mcu_height].any()
    assert (
        not m[tiny.mcu_height, : tiny.mcu_width].any()
        and m[tiny.mcu_height, tiny.mcu_width :].all()
    )


def test_mean_fill_paints_the_prompt_mean():
    img = np.zeros((4, 2, 3), np.uint8)
    img[:2] = (10, 20, 30)
    img[2:] = (14, 20, 27)
    mask = np.zeros((4, 2), bool)
    mask[2:] = True
    filled = mean_fill(img, mask)
    assert np.array_equal(filled[2:], np.broadcast_to([10, 20, 30], (2, 2, 3)))
    assert masked_mse(filled, img, mask) == pytest.approx((16 + 0 + 9) / 3)
    assert masked_mse(img, img, mask) == 0


@pytest.fixture(scope="module")
def heldout_and_model(tmp_path_factory, tiny, random_model_dir):
    from data_tools.synth import synth

    root = tmp_path_factory.mktemp("complete")
    paths = synth(root / "heldout", "image", tiny, 3, seed=1, sources=("photo-crops",),
                  split="heldout", workers=1)
    samples = [codec.encode_image(p, tiny) for p in paths]
    model = random_model_dir(samples, 300, "jpeg", tiny, 1024, root / "model")
    return paths, model


def test_report_on_real_crops_and_a_real_model(heldout_and_model, tiny):
    paths, model = heldout_and_model
    res = completion_report(model, paths, 0.5, seed=3)
    assert res["images"] == 3 and res["ratio"] == 0.5
    mask = generated_mask(tiny, 0.5)
    want = []
    for p in paths:
        ref = np.asarray(codec.decode(codec.encode_image(p, tiny), tiny).convert("RGB"))
        want.append(masked_mse(mean_fill(ref, mask), ref, mask))
    assert res["mse_mean_fill"] == pytest.approx(np.mean(want))
    assert res["mse_model"] > 0  # an untrained model does not guess the bottom half
    assert completion_report(model, paths, 0.5, seed=3) == res  # seeded: repeatable


def test_cli_writes_json_and_errors_in_one_line(heldout_and_model, tmp_path, capsys):
    paths, model = heldout_and_model
    out = tmp_path / "r.json"
    assert main(["--images", str(paths[0].parent), "--model", str(model), "-n", "2",
                 "-o", str(out)]) == 0
    (res,) = json.loads(out.read_text())
    assert res["images"] == 2 and res["model"] == str(model)
    capsys.readouterr()
    before = out.read_bytes()  # an existing -o is refused (before any model runs), kept
    assert main(["--images", str(paths[0].parent), "--model", str(model), "-n", "1",
                 "-o", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["--images", str(paths[0].parent), "--model", str(model), "-n", "1",
                 "-o", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())[0]["images"] == 1
    capsys.readouterr()
    assert main(["--images", str(tmp_path / "empty"), "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m jpeglm.completion_mse: error:")
    assert len(err.strip().splitlines()) == 1
