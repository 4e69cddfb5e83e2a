"""jpeglm.completion_mse: completion vs mean-colour fill on real images, a real (random) model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jpeglm import codec
from jpeglm.completion_mse import (
    RETRIEVAL_K,
    completion_report,
    generated_mask,
    main,
    masked_mse,
    mean_fill,
    pool_baselines,
)


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


def test_pool_baselines_retrieve_by_the_prompt_part():
    """The retrieval sample is the pool image nearest on the prompt part (whatever its
    missing part), the retrieval mean averages the nearest ones, the random sample is
    some pool image; exact values on hand-made images."""
    mask = np.zeros((4, 2), bool)
    mask[2:] = True
    truth = np.full((4, 2, 3), 100, np.uint8)
    near = truth.copy()
    near[2:] += 3  # same prompt part, missing part off by 3: MSE 9
    far = np.zeros((4, 2, 3), np.uint8)  # far prompt part, missing part off by 100
    res = pool_baselines([truth], [far, near], mask, seed=0)
    assert res["pool"] == 2 and res["mse_retrieval_sample"] == pytest.approx(9.0)
    assert min(2, RETRIEVAL_K) == 2  # both are averaged: (103 + 0) / 2 = 51.5 vs 100
    assert res["mse_retrieval_mean"] == pytest.approx(48.5 ** 2)
    assert res["mse_random_sample"] in (pytest.approx(9.0), pytest.approx(100.0 ** 2))
    # chunked search: the same nearest one among many far ones
    many = [far] * 2500 + [near] + [far] * 100
    assert pool_baselines([truth], many, mask)["mse_retrieval_sample"] == pytest.approx(9.0)


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
    assert "mse_retrieval_sample" not in res
    assert res["finish_early"] is True
    off = completion_report(model, paths, 0.5, seed=3, finish_early=False)
    assert off["finish_early"] is False and off["mse_mean_fill"] == res["mse_mean_fill"]


def test_several_samples_add_the_mean_of_samples(heldout_and_model, tiny):
    """``samples=3``: the first completion of each image is the single-sample run's (same
    ``mse_model``); the per-sample MSEs average to ``mse_model_samples``, and the MSE of the
    pixel mean of the three, recomputed here from seeded runs of one sample each, is at
    most that (the squared error is convex). Batched sampling draws the same images."""
    paths, model = heldout_and_model
    single = completion_report(model, paths, 0.5, seed=3)
    res = completion_report(model, paths, 0.5, seed=3, samples=3, batch=4)
    assert res["samples"] == 3 and res["mse_model"] == single["mse_model"]
    assert res["mse_mean_fill"] == single["mse_mean_fill"]
    assert "samples" not in single and "mse_model_mean_of_samples" not in single
    from codeclm.generation.sampling_config import SamplingConfig
    from jpeglm.generate import ImageEvent, generate_images

    mask = generated_mask(tiny, 0.5)
    data = [codec.encode_image(p, tiny) for p in paths]
    truth = [np.asarray(codec.decode(d, tiny).convert("RGB")) for d in data]
    prompts = [codec.prompt_prefix(d, 0.5, tiny) for d in data]
    drawn = [[] for _ in paths]  # sample j of image i has seed 3 + j * 3 + i
    for j in range(3):
        for i, prompt in enumerate(prompts):
            (ev,) = [e for e in generate_images(model, prompts=[prompt],
                                                config=SamplingConfig(seed=3 + 3 * j + i))
                     if isinstance(e, ImageEvent)]
            drawn[i].append(np.asarray(ev.image.convert("RGB")))
    per_sample = [masked_mse(s, t, mask) for d, t in zip(drawn, truth) for s in d]
    of_mean = [masked_mse(np.mean(d, 0), t, mask) for d, t in zip(drawn, truth)]
    assert res["mse_model_samples"] == pytest.approx(np.mean(per_sample))
    assert res["mse_model_mean_of_samples"] == pytest.approx(np.mean(of_mean))
    assert res["mse_model_mean_of_samples"] <= res["mse_model_samples"]
    assert len({s.tobytes() for d in drawn for s in d}) > 1  # the samples differ


def test_report_with_a_pool_of_real_crops(heldout_and_model):
    """``pool``: each held-out crop is its own nearest neighbour when the pool holds it
    (retrieval MSE 0, not so for a random pick); the model's numbers are unchanged."""
    paths, model = heldout_and_model
    res = completion_report(model, paths, 0.5, seed=3, pool=paths)
    assert res["pool"] == 3 and res["mse_retrieval_sample"] == 0
    assert res["mse_model"] == completion_report(model, paths, 0.5, seed=3)["mse_model"]
    assert res["mse_random_sample"] >= 0 and res["mse_retrieval_mean"] > 0


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
    folder = str(paths[0].parent)  # the pool must not hold the held-out images
    assert main(["--images", folder, "--model", str(model), "--pool", folder]) == 1
    assert "--pool shares images" in capsys.readouterr().err
    assert main(["--images", str(tmp_path / "empty"), "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m jpeglm.completion_mse: error:")
    assert len(err.strip().splitlines()) == 1
