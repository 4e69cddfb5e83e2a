"""codeclm.modality: one registry of modality facts, read by every shared stage.

A toy third modality ("toy", command ``toylm``, media kind "audio", files ``.toy``, unit
marker ``AA BB`` closing each unit) is written as its own package in a temporary folder
and registered in-process; the shared code must pick it up with no edit to ``codeclm``
or ``data_tools``: profiles, extensions, command names, the tokenizer's unit split, the
fast encoder and the streaming splitter.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from codeclm import modality as registry

TOY_PROFILE = '''
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class ToyProfile:
    name: str
    samples: int = 8
    modality: ClassVar[str] = "toy"


PROFILES = {"tiny": ToyProfile("tiny"), "paper": ToyProfile("paper", 64)}
'''

TOY_MODALITY = '''
import numpy as np

from codeclm.modality import ModalityRecord

RECORD = ModalityRecord(
    name="toy", command="toylm", media_kind="audio", extensions=frozenset({".toy"}),
    profiles="toylm.profile:PROFILES", profile_class="toylm.profile:ToyProfile",
    implementation="toylm.modality:ToyModality", unit_marker=rb"\\xaa\\xbb",
    marker_side="after", bundled_model="toylm/assets/model",
    description="TOY-LM (sounds as toy bytes)")


class ToyModality:
    name = "toy"

    def __init__(self, profile):
        self.profile = profile

    def encode_path(self, path):
        return open(path, "rb").read()

    def split_units(self, data):
        parts = data.split(b"\\xaa\\xbb")
        return b"", [p + b"\\xaa\\xbb" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])

    def decode_tolerant(self, data):
        return [np.zeros((1, 1, 3), np.uint8)]

    def pixels_per_sample(self):
        return self.profile.samples
'''


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy package on ``sys.path`` and its record registered; both undone after."""
    root = tmp_path_factory.mktemp("toypkg")
    pkg = root / "toylm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A toy modality package."""\n')
    (pkg / "profile.py").write_text(textwrap.dedent(TOY_PROFILE))
    (pkg / "modality.py").write_text(textwrap.dedent(TOY_MODALITY))
    sys.path.insert(0, str(root))
    from toylm.modality import RECORD

    registry.register(RECORD)
    yield RECORD
    registry.unregister("toy")
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m == "toylm" or m.startswith("toylm.")]:
        del sys.modules[name]


def test_the_two_modalities_are_declared_once():
    assert registry.names()[:2] == ["jpeg", "h264"]
    jpeg, h264 = registry.record("jpeg"), registry.record("h264")
    assert (jpeg.command, jpeg.media_kind, h264.command, h264.media_kind) == (
        "jpeglm", "image", "avclm", "video")
    assert registry.modality_of_kind("image") == "jpeg"
    assert registry.modality_of_kind("video") == "h264"
    assert not registry.extensions("image") & registry.extensions("video")


def test_a_third_modality_is_picked_up_by_the_core(toy, tmp_path):
    from codeclm.errors import InputError, ModelError
    from codeclm.model_dir import resolve_model_dir
    from codeclm.profile import get_profile, load_profile, profiles_of, save_profile
    from data_tools.commands import kind_arg
    from data_tools.sources import infer_kind, kind_of

    assert "toy" in registry.names()
    # profiles: the registry, profile.json round trip, the Modality implementation
    assert sorted(profiles_of("toy")) == ["paper", "tiny"]
    p = get_profile("toy", "paper")
    save_profile(p, tmp_path)
    assert load_profile(tmp_path) == p
    assert registry.modality_for(p).pixels_per_sample() == 64
    # extensions and media kinds: data tools find .toy files, --kind accepts both names
    assert registry.extensions("audio") == {".toy"}
    assert kind_of("a/b.TOY") == "audio" and kind_of("x.png") == "image"
    assert infer_kind(["a.toy", "b.toy", "c.toy", "d.toy", "e.png"]) == "audio"
    with pytest.raises(InputError, match="1 images and 1 audios; pass --kind image|video|audio"):
        infer_kind(["a.toy", "b.png"])
    assert kind_arg("toy") == kind_arg("audio") == "audio"
    # command names in messages
    assert registry.command_of("toy") == "toylm"
    with pytest.raises(ModelError, match="`toylm export`"):
        resolve_model_dir(None, "toy")


def test_a_third_modality_gets_tokenizer_and_streaming_units(toy, tmp_path):
    from codeclm.streaming import UnitSplitter
    from codeclm.tokenizer import ByteTokenizer

    unit = bytes(range(0, 160, 7)) + b"\xaa\xbb"
    samples = [unit * 20, (b"\x01\x02\x03" + unit) * 10]
    tok = ByteTokenizer.train(samples, 300, "toy")
    assert tok.fast is not None  # the fast encoder reproduces the toy's unit split
    loaded = ByteTokenizer.load(tok.save(tmp_path / "toy.json"))
    assert loaded.modality == "toy" and loaded.fingerprint() == tok.fingerprint()
    data = unit * 3 + b"\x05"
    ids = tok.encode(data, bos=False, eos=False)
    assert ids == tok.backend.encode(
        "".join(chr(0x2800 + b) for b in data), add_special_tokens=False).ids
    pieces = [tok.token_bytes[i] for i in ids]
    assert all(b"\xaa\xbb" not in p[:-2] for p in pieces)  # no merge crosses a marker
    splitter = UnitSplitter("toy")
    done = [u.data for i, p in enumerate(pieces) for u in splitter.push(i, p)]
    assert done == [unit] * 3 and splitter.flush().data == b"\x05"


def test_every_trainable_extension_can_be_evaluated(tmp_path):
    """A file data_tools would train on (by extension) is an input of the matching eval."""
    from codeclm.eval import runner
    from data_tools.sources import kind_of

    eval_exts = {"image": runner.IMAGE_EXTS, "video": runner.VIDEO_EXTS}
    for kind, exts in eval_exts.items():
        folder = tmp_path / kind
        folder.mkdir()
        trainable = sorted(registry.extensions(kind))
        for i, ext in enumerate(trainable):
            name = f"f{i}{ext.upper() if i % 2 else ext}"
            (folder / name).write_bytes(b"\x00")
            assert kind_of(name) == kind
        items = runner.list_media(folder, exts)
        assert len(items) == len(trainable)
