"""Token ids -> media helpers: `jpeglm.tokens_to_jpeg` / `tokens_to_image`,
`avclm.tokens_to_annexb` / `tokens_to_frames`, `codeclm.token_bytes.ids_to_bytes`."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import avclm
import jpeglm
from codeclm.model_dir import bundled_model_dir
from codeclm.token_bytes import ids_to_bytes, model_parts
from jpeglm import codec

pytestmark = pytest.mark.skipif(bundled_model_dir("jpeg") is None or bundled_model_dir("h264")
                                is None, reason="no bundled models")


@pytest.fixture(scope="module")
def image_ids(tmp_path_factory):
    """A real image's canonical bytes and their ids under the bundled JPEG tokenizer."""
    tok, profile = model_parts(None, "jpeg")
    src = tmp_path_factory.mktemp("api") / "a.png"
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[16:48, 8:40] = (200, 60, 30)
    Image.fromarray(rgb).save(src)
    modeled = codec.encode_image(src, profile)
    return modeled, tok.encode(modeled), profile


def test_tokens_to_jpeg_and_image(image_ids):
    modeled, ids, profile = image_ids
    jpeg = jpeglm.tokens_to_jpeg(ids)
    assert jpeg == codec.to_jpeg(modeled, profile)
    with Image.open(io.BytesIO(jpeg)) as im:  # a standalone file Pillow decodes
        im.load()
        assert im.size == profile.size
    image = jpeglm.tokens_to_image(ids[: len(ids) // 2])  # cut: tolerant, grey below
    assert image.size == profile.size
    assert np.asarray(image)[-1, -1].tolist() == [128, 128, 128]


def test_ids_to_bytes_for_a_transformers_tokenizer(image_ids):
    from transformers import AutoTokenizer

    modeled, ids, _ = image_ids
    hf = AutoTokenizer.from_pretrained(bundled_model_dir("jpeg"))
    text = hf.decode(ids, skip_special_tokens=True)  # what a transformers user sees: Braille
    assert all(0x2800 <= ord(c) <= 0x28FF for c in text.replace(" ", ""))
    assert ids_to_bytes(ids, hf) == modeled
    assert ids_to_bytes(np.asarray(ids), bundled_model_dir("jpeg")) == modeled


def test_tokens_to_annexb_and_frames():
    from avclm.codec import encode_frames

    tok, profile = model_parts(None, "h264")
    frames = [np.full((profile.height, profile.width, 3), v, np.uint8) for v in (40, 90)]
    stream = encode_frames(frames, profile)
    ids = tok.encode(stream)
    assert avclm.tokens_to_annexb(ids) == stream
    decoded = avclm.tokens_to_frames(ids)
    assert len(decoded) == 2 and decoded[0].shape == (profile.height, profile.width, 3)
