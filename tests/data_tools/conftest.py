"""Shared fixtures: small synthetic media folders (real PNG/MP4 files) and tokenizers
trained on their real canonical encodings (tiny profiles)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from codeclm.modality import modality_for
from codeclm.profile import get_profile
from codeclm.tokenizer import ByteTokenizer
from data_tools.synth import synth

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def jpeg_tiny():
    return get_profile("jpeg", "tiny")


@pytest.fixture(scope="session")
def avc_tiny():
    return get_profile("h264", "tiny")


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory, jpeg_tiny):
    """16 tiny images (shapes and every lavfi source), two of them in a sub-folder."""
    root = tmp_path_factory.mktemp("images")
    synth(root, "image", jpeg_tiny, 12, seed=3, sources=("shapes", "life", "testsrc2",
                                                           "mandelbrot", "cellauto"))
    sub = root / "sub" / "deeper"
    synth(sub, "image", jpeg_tiny, 4, seed=4)
    return root


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory, avc_tiny):
    root = tmp_path_factory.mktemp("videos")
    synth(root, "video", avc_tiny, 3, seed=5)
    synth(root / "more", "video", avc_tiny, 1, seed=6, sources=("life",))
    return root


def _train(paths, profile, vocab):
    m = modality_for(profile)
    return ByteTokenizer.train([m.encode_path(str(p)) for p in paths], vocab, profile.modality)


@pytest.fixture(scope="session")
def image_tokenizer(tmp_path_factory, image_dir, jpeg_tiny):
    """Path of a 300-entry JPEG tokenizer trained on ``image_dir``."""
    tok = _train(sorted(image_dir.rglob("*.png")), jpeg_tiny, 300)
    return tok.save(tmp_path_factory.mktemp("imgtok") / "tok.json")


@pytest.fixture(scope="session")
def video_tokenizer(tmp_path_factory, video_dir, avc_tiny):
    tok = _train(sorted(video_dir.rglob("*.mp4")), avc_tiny, 400)
    return tok.save(tmp_path_factory.mktemp("vidtok") / "tok.json")


def expected_samples(src, kind, profile, tokenizer_path, exclude=()):
    """Independent recomputation: {relpath: (tokens, modeled bytes)} for every ``kind``
    file under ``src``, straight through the codec and the tokenizer."""
    from data_tools.sources import kind_of

    m = modality_for(profile)
    tok = ByteTokenizer.load(tokenizer_path)
    out = {}
    for p in sorted(src.rglob("*"), key=lambda q: q.relative_to(src).as_posix()):
        rel = p.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or rel.as_posix() in exclude:
            continue
        if p.is_file() and kind_of(p) == kind:
            data = m.encode_path(str(p))
            out[p.relative_to(src).as_posix()] = (np.array(tok.encode(data)), data)
    return out


@pytest.fixture(scope="session")
def expected():
    """:func:`expected_samples`, for the tests (fixtures are how helpers travel here)."""
    return expected_samples
