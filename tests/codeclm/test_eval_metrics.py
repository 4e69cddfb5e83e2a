"""Evaluation building blocks: FID, PSNR, SSIM, bits per byte, the FID Inception, extractors,
reports and media listing. No codec or model download involved."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from codeclm.errors import ConfigError, InputError, ModelError
from codeclm.eval import extractors, inception, metrics, report, runner


# ---------------------------------------------------------------------------- FID
def _feats(n=400, d=12, seed=0, shift=0.0, scale=1.0):
    mix = np.random.default_rng(99).normal(size=(d, d)) / math.sqrt(d)  # one distribution
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ mix * scale + shift


def test_fid_identical_sets_is_zero():
    a = _feats()
    assert abs(metrics.fid_from_features(a, a)) < 1e-6
    stats = metrics.feature_stats(a)
    assert abs(metrics.frechet_distance(*stats, *stats)) < 1e-6


def test_fid_of_a_mean_shift_is_the_squared_shift():
    a = _feats()
    d = np.linspace(-1, 1, a.shape[1])
    # same covariance, mean moved by d: FID = |d|^2 exactly
    assert metrics.fid_from_features(a, a + d) == pytest.approx(float(d @ d), rel=1e-6)


def test_fid_grows_with_the_shift():
    a, b = _feats(seed=0), _feats(seed=1)
    fids = [metrics.fid_from_features(a, b + s) for s in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert all(x < y for x, y in itertools.pairwise(fids))
    assert fids[0] < 0.5  # two samples of one distribution


@pytest.mark.parametrize("scale", [1.0, 1.7])
def test_torchmetrics_fid_matches_scipy_frechet(scale):
    a, b = _feats(seed=2), _feats(seed=3, shift=0.3, scale=scale)
    ours = metrics.fid_from_features(a, b)
    ref = metrics.frechet_distance(*metrics.feature_stats(a), *metrics.feature_stats(b))
    # and a third, plain numpy/scipy computation written out here
    from scipy import linalg

    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = (m1 - m2) @ (m1 - m2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert ours == pytest.approx(ref, rel=1e-6)
    assert ref == pytest.approx(direct, rel=1e-9)
    assert ours > 0.5


@pytest.mark.parametrize("n1,n2,d", [(400, 300, 12), (9, 14, 64), (30, 30, 30)])
def test_fast_fid_equals_torchmetrics(n1, n2, d):
    """Both regimes of fast_fid (sample-space SVD when a set is smaller than D, D x D eigh
    otherwise) give torchmetrics' and scipy's number."""
    rng = np.random.default_rng(n1)
    a = rng.normal(size=(n1, d))
    b = rng.normal(size=(n2, d)) * 1.3 + 0.2
    ref = metrics.fid_from_features(a, b)
    assert metrics.fast_fid(a, b) == pytest.approx(ref, rel=1e-6)
    assert metrics.fid(a, b, "fast") == metrics.fast_fid(a, b)
    assert metrics.fid(a, b, "torchmetrics") == ref
    if min(n1, n2) > d:
        scipy_fid = metrics.frechet_distance(*metrics.feature_stats(a), *metrics.feature_stats(b))
        assert metrics.fast_fid(a, b) == pytest.approx(scipy_fid, rel=1e-8)
    assert abs(metrics.fast_fid(a, a)) < 1e-8
    with pytest.raises(InputError, match="unknown FID backend"):
        metrics.fid(a, b, "nope")


def test_grouped_fid():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(7, 5)), rng.normal(size=(7, 5)) + 1.0
    groups = ["a", "a", "a", "b", "b", "c", None]
    out = metrics.grouped_fid(real, fake, groups)
    assert set(out) == {"a", "b", "c"}
    assert out["a"]["n"] == 3 and out["a"]["fid"] == pytest.approx(
        metrics.fid_from_features(real[:3], fake[:3]), rel=1e-6)
    assert out["c"] == {"n": 1, "fid": None}
    with pytest.raises(InputError):
        metrics.grouped_fid(real, fake[:3], groups)


def test_fid_needs_two_samples_per_set():
    with pytest.raises(InputError, match="at least 2"):
        metrics.fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(InputError):
        metrics.fid_from_features(np.zeros((3, 4)), np.zeros((3, 5)))


def test_torchmetrics_fid_accepts_our_extractor_module():
    """Our extractor is a valid custom torchmetrics feature module, and our feature path
    (extract once, then fid_from_features) gives the same number."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(0)
    real = rng.integers(0, 200, (12, 32, 32, 3), dtype=np.uint8)
    fake = rng.integers(50, 256, (10, 32, 32, 3), dtype=np.uint8)
    net = extractors.PixelFeatures()
    tm = FrechetInceptionDistance(feature=net)
    tm.update(torch.from_numpy(real).permute(0, 3, 1, 2), real=True)
    tm.update(torch.from_numpy(fake).permute(0, 3, 1, 2), real=False)
    ours = metrics.fid_from_features(extractors.extract(net, list(real), batch=5),
                                     extractors.extract(net, list(fake), batch=4))
    assert ours == pytest.approx(float(tm.compute()), rel=1e-5)
    assert ours > 0


