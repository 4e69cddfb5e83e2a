"""Codec library versions beside the canonical bytes (codeclm.versions): recorded in every
shard set and model, adding to a shard set made by other libraries refused, a model made
with other libraries noted once at load."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from codeclm import versions
from codeclm.errors import ProfileError
from codeclm.profile import get_profile, load_profile, save_profile
from data_tools.pipeline import build_dataset


def test_running_versions_name_every_library():
    h264, jpeg = versions.current("h264"), versions.current("jpeg")
    assert set(h264) == {"pyav", "libavcodec", "libavformat", "libswscale", "x264"}
    assert set(jpeg) == {"pillow", "libjpeg"}
    assert h264["x264"] not in ("unknown", "unavailable")  # read from the encoder's SEI
    assert all(isinstance(v, str) and v for v in {**h264, **jpeg}.values())


def test_profile_json_carries_versions_and_still_loads(tmp_path):
    prof = get_profile("jpeg", "tiny")
    save_profile(prof, tmp_path, versions=versions.current("jpeg"))
    assert versions.read(tmp_path) == versions.current("jpeg")
    assert load_profile(tmp_path) == prof  # the versions are not a codec setting
    save_profile(prof, tmp_path)
    assert versions.read(tmp_path) is None


@pytest.fixture()
def media_and_tokenizer(tmp_path):
    py = [sys.executable, "-m", "data_tools"]
    subprocess.run(py + ["synth", str(tmp_path / "media"), "--kind", "image", "--profile", "tiny",
                         "--count", "6", "--seed", "0", "-q"], check=True, capture_output=True)
    subprocess.run(py + ["bpe", str(tmp_path / "media"), "-o", str(tmp_path / "tok.json"),
                         "--profile", "tiny", "--vocab-size", "300"], check=True,
                   capture_output=True)
    return tmp_path / "media", tmp_path / "tok.json"


def test_shard_sets_record_versions_and_refuse_other_libraries(media_and_tokenizer, tmp_path):
    media, tok = media_and_tokenizer
    prof = get_profile("jpeg", "tiny")
    out = tmp_path / "shards"
    build_dataset(media, out, "image", prof, tok, show_progress=False)
    assert versions.read(out) == versions.current("jpeg")
    build_dataset(media, out, "image", prof, tok, show_progress=False)  # same libraries: resumes

    meta = json.loads((out / "profile.json").read_text())
    meta["versions"]["libjpeg"] = "libjpeg-turbo 0.0.1"
    (out / "profile.json").write_text(json.dumps(meta))
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ProfileError, match=r"libjpeg libjpeg-turbo 0\.0\.1 \(here "):
        build_dataset(media, out, "image", prof, tok, show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == before  # nothing touched


def test_a_model_from_other_libraries_is_noted_once(random_model_dir, tmp_path, caplog):
    from codeclm.model_dir import load_model_dir

    prof = get_profile("jpeg", "tiny")
    d = random_model_dir([bytes(range(256)) * 4], 300, "jpeg", prof, 64, tmp_path / "m")
    save_profile(prof, d, versions=dict(versions.current("jpeg"), pillow="1.0"))
    with caplog.at_level(logging.WARNING, logger="codeclm"):
        load_model_dir(d, modality="jpeg")
        load_model_dir(d, modality="jpeg")
    notes = [r.getMessage() for r in caplog.records if "other codec libraries" in r.getMessage()]
    assert len(notes) == 1 and "pillow 1.0 (here " in notes[0]
    save_profile(prof, d, versions=versions.current("jpeg"))
    assert versions.warn_if_different(d, "jpeg") == []
