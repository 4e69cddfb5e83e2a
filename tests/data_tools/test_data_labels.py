"""`images|videos --labels folder|FILE.csv --drop-label P`: class tokens in the shards."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from litdata import StreamingDataset
from litdata.streaming.item_loader import TokensLoader

from codeclm.labels import class_ids
from codeclm.tokenizer import ByteTokenizer
from data_tools.pipeline import build_dataset


def _samples(shards):
    """Every sample's tokens, in order (split at <s>)."""
    tok = ByteTokenizer.load(shards / "tokenizer.json")
    ds = StreamingDataset(str(shards), item_loader=TokensLoader(block_size=1))
    stream = np.concatenate([np.asarray(x) for x in ds])
    starts = list(np.flatnonzero(stream == tok.bos_id)) + [len(stream)]
    return tok, [stream[a:b] for a, b in itertools.pairwise(starts)]


def test_csv_labels_images(tmp_path, image_dir, image_tokenizer, jpeg_tiny):
    files = sorted(p.relative_to(image_dir).as_posix() for p in image_dir.rglob("*.png"))
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{f},{'odd' if i % 2 else 'even'}\n"
                                            for i, f in enumerate(files[:-1])))
    res = build_dataset(image_dir, tmp_path / "s", "image", jpeg_tiny, image_tokenizer,
                        show_progress=False, labels=str(csv), drop_label=0.0)
    assert res.samples == len(files) - 1
    skipped = [json.loads(x) for x in (tmp_path / "s" / "skipped.jsonl").read_text().splitlines()]
    assert [s["path"] for s in skipped] == [files[-1]] and "no label in" in skipped[0]["reason"]
    tok, samples = _samples(tmp_path / "s")
    ids = class_ids(tok)
    manifest = [json.loads(x) for x in (tmp_path / "s" / "manifest.jsonl").read_text().splitlines()]
    for m, s in zip(manifest, samples):
        want = "odd" if files.index(m["path"]) % 2 else "even"
        assert s[1] == ids[want]  # <s> <class> bytes... </s>
    # the bytes after the class token are the unlabelled tokens exactly
    plain = ByteTokenizer.load(image_tokenizer)
    assert tok.vocab_size == plain.vocab_size + 3  # null, even, odd
    assert tok.decode(samples[0]) == plain.decode(np.delete(samples[0], 1))


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_drop_label_is_deterministic(tmp_path, image_dir, image_tokenizer, jpeg_tiny, p):
    outs = []
    for run in ("a", "b"):
        build_dataset(image_dir, tmp_path / run, "image", jpeg_tiny, image_tokenizer,
                      show_progress=False, labels="folder", drop_label=p)
        tok, samples = _samples(tmp_path / run)
        outs.append([int(s[1]) for s in samples])
    assert outs[0] == outs[1]
    null = class_ids(tok)["null"]
    n_null = sum(t == null for t in outs[0])
    assert (n_null == 0) if p == 0 else (0 < n_null < len(outs[0]))


def test_folder_labels_videos(tmp_path, video_dir, video_tokenizer, avc_tiny):
    """The files directly in SRC have no class folder (skipped); more/<clip> is class 'more'."""
    res = build_dataset(video_dir, tmp_path / "v", "video", avc_tiny, video_tokenizer,
                        show_progress=False, labels="folder", drop_label=0.0, clips=1)
    assert res.samples == 1
    assert json.loads((tmp_path / "v" / "labels.json").read_text())["classes"] == ["more"]
    tok, samples = _samples(tmp_path / "v")
    assert samples[0][1] == class_ids(tok)["more"]
