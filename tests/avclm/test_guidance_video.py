"""Guided video sampling on a tiny random class-conditional model (tiny profile).

With guidance on, the NAL verifier and its token masks act on the guided logits; every
row's stream must decode strictly, also across a continuation (the row restarts from a
fresh prompt that carries the class token, in both cache rows).
"""

from __future__ import annotations

import pytest

from avclm import nal as nalmod
from avclm.cli import main
from avclm.generate import FrameEvent, NalEvent, generate_video
from avclm.profile import TINY
from avclm.stream import decode_annexb
from codeclm.generation.sampling_config import SamplingConfig


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smooth_frames):
    import torch
    from transformers import LlamaForCausalLM

    from avclm.codec import encode_frames
    from codeclm.labels import add_class_tokens
    from codeclm.model_dir import save_model_dir
    from codeclm.models import llama_config
    from codeclm.tokenizer import ByteTokenizer

    samples = [encode_frames(smooth_frames(TINY, seed=s), TINY) for s in range(4)]
    tok = add_class_tokens(ByteTokenizer.train(samples, 384, "h264"), ["pan", "still"])
    torch.manual_seed(0)
    cfg = llama_config("tiny", tok.vocab_size, 1024, hidden_size=32, intermediate_size=64)
    return save_model_dir(LlamaForCausalLM(cfg), tok, TINY,
                          tmp_path_factory.mktemp("m") / "avc-classes")


def test_guided_rows_decode_strictly_across_a_continuation(model_dir):
    events = list(generate_video(model_dir, 7, batch=2, config=SamplingConfig(seed=3),
                                 context=300, max_nal_tokens=12, max_attempts=1,
                                 class_name="pan", cfg_scale=3.0))
    stats = events[-1].stats
    assert stats["frames"] == [7, 7] and stats["continuations"] >= 2
    for row in (0, 1):
        nals = [e for e in events if isinstance(e, NalEvent) and e.row == row]
        assert sum(f.row == row for f in events if isinstance(f, FrameEvent)) == 7
        assert nalmod.nal_type(nalmod.strip_start_code(nals[0].data)) == 7  # SPS first
        assert len(decode_annexb(b"".join(n.data for n in nals), TINY, strict=True)) == 7


def test_cli_class_flags(model_dir, tmp_path, capsys):
    assert main(["generate", "--list-classes", "--model", str(model_dir)]) == 0
    assert capsys.readouterr().out.split() == ["pan", "still"]
    out = tmp_path / "v.mp4"
    assert main(["generate", "--frames", "2", "-o", str(out), "--model", str(model_dir),
                 "--class", "still", "--cfg-scale", "2", "--seed", "1", "--quiet",
                 "--max-nal-tokens", "12", "--max-attempts", "1"]) == 0
    assert out.is_file()
    assert main(["generate", "--frames", "2", "-o", str(tmp_path / "w.mp4"), "--model",
                 str(model_dir), "--class", "zoom"]) == 1
    assert capsys.readouterr().err.strip() == (
        "avclm: error: unknown class 'zoom'; known classes: pan, still")
