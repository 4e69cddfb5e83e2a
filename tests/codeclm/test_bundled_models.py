"""The bundled demo models: shipped, small, loadable, and their output decodes strictly."""

import json

import numpy as np
import pytest
import torch

from codeclm.model_dir import bundled_model_dir, load_model_dir

MAX_BYTES = 25 * 1024 * 1024


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models run fastest on one thread, and the suite shares 2 cores
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("modality", ["jpeg", "h264"])
def test_bundled_model_is_shipped_small_and_complete(modality):
    path = bundled_model_dir(modality)
    assert path is not None, f"no bundled {modality} model in the package"
    weights = path / "model.safetensors"
    assert weights.stat().st_size <= MAX_BYTES
    card = (path / "README.md").read_text()
    assert "bits per byte" in card and "retrain" in card.lower()
    loaded = load_model_dir(path, modality)
    assert loaded.profile.name == "tiny"
    assert loaded.model.config.vocab_size == loaded.tokenizer.vocab_size
    assert json.loads((path / "config.json").read_text())["model_type"] == "llama"


def test_bundled_video_model_streams_a_strictly_decodable_clip():
    from avclm.generate import FrameEvent, NalEvent, generate_video
    from avclm.stream import decode_annexb
    from codeclm.generation.sampling_config import SamplingConfig

    events = list(generate_video(None, 4, config=SamplingConfig(seed=0)))
    nals = b"".join(e.data for e in events if isinstance(e, NalEvent))
    frames = [e.image for e in events if isinstance(e, FrameEvent)]
    loaded = load_model_dir(bundled_model_dir("h264"), "h264")
    decoded = decode_annexb(nals, loaded.profile, strict=True)
    assert len(decoded) == len(frames) == 4
    assert decoded[0].shape == (loaded.profile.height, loaded.profile.width, 3)
    # the frames the generator reported are the frames a decoder sees
    assert np.array_equal(np.stack(decoded), np.stack(frames))


def test_bundled_image_model_writes_valid_jpegs():
    from codeclm.generation.sampling_config import SamplingConfig
    from jpeglm import codec
    from jpeglm.generate import ImageEvent, generate_images

    loaded = load_model_dir(bundled_model_dir("jpeg"), "jpeg")
    images = [e for e in generate_images(loaded, 2, config=SamplingConfig(seed=0))
              if isinstance(e, ImageEvent)]
    assert len(images) == 2
    for ev in images:
        assert ev.valid
        img = codec.decode(ev.data, loaded.profile, strict=True)
        assert img.size == (loaded.profile.width, loaded.profile.height)


def test_demo_runs_again_over_its_own_outputs(tmp_path, capsys):
    """A second `make demo` replaces the first one's outputs (and nothing of the user's)."""
    from codeclm_apps import demo

    out = tmp_path / "demo_out"
    args = ["-o", str(out), "--frames", "2", "--images", "2"]
    assert demo.main(args) == 0
    (out / "images" / "notes.txt").write_text("mine")
    assert demo.main(args) == 0
    assert (out / "images" / "notes.txt").read_text() == "mine"
    assert len(list((out / "images").glob("*.jpg"))) == 2
    assert "decodes strictly" in capsys.readouterr().out
