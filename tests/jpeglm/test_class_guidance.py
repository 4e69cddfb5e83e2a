"""Class-conditional JPEG-LM end to end: labelled shards, training, guided generation.

One module-scoped run (about a minute on one core): three classes of shapes
(``data_tools.labelled_synth``: red circles, green squares, blue triangles on tinted
backgrounds), ``data_tools images --labels folder``, the tiny recipe for a few hundred
steps in-process, export, then images asked for each class, judged by a nearest-centroid
classifier fitted on the training images. With guidance the classifier agrees with the
requested class clearly more often than for unconditional samples; the full measurement
(more samples, scales and seeds) is ``jpeglm eval classes`` on such a model.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
STEPS = 300
PER_CLASS = 40
N = 8  # samples per class and setting


def _train(shards: Path, root: Path, steps: int, *extra: str) -> None:
    from codeclm.short_fit import short_fit_argv
    from jpeglm.cli import main

    assert main(short_fit_argv(ROOT / "recipes" / "jpeglm-tiny.yaml", shards, root, steps,
                               384, 6, *extra)) == 0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``{media, tokenizer, shards, model}`` of one labelled training run."""
    from codeclm.export import export_checkpoint
    from data_tools.labelled_synth import labelled_shards

    d = tmp_path_factory.mktemp("classes")
    labelled_shards(d, "image", PER_CLASS, 320)
    _train(d / "shards", d / "run", STEPS)
    export_checkpoint(d / "run" / "checkpoints" / "last.ckpt", d / "model")
    return {"dir": d, "media": d / "media", "shards": d / "shards", "model": d / "model",
            "tok": d / "tok.json"}


def test_shards_hold_one_class_token_after_bos(run):
    import numpy as np
    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    from codeclm.labels import class_ids
    from codeclm.tokenizer import ByteTokenizer

    tok = ByteTokenizer.load(run["shards"] / "tokenizer.json")
    ids = class_ids(tok)
    assert json.loads((run["shards"] / "labels.json").read_text())["classes"] == \
        ["circle", "square", "triangle"]
    ds = StreamingDataset(str(run["shards"]), item_loader=TokensLoader(block_size=1))
    stream = np.concatenate([np.asarray(x) for x in ds])  # every token, in order
    starts = np.flatnonzero(stream == tok.bos_id)
    assert len(starts) == 3 * PER_CLASS
    follow = stream[starts + 1]
    assert set(follow.tolist()) <= set(ids.values())  # always a class token after <s>
    assert (stream == ids["null"]).sum() == (follow == ids["null"]).sum() > 0  # ~10% dropped
    manifest = [json.loads(x) for x in (run["shards"] / "manifest.jsonl").read_text().split("\n")
                if x]
    named = {ids[m["path"].split("/")[0]] for m, f in zip(manifest, follow) if f != ids["null"]}
    assert len(named) == 3


def test_guidance_raises_class_accuracy(run, capsys):
    """Class accuracy of guided samples (S=3) clearly beats unconditional samples; the
    images are valid JPEGs (Pillow decodes them strictly)."""
    from codeclm.eval.class_accuracy import CentroidClassifier
    from codeclm.generation.sampling_config import SamplingConfig
    from jpeglm.generate import ImageEvent, generate_images

    clf = CentroidClassifier.fit_folder(run["media"])

    def images(**kw):
        return [e for e in generate_images(str(run["model"]), N, batch=N,
                                           config=SamplingConfig(seed=0), **kw)
                if isinstance(e, ImageEvent)]

    from jpeglm import codec

    acc, valid = {}, {}
    for setting, kw in (("uncond", {}), ("S=1", {"cfg_scale": 1.0}), ("S=3", {"cfg_scale": 3.0})):
        scores, valid[setting] = [], 0
        for name in clf.classes:
            evs = images(**kw, **({"class_name": name} if kw else {}))
            scores.append(clf.accuracy([e.image for e in evs], name))
            valid[setting] += sum(e.valid for e in evs)
            for e in evs:  # every written .jpg decodes strictly
                Image.open(io.BytesIO(codec.to_jpeg(e.data, codec.PROFILES["tiny"]))).load()
        acc[setting] = sum(scores) / len(scores)
    with capsys.disabled():
        print(f"\nclass accuracy ({STEPS} steps, {N} samples per class): "
              + ", ".join(f"{k} {v:.2f} ({valid[k]}/{3 * N} valid as sampled)"
                          for k, v in acc.items()))
    assert acc["S=3"] >= acc["uncond"] + 0.25
    assert acc["S=3"] >= acc["S=1"]