# ---------------------------------------------------------------------------- PSNR / SSIM
def test_psnr_known_values():
    a = np.zeros((8, 8, 3), np.uint8)
    assert metrics.psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-9)  # 48.13 dB
    assert metrics.psnr(a, a + 16) == pytest.approx(10 * math.log10(255 ** 2 / 256), abs=1e-9)
    assert metrics.psnr(a, a) == metrics.PSNR_CAP
    b = a.copy()
    b[0, 0, 0] = 255  # MSE = 255^2 / 192
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(192), abs=1e-9)
    with pytest.raises(InputError):
        metrics.psnr(a, a[:4])


def _photo(size=64):
    from jpeglm.assets import sample_paths

    im = Image.open(sample_paths()[0]).convert("RGB").resize((size, size))
    return np.asarray(im, np.uint8)


def _noisy(x, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8)


def test_ssim_properties():
    x = _photo()
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    vals = [metrics.ssim(x, _noisy(x, s)) for s in (2, 8, 20, 50)]
    assert all(a > b for a, b in itertools.pairwise(vals)), vals
    y = _noisy(x, 10)
    assert metrics.ssim(x, y) == pytest.approx(metrics.ssim(y, x), abs=1e-12)  # symmetric
    # units do not matter: the same images in [0, 1] with data_range 1
    assert metrics.ssim(x / 255.0, y / 255.0, data_range=1.0) == pytest.approx(
        metrics.ssim(x, y), abs=1e-12)
    # grey images work and lie in [-1, 1]
    g = metrics.ssim(x[..., 0], y[..., 0])
    assert -1.0 <= g <= 1.0
    # a constant brightness shift keeps structure: SSIM stays high, PSNR drops
    shifted = np.clip(x.astype(int) + 10, 0, 255).astype(np.uint8)
    assert metrics.ssim(x, shifted) > metrics.ssim(x, _noisy(x, 20))


@pytest.mark.parametrize("kind", ["photo", "noise", "grey"])
def test_ssim_matches_torchmetrics(kind):
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    rng = np.random.default_rng(1)
    x = _photo() if kind != "noise" else rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    y = _noisy(x, 15, seed=2)
    if kind == "grey":
        x, y = x[..., 1], y[..., 1]
    t = (lambda z: torch.from_numpy(z.astype(np.float64)).permute(2, 0, 1)[None]) if x.ndim == 3 \
        else (lambda z: torch.from_numpy(z.astype(np.float64))[None, None])
    ref = float(tm_ssim(t(y), t(x), data_range=255.0, kernel_size=11, sigma=1.5))
    assert metrics.ssim(x, y) == pytest.approx(ref, abs=1e-9)