def test_cli_class_flags(run, tmp_path, capsys):
    from jpeglm.cli import main

    model = str(run["model"])
    assert main(["generate", "--list-classes", "--model", model]) == 0
    assert capsys.readouterr().out.split() == ["circle", "square", "triangle"]
    out = tmp_path / "g"
    assert main(["generate", "-n", "2", "-o", str(out), "--model", model, "--class", "square",
                 "--cfg-scale", "2", "--seed", "1"]) == 0
    assert "2 images -> " + str(out) + "  (class square, cfg 2, " in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("[!.]*")) == ["0.jpg", "1.jpg", "grid.png"]
    src = run["media"] / "square" / "00000.png"
    assert main(["complete", str(src), "-o", str(tmp_path / "c"), "--model", model,
                 "--class", "square", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["generate", "-n", "1", "-o", str(tmp_path / "x"), "--model", model,
                 "--class", "dog"]) == 1
    assert capsys.readouterr().err.strip() == (
        "jpeglm: error: unknown class 'dog'; known classes: circle, square, triangle")


def test_init_from_an_unconditional_model(run, tmp_path):
    """An unconditional model fine-tunes on labelled shards: the class rows are added (the
    mean of the old rows), everything else is the old model's."""
    import torch
    from safetensors.torch import load_file

    from codeclm.export import export_checkpoint
    from codeclm.profile import get_profile
    from data_tools.pipeline import build_dataset

    build_dataset(run["media"], tmp_path / "plain", "image", get_profile("jpeg", "tiny"),
                  run["tok"], show_progress=False)
    _train(tmp_path / "plain", tmp_path / "r0", 2)
    export_checkpoint(tmp_path / "r0" / "checkpoints" / "last.ckpt", tmp_path / "m0")
    from codeclm.lightning_module import CodecLM
    from codeclm.tokenizer import ByteTokenizer

    lm = CodecLM(preset="tiny", context=256, init_from=str(tmp_path / "m0"),
                 tokenizer=ByteTokenizer.load(run["shards"] / "tokenizer.json"),
                 profile=get_profile("jpeg", "tiny"))
    model = lm.build_model()
    old = load_file(str(tmp_path / "m0" / "model.safetensors"))
    emb = model.model.embed_tokens.weight.detach()
    n = old["model.embed_tokens.weight"].shape[0]
    assert emb.shape[0] == n + 4 and lm.grown_rows == 4
    torch.testing.assert_close(emb[:n], old["model.embed_tokens.weight"])
    torch.testing.assert_close(emb[n:], old["model.embed_tokens.weight"].mean(0).expand(4, -1))
    _train(run["shards"], tmp_path / "r1", 2, "--model.init_from", str(tmp_path / "m0"))


def test_eval_classes_reports_per_class_accuracy(run, tmp_path):
    from jpeglm.cli import main

    out = tmp_path / "ev"
    assert main(["eval", "classes", "--model", str(run["model"]), "--images", str(run["media"]),
                 "-o", str(out), "--samples", "2", "--batch", "2", "--cfg-scales", "0", "3",
                 "--seeds", "0", "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert sorted(res["per_class"]) == ["circle", "square", "triangle"]
    for per_scale in res["per_class"].values():
        assert sorted(per_scale) == ["0", "3"]
        for m in per_scale.values():
            assert 0 <= m["class_accuracy"]["mean"] <= 1 and 0 <= m["validity"]["mean"] <= 1
    assert len(list((out / "samples" / "s3_seed0").glob("*.jpg"))) == 6
    assert "| circle |" in (out / "results.md").read_text()


def _subset(media: Path, dst: Path, per_class: int = 2) -> Path:
    """``per_class`` images of each class folder of ``media`` copied to ``dst/<class>/``,
    and one more image directly in ``dst`` (no class)."""
    import shutil

    for d in sorted(p for p in media.iterdir() if p.is_dir()):
        (dst / d.name).mkdir(parents=True)
        for f in sorted(d.iterdir())[-per_class:]:
            shutil.copy(f, dst / d.name / f.name)
    shutil.copy(media / "circle" / "00000.png", dst / "loose.png")
    return dst


def test_eval_complete_conditions_on_the_folder_class(run, tmp_path):
    """A class-conditional model completes each image with its folder's class and reports
    validity per class; an image outside the class folders is completed unconditionally."""
    from jpeglm.cli import main

    images, out = _subset(run["media"], tmp_path / "val"), tmp_path / "ev"
    assert main(["eval", "complete", "--model", str(run["model"]), "--images", str(images),
                 "-o", str(out), "--ratios", "0.5", "--seeds", "0", "--extractor", "pixels",
                 "--fid-backend", "fast", "--cfg-scale", "2", "--batch", "2", "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    cond = res["protocol"]["conditioning"]
    assert cond["class_conditional"] and cond["cfg_scale"] == 2.0
    assert cond["items_per_class"] == {"circle": 2, "square": 2, "triangle": 2}
    per = res["per_class_validity"]["0.5"]
    assert sorted(per) == ["circle", "square", "triangle"]
    assert all(0 <= v <= 1 for v in per.values())
    assert "## Validity per class" in (out / "results.md").read_text()
    assert len(list((out / "samples" / "r0.5_seed0").glob("*.jpg"))) == 7


def test_eval_uncond_with_a_class(run, tmp_path, capsys):
    """``eval uncond --class NAME``: samples asked for NAME (their own sample folder), FID
    against the held-out images of that class; an unknown class is a one-line error."""
    from jpeglm.cli import main

    images, out = _subset(run["media"], tmp_path / "val"), tmp_path / "ev"
    args = ["eval", "uncond", "--model", str(run["model"]), "--images", str(images), "-o",
            str(out), "--samples", "2", "--seeds", "0", "--extractor", "pixels",
            "--fid-backend", "fast", "-q"]
    assert main([*args, "--class", "square", "--cfg-scale", "3"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"]["class_name"] == "square" and res["protocol"]["cfg_scale"] == 3.0
    assert res["protocol"]["real_images_class"] == "square"
    assert res["protocol"]["real_images"] == 2
    assert len(list((out / "samples" / "class_square_s3_seed0").glob("*.jpg"))) == 2
    capsys.readouterr()
    assert main([*args, "--class", "dog"]) == 1
    assert capsys.readouterr().err.strip() == (
        "jpeglm: error: unknown class 'dog'; known classes: circle, square, triangle")