# ---------------------------------------------------------------------------- bits per byte
class _Uniform(torch.nn.Module):
    """A 'model' whose logits are all zero: cross-entropy is exactly ln(vocab)."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, use_cache=False):
        class Out:
            pass

        o = Out()
        o.logits = torch.zeros(*input_ids.shape, self.vocab)
        return o


def test_bits_per_byte_of_a_uniform_model():
    vocab = 20
    nbytes = torch.tensor([0, 0, 0] + [1] * 10 + [3] * 7)  # 3 specials, then 1- and 3-byte tokens
    rng = np.random.default_rng(0)
    blocks = [torch.from_numpy(rng.integers(0, vocab, (2, 9))) for _ in range(3)]
    res = metrics.bits_per_byte(_Uniform(vocab), blocks, nbytes)
    tokens = sum(b[:, 1:].numel() for b in blocks)
    covered = sum(int(nbytes[b[:, 1:]].sum()) for b in blocks)
    assert res["tokens"] == tokens and res["bytes"] == covered and res["blocks"] == 6
    assert res["loss"] == pytest.approx(math.log(vocab), rel=1e-6)
    assert res["bpb"] == pytest.approx(math.log2(vocab) * tokens / covered, rel=1e-6)
    with pytest.raises(InputError):
        metrics.bits_per_byte(_Uniform(vocab), [], nbytes)


# ---------------------------------------------------------------------------- FID Inception
#: a few parameter names and shapes of pytorch-fid's pt_inception-2015-12-05 state dict
KNOWN_KEYS = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


@pytest.fixture(scope="module")
def fid_net():
    return inception.FIDInceptionV3()


def test_fid_inception_state_dict_layout(fid_net):
    sd = {k: v for k, v in fid_net.state_dict().items() if not k.endswith("num_batches_tracked")}
    for k, shape in KNOWN_KEYS.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any(k.startswith("AuxLogits") for k in sd)  # FID Inception has no aux head
    # 94 conv + batch-norm units (conv weight + 4 bn tensors each) + fc weight and bias
    assert len(sd) == 94 * 5 + 2
    n_params = sum(p.numel() for p in fid_net.parameters())
    assert 23_000_000 < n_params < 24_000_000


def test_fid_inception_loads_a_state_dict_and_gives_2048_features(fid_net, tmp_path):
    torch.manual_seed(0)
    # the module's own (default-initialised) tensors, perturbed so a load is visible
    sd = {k: v + 0.01 * torch.rand_like(v) for k, v in fid_net.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    path = tmp_path / inception.WEIGHTS_FILE
    torch.save(sd, path)  # like the pytorch-fid file: no num_batches_tracked entries
    net = inception.load_fid_inception(path)
    assert torch.equal(net.Mixed_7c.branch_pool.conv.weight, sd["Mixed_7c.branch_pool.conv.weight"])
    imgs = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    out = net(imgs)
    assert out.shape == (2, inception.NUM_FEATURES) and torch.isfinite(out).all()
    assert not net.training and not net.train().training  # always in eval mode
    # preprocessing as pytorch-fid: 299x299 bilinear, [-1, 1]
    x = inception.FIDInceptionV3.preprocess(imgs)
    assert x.shape == (2, 3, 299, 299) and x.min() >= -1 and x.max() <= 1

    bad = dict(sd)
    del bad["fc.bias"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match="not the FID Inception weights"):
        inception.load_fid_inception(tmp_path / "bad.pth")


# ---------------------------------------------------------------------------- extractors
def test_pixel_extractor_features():
    net = extractors.PixelFeatures()
    imgs = [np.full((32, 32, 3), v, np.uint8) for v in (0, 128, 255)]
    f = extractors.extract(net, imgs, batch=2)
    assert f.shape == (3, net.num_features) and 64 <= net.num_features <= 256
    assert f.min() >= 0 and f.max() <= 1
    assert np.allclose(f[1, :192], 128 / 255)
    hist = f[:, 192:].reshape(3, 3, 16)
    assert np.allclose(hist.sum(-1), 1.0)


def test_missing_weights_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.delenv(extractors.WEIGHTS_ENV, raising=False)
    with pytest.raises(ConfigError) as e:
        extractors.build_extractor("inception", None)
    msg = str(e.value)
    assert "\n" not in msg
    for part in (inception.WEIGHTS_FILE, "pytorch-fid", "--weights", extractors.WEIGHTS_ENV):
        assert part in msg
    with pytest.raises(ConfigError, match="no such file"):
        extractors.build_extractor("inception", tmp_path / "nope.pth")
    with pytest.raises(ConfigError, match="unknown feature extractor"):
        extractors.build_extractor("clip")


def test_weights_from_the_environment(monkeypatch, tmp_path, fid_net):
    path = tmp_path / "w.pth"
    torch.save(fid_net.state_dict(), path)
    monkeypatch.setenv(extractors.WEIGHTS_ENV, str(path))
    _net, info = extractors.build_extractor("inception")
    assert info["name"] == "inception" and info["num_features"] == 2048
    assert info["comparable_to_published"] is False  # not the standard file's hash
    assert len(info["weights_sha256"]) == 64


# ---------------------------------------------------------------------------- reports
def test_report_files(tmp_path):
    res = {"fid": float("nan"), "x": (1, float("inf")), "p": tmp_path, "n": np.float32(2.5)}
    report.write_json(tmp_path / "r.json", res)
    back = json.loads((tmp_path / "r.json").read_text())
    assert back == {"fid": None, "x": [1, None], "p": str(tmp_path), "n": 2.5}

    table = report.fid_table("tiny", [0.25, 0.5, 0.75], {0.25: [300.0, 310.0], 0.5: [100.0]}, True)
    lines = table.splitlines()
    assert lines[0] == "| Model | r = 0.25 | r = 0.5 | r = 0.75 |"
    assert lines[2] == "| tiny | 305.00 ± 7.07 | 100.00 | n/a |"
    assert "| JPEG-LM (paper) | 272.12 | 123.09 | 34.21 |" in lines
    pixel = report.fid_table("tiny", [0.25, 0.5, 0.75], {0.25: [1.0]}, False)
    assert "not comparable" in pixel and "paper" not in pixel

    png = report.line_plot(tmp_path / "p.png", {"a": ([0.25, 0.5], [3.0, 1.0], [0.5, None]),
                                                "b": ([0.25], [float("nan")], None)},
                           "r", "FID", "t")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 100

    report.write_csv(tmp_path / "c.csv", ["class", "fid"], [["a", 1.23456789], ["b", None]])
    assert (tmp_path / "c.csv").read_text() == "class,fid\na,1.234568\nb,\n"


# ---------------------------------------------------------------------------- media folders
def test_list_media_classes_and_ids(tmp_path):
    for rel in ["cat/1.png", "cat/2.jpg", "dog/1.png", "dog/sub/3.png", "top.png", "top.jpg",
                "notes.txt", ".hidden/4.png"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    items = runner.list_media(tmp_path, runner.IMAGE_EXTS)
    ids = {it.id: it.cls for it in items}
    assert ids == {"cat__1": "cat", "cat__2": "cat", "dog__1": "dog", "dog__sub__3": "dog",
                   "top_jpg": None, "top_png": None}
    assert runner.class_frequencies(items) == {"cat": 0.5, "dog": 0.5}
    pick = runner.select(items, 3, seed=0)
    assert len(pick) == 3 and pick == runner.select(items, 3, seed=0)
    assert runner.select(items, None) == items
    with pytest.raises(InputError):
        runner.list_media(tmp_path / "cat" / "nothing", runner.IMAGE_EXTS)
    assert runner.sample_seed(1, 5) != runner.sample_seed(0, 5) != runner.sample_seed(0, 6)


# ---------------------------------------------------------------------------- long tail
def test_class_frequencies_from_files(tmp_path):
    from codeclm.eval import longtail

    items = [runner.MediaItem(f"{c}__{i}", tmp_path, c) for c, n in (("a", 3), ("b", 1))
             for i in range(n)]
    assert longtail.class_frequencies(items) == {"a": 0.75, "b": 0.25}
    (tmp_path / "c.csv").write_text("class,count\na,10\nb,30\n")
    assert longtail.class_frequencies(items, tmp_path / "c.csv") == {"a": 0.25, "b": 0.75}
    (tmp_path / "c.json").write_text('{"a": 1, "b": 1, "c": 2}')
    assert longtail.class_frequencies(items, tmp_path / "c.json") == {
        "a": 0.25, "b": 0.25, "c": 0.5}
    (tmp_path / "bad.csv").write_text("a;1\n")
    with pytest.raises(InputError):
        longtail.class_frequencies(items, tmp_path / "bad.csv")


def test_per_class_rows_and_spearman():
    from codeclm.eval import longtail

    # rarer class -> higher FID, in both seeds: rho = -1
    per_class = {0.5: {0: {"a": {"n": 3, "fid": 10.0}, "b": {"n": 2, "fid": 20.0},
                           "c": {"n": 2, "fid": 30.0}, "d": {"n": 1, "fid": None}},
                       1: {"a": {"n": 3, "fid": 12.0}, "b": {"n": 2, "fid": 22.0},
                           "c": {"n": 2, "fid": 32.0}, "d": {"n": 1, "fid": None}}}}
    freq = {"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.1}
    rows, summary = longtail.per_class_rows(per_class, freq, [0.5, 0.75])
    assert rows == [["0.5", "a", 3, 11.0, 0.5], ["0.5", "b", 2, 21.0, 0.3],
                    ["0.5", "c", 2, 31.0, 0.1], ["0.5", "d", 1, None, 0.1]]
    assert summary[0.5]["classes"] == 4 and summary[0.5]["spearman_rho"] == pytest.approx(-1.0)
    assert 0.75 not in summary
