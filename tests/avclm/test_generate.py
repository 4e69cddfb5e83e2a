"""`avclm generate` and avclm.generate.generate_video on a tiny random model (tiny profile).

A random model writes garbage; the slice gate still makes every output stream hold
exactly the asked number of decodable pictures. Decoding goes through PyAV and the
bundled ffmpeg binary.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

import av
import numpy as np
import pytest

from avclm import nal as nalmod
from avclm.cli import main
from avclm.generate import DoneEvent, FrameEvent, NalEvent, generate_video
from avclm.profile import TINY
from avclm.slice_gate import SliceGate
from avclm.stream import decode_annexb
from codeclm.generation.sampling_config import SamplingConfig

FAST = ["--max-nal-tokens", "12", "--max-attempts", "1", "--quiet"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smooth_frames, random_model_dir):
    from avclm.codec import encode_frames

    samples = [encode_frames(smooth_frames(TINY, seed=s), TINY) for s in range(4)]
    return random_model_dir(samples, 384, "h264", TINY, 1024, tmp_path_factory.mktemp("m") / "avc")


@pytest.fixture(scope="module")
def jpeg_model_dir(tmp_path_factory, random_model_dir):
    from codeclm.tokenizer import MIN_VOCAB
    from jpeglm.profile import PROFILES

    return random_model_dir([b"\xff\xd8" + bytes(range(256))], MIN_VOCAB, "jpeg",
                            PROFILES["tiny"], 256, tmp_path_factory.mktemp("m") / "jpeg")


def _count_frames(path) -> tuple[int, int]:
    """(packets demuxed, frames decoded) by PyAV."""
    with av.open(str(path)) as c:
        packets = sum(1 for p in c.demux(video=0) if p.size)
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    return packets, frames


class NeverFits(SliceGate):
    """Rejects every generated slice: the output is canonical slices only."""

    def fits(self, nal: bytes) -> bool:
        return False


# ----------------------------------------------------------------------------- Python API
def test_events_stream_nals_then_each_frame_at_its_last_slice(model_dir):
    events = list(generate_video(model_dir, 3, config=SamplingConfig(seed=1),
                                 max_nal_tokens=12, max_attempts=2))
    nals = [e for e in events if isinstance(e, NalEvent)]
    frames = [e for e in events if isinstance(e, FrameEvent)]
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.stats["frames"] == [3]
    assert [f.index for f in frames] == [0, 1, 2] and all(f.source == "model" for f in frames)
    assert [n.index for n in nals] == list(range(len(nals)))
    assert [nalmod.nal_type(nalmod.strip_start_code(n.data)) for n in nals[:2]] == [7, 8]
    assert len(nals) == 2 + 3 * TINY.mbs_per_frame
    for i, e in enumerate(events):  # a frame comes right after the NAL of its last macroblock
        if isinstance(e, FrameEvent):
            last = nalmod.strip_start_code(events[i - 1].data)
            assert nalmod.first_mb_in_slice(last) == TINY.mbs_per_frame - 1
            assert events[i - 1].frame == e.index
    stream = b"".join(n.data for n in nals)
    again = decode_annexb(stream, TINY, strict=False)
    assert len(again) == 3
    assert all(
        np.array_equal(a, f.image) and f.image.shape == (64, 64, 3) for a, f in zip(again, frames)
    )
    assert done.stats["rejected"] >= done.stats["replaced"] > 0


def test_exact_frames_beyond_one_context_window_decode_strictly(model_dir):
    """Small context, ``continuation="idr"``: the video goes on from its re-encoded last
    frame, written to the output too; with canonical slices only the whole output must
    pass the strict decoder."""
    events = list(generate_video(model_dir, 9, config=SamplingConfig(seed=2), context=300,
                                 max_nal_tokens=8, max_attempts=1, gate_factory=NeverFits,
                                 continuation="idr"))
    stats = events[-1].stats
    nals = [e for e in events if isinstance(e, NalEvent)]
    frames = [e for e in events if isinstance(e, FrameEvent)]
    assert stats["continuations"] >= 1 and stats["frames"] == [9] and len(frames) == 9
    assert any(f.source == "continuation" for f in frames)
    assert sum(nalmod.nal_type(nalmod.strip_start_code(n.data)) == 7 for n in nals) == 1  # SPS once
    stream = b"".join(n.data for n in nals)
    assert len(decode_annexb(stream, TINY, strict=True)) == 9
    # the continuation IDR repeats the frame before it (re-encoded)
    i = next(k for k, f in enumerate(frames) if f.source == "continuation")
    diff = np.abs(frames[i].image.astype(int) - frames[i - 1].image.astype(int)).mean()
    assert diff < 12


def test_an_unknown_continuation_is_a_config_error(model_dir):
    from codeclm.errors import ConfigError

    with pytest.raises(ConfigError, match="continuation must be one of seamless, idr"):
        next(generate_video(model_dir, 2, continuation="freeze"))


def _picture_numbers(stream: bytes) -> tuple[list[tuple[bool, int]], int]:
    """(IDR?, frame_num) of each picture of an Annex-B stream (its first slice's), and
    the stream's MaxFrameNum."""
    from avclm.bits import parse_slice_header, parse_sps

    nals = [nalmod.strip_start_code(u) for u in nalmod.split_annexb_units(stream)[1]]
    sps = parse_sps(next(n for n in nals if nalmod.nal_type(n) == nalmod.NAL_SPS))
    out = []
    for n in nals:
        if nalmod.is_picture_nal(n) and nalmod.first_mb_in_slice(n) == 0:
            h = parse_slice_header(n, sps)
            out.append((h.is_idr, h.frame_num))
    return out, 1 << sps.log2_max_frame_num


@pytest.mark.parametrize("gate", [NeverFits, None], ids=["canonical-slices", "model"])
def test_seamless_continuations_write_no_frame(model_dir, explode_frames, gate):
    """The default continuation writes nothing: every output frame is the model's (or
    a canonical slice's), no frame repeats a continuation's re-encode, the output's
    frame_num runs on from one IDR picture (through its wrap at MaxFrameNum, 16 here),
    and the stream decodes strictly (ffmpeg's ``explode`` too) with the exact frame
    count. The same run with ``"idr"`` writes one more IDR picture per continuation."""
    kw = {"config": SamplingConfig(seed=2), "context": 300, "max_nal_tokens": 40,
          "max_attempts": 1, "gate_factory": gate}
    events = list(generate_video(model_dir, 18, **kw))
    stats = events[-1].stats
    nals = [e for e in events if isinstance(e, NalEvent)]
    frames = [e for e in events if isinstance(e, FrameEvent)]
    assert stats["continuations"] >= 2 and stats["frames"] == [18]
    assert [f.index for f in frames] == list(range(18))
    assert {f.source for f in frames} == {"model"}  # (canonical slices count as the model's)
    assert {n.source for n in nals} <= {"prompt", "model", "replacement"}  # (SPS, PPS)
    stream = b"".join(n.data for n in nals)
    assert len(decode_annexb(stream, TINY, strict=True)) == 18
    assert explode_frames(stream) == 18
    numbers, max_frame_num = _picture_numbers(stream)
    assert len(numbers) == 18 and numbers[0] == (True, 0)
    for (_, a), (idr, b) in itertools.pairwise(numbers):
        assert (idr and b == 0) or b == (a + 1) % max_frame_num, numbers
    if gate is NeverFits:  # canonical P slices after the first picture: no other IDR
        assert [b for _, b in numbers[15:]] == [15, 0, 1]  # (MaxFrameNum 16: the wrap)
    idr = list(generate_video(model_dir, 18, continuation="idr", **kw))
    idr_numbers = _picture_numbers(b"".join(e.data for e in idr if isinstance(e, NalEvent)))[0]
    assert sum(i for i, _ in idr_numbers) == 1 + idr[-1].stats["continuations"]
    assert sum(i for i, _ in numbers) < sum(i for i, _ in idr_numbers)


def test_context_full_inside_a_picture_resumes_it_without_substitutions(
        model_dir, explode_frames):
    """A context (600) that fills inside P pictures (seed 0: once in 6 frames): the row's
    cache restarts from a prompt that goes on with the same picture, nothing is written
    for it, no slice is substituted, and the stream decodes strictly to 6 frames."""
    events = list(generate_video(model_dir, 6, config=SamplingConfig(seed=0), context=600))
    stats = events[-1].stats
    nals = [e for e in events if isinstance(e, NalEvent)]
    frames = [e for e in events if isinstance(e, FrameEvent)]
    assert stats["resumes"] >= 1 and stats["replaced"] == 0
    assert stats["tokens_dropped"] >= stats["resumes"]  # each resume cut off an open NAL
    assert stats["verify"][0]["fills"] == stats["verify"][0]["substitutions"] == 0
    assert {n.source for n in nals} <= {"prompt", "model"}
    # a resume writes nothing, nor does a (seamless) continuation
    assert {f.source for f in frames} == {"model"}
    assert stats["frames"] == [6] and [f.index for f in frames] == list(range(6))
    stream = b"".join(n.data for n in nals)
    assert len(decode_annexb(stream, TINY, strict=True)) == 6
    assert explode_frames(stream) == 6


def test_cli_summary_counts_resumed_pictures(model_dir, tmp_path, capsys):
    out = tmp_path / "v.h264"
    assert main(["generate", "--frames", "6", "--context", "600", "--seed", "0",
                 "--model", str(model_dir), "-o", str(out)]) == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    got = re.search(r"\((\d+) tokens, \d+ tok/s, masks changed (\d+) of (\d+) draws \((\d+) "
                    r"slices? finished early\), 0 NALs replaced, \d+ continuations, \d+ "
                    r"pictures? resumed, seed 0\)$", summary)
    assert got, summary
    sampled, changed, constrained, finished = (int(x) for x in got.groups())
    # (the constrained draws: all but forced ones; a slice finished early is a changed draw)
    assert 0 < finished <= changed <= constrained <= sampled
    assert len(decode_annexb(out.read_bytes(), TINY, strict=True)) == 6


def test_slices_the_model_would_end_early_are_finished_plainly(model_dir, tmp_path,
                                                              explode_frames, capsys):
    """The random model often draws a start code inside a slice. By default the masks
    then finish the slice the plainest way (forced tokens, counted as ``finished``);
    with ``finish_early=False`` (``--no-finish-early``) they draw the model's next
    allowed token instead, and the slices run longer (after a start-code draw the next
    candidates are mostly zero bits: long codes, many coefficients). Both clips pass
    ffmpeg's explode with the exact frame count and no substitution."""
    runs = {}
    for finish in (True, False):
        events = list(generate_video(model_dir, 6, config=SamplingConfig(seed=0),
                                     finish_early=finish))
        stats = events[-1].stats
        stream = b"".join(e.data for e in events if isinstance(e, NalEvent))
        assert explode_frames(stream) == 6 and stats["replaced"] == 0
        runs[finish] = stats
    assert 0 < runs[True]["finished"] <= runs[True]["finish_tokens"]
    assert runs[False]["finished"] == runs[False]["finish_tokens"] == 0
    assert runs[True]["tokens_sampled"] < runs[False]["tokens_sampled"]
    out = tmp_path / "v.h264"
    assert main(["generate", "--frames", "2", "--seed", "0", "--no-finish-early",
                 "--model", str(model_dir), "-o", str(out)]) == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert "masks changed" in summary and "finished early" not in summary


def test_the_room_kept_after_a_picture_is_sized_by_p_pictures():
    """The reserve after a picture is 1.5x the largest P picture so far: the first
    picture of a clip (an IDR one, often several times a P picture) sizes it only until
    a P picture is done (else a large IDR picture would make every later picture
    continue the row from a fresh prompt)."""
    from avclm.generate import RowState

    st = RowState(gate=None, decoder=None, target=8, numbering=None)
    assert st.next_picture_tokens() == 0
    st.note_picture(500, idr=True)
    assert st.next_picture_tokens() == 500
    st.note_picture(90, idr=False)
    st.note_picture(60, idr=False)
    assert st.next_picture_tokens() == 90
    st.note_picture(700, idr=True)  # (a scene cut's IDR picture)
    assert st.next_picture_tokens() == 90 and st.max_frame_tokens == 700


def test_resume_after_an_idr_picture_keeps_it_as_the_reference(
        model_dir, smooth_frames, monkeypatch):
    """A one-picture prompt (an IDR picture of 475 tokens) and a context of 600: the first
    P picture outgrows it, and the resume prompt holds the output's IDR picture (its
    exact bytes) and the P picture's latest slices; the stream decodes strictly."""
    from avclm import resume
    from avclm.codec import encode_frames

    prompts = []
    real = resume.resume_units

    def spy(*args, **kwargs):
        prompts.append(real(*args, **kwargs))
        return prompts[-1]

    monkeypatch.setattr(resume, "resume_units", spy)
    prompt = encode_frames(smooth_frames(TINY, seed=0)[:1], TINY)
    events = list(generate_video(model_dir, 2, prompt=prompt, config=SamplingConfig(seed=1),
                                 context=600, max_nal_tokens=60))
    stats = events[-1].stats
    assert stats["resumes"] == len(prompts) >= 1 and stats["replaced"] == 0
    assert prompts[0].with_reference and prompts[0].slices_kept >= 1
    idr = [e.data for e in events if isinstance(e, NalEvent) and e.source == "prompt"][2:]
    assert prompts[0].units[2:2 + len(idr)] == idr
    stream = b"".join(e.data for e in events if isinstance(e, NalEvent))
    assert stream.startswith(prompt) and len(decode_annexb(stream, TINY, strict=True)) == 3


def _busy_continuations(monkeypatch, model_dir, room: int) -> tuple[int, list[int]]:
    """Continuations re-encode a frame whose top quarter is noise (a large IDR picture)
    whatever the model drew; returns (a context that leaves ``room`` tokens after that
    whole re-encode, the list the lengths of every restart's prompt are appended to)."""
    from avclm import generate as gen
    from avclm.codec import encode_frames
    from codeclm.generation.session import Session
    from codeclm.tokenizer import ByteTokenizer

    noise = np.full((TINY.height, TINY.width, 3), 128, np.uint8)
    noise[:16] = np.random.default_rng(0).integers(0, 256, (16, TINY.width, 3))
    monkeypatch.setattr(gen.VideoGenerator, "reference_image", lambda self, st: noise)
    tok = ByteTokenizer.load(model_dir / "tokenizer.json")
    whole = len(tok.encode(encode_frames([noise], TINY), bos=True, eos=False))
    lengths: list[int] = []
    restart = Session.restart

    def spy(self, row, ids, constraint=None):
        lengths.append(len(ids))
        return restart(self, row, ids, constraint)

    monkeypatch.setattr(Session, "restart", spy)
    steps = itertools.count()
    step = Session.step

    def bounded(self):  # a row that never ends fails here instead of hanging
        assert next(steps) < 8000, "the run does not end"
        return step(self)

    monkeypatch.setattr(Session, "step", bounded)
    assert whole + room <= 1024  # (the model's context: a larger one would be cut to it)
    return whole + room, lengths


def test_a_continuation_that_brings_no_nal_is_prompted_again_with_room(monkeypatch,
                                                                        model_dir):
    """A re-encoded IDR picture that fits the context but leaves 2 tokens, too few for any
    NAL to end: the context fills, and the continuation is made again with the IDR
    picture cut to its latest slices, leaving room for a NAL of ``max_nal_tokens`` as a
    resumed picture does. (Before, the same whole prompt came back after every
    continuation and the row never finished.)"""
    from avclm import generate as gen

    context, _ = _busy_continuations(monkeypatch, model_dir, room=2)
    asked = []
    real = gen.VideoGenerator.continuation_ids

    def spy(self, units, fit=False):
        asked.append((fit, len(real(self, units, fit))))
        return real(self, units, fit)

    monkeypatch.setattr(gen.VideoGenerator, "continuation_ids", spy)
    events = list(generate_video(model_dir, 6, config=SamplingConfig(seed=1), context=context,
                                 max_nal_tokens=40, window=2))
    stats = events[-1].stats
    assert stats["frames"] == [6] and stats["continuations"] >= 2
    assert (False, context - 2) in asked  # the whole picture, leaving 2 tokens
    fitted = [n for fit, n in asked if fit]
    assert fitted and all(n + 40 + 1 <= context for n in fitted), (asked, context)
    stream = b"".join(e.data for e in events if isinstance(e, NalEvent))
    assert len(decode_annexb(stream, TINY, strict=True)) == 6


def test_a_restart_that_brings_no_nal_still_advances(monkeypatch, model_dir):
    """Whatever the prompt leaves: when two continuations in a row fill the context
    before any NAL ends (here the whole re-encoded IDR picture is forced in, leaving 2
    tokens), the next picture is filled with canonical slices, so the run still ends
    with its frame count, decodable."""
    from avclm import generate as gen
    from codeclm.labels import with_class

    context, lengths = _busy_continuations(monkeypatch, model_dir, room=2)
    monkeypatch.setattr(gen.VideoGenerator, "continuation_ids",
                        lambda self, units, fit=False: with_class(
                            self.tok.encode(b"".join(units), bos=True, eos=False), self.class_id))
    events = list(generate_video(model_dir, 5, config=SamplingConfig(seed=1), context=context,
                                 max_nal_tokens=40, max_attempts=1, window=2))
    stats = events[-1].stats
    assert stats["frames"] == [5] and stats["replaced"] > 0
    assert max(lengths) + 2 >= context  # the forced prompts really left no room
    stream = b"".join(e.data for e in events if isinstance(e, NalEvent))
    assert len(decode_annexb(stream, TINY, strict=True)) == 5


def test_a_window_of_clip_length_starts_a_continuation(model_dir):
    """With room to spare in the context, a continuation still starts once the window holds
    the profile's clip length (what the model saw in training): 8 frames for tiny."""
    kw = {"config": SamplingConfig(seed=4), "max_nal_tokens": 8, "max_attempts": 1,
          "gate_factory": NeverFits}
    stats = list(generate_video(model_dir, 10, **kw))[-1].stats
    assert stats["frames"] == [10] and stats["continuations"] == 1
    # a window longer than the run: no continuation
    stats = list(generate_video(model_dir, 10, window=16, **kw))[-1].stats
    assert stats["frames"] == [10] and stats["continuations"] == 0


def test_batch_rows_each_have_n_frames(model_dir):
    events = list(generate_video(model_dir, 2, batch=2, config=SamplingConfig(seed=3),
                                 max_nal_tokens=12, max_attempts=3))
    for r in (0, 1):
        nals = [e for e in events if isinstance(e, NalEvent) and e.row == r]
        assert [n.index for n in nals] == list(range(len(nals)))
        frames = [e.index for e in events if isinstance(e, FrameEvent) and e.row == r]
        assert frames == [0, 1]
        assert len(decode_annexb(b"".join(n.data for n in nals), TINY, strict=False)) == 2


# ----------------------------------------------------------------------------- CLI
def test_cli_writes_mp4_with_exactly_n_frames(model_dir, tmp_path):
    out = tmp_path / "v.mp4"
    assert main(["generate", "--frames", "4", "--model", str(model_dir), "-o", str(out),
                 "--seed", "0", *FAST]) == 0
    assert _count_frames(out) == (4, 4)


def test_cli_h264_files_per_batch_row(model_dir, tmp_path):
    out = tmp_path / "v.h264"
    assert main(["generate", "--frames", "2", "--model", str(model_dir), "-o", str(out),
                 "--batch", "2", "--seed", "5", *FAST]) == 0
    for r in (0, 1):
        data = (tmp_path / f"v_{r}.h264").read_bytes()
        assert len(decode_annexb(data, TINY, strict=False)) == 2
    assert not out.exists() and not list(tmp_path.glob(".*part"))


def test_cli_prompt_video_frames_lead_the_output(
    model_dir, tmp_path, smooth_frames, write_lossless
):
    from avclm.codec import encode_video

    src = write_lossless(smooth_frames(TINY, seed=7), tmp_path / "p.mkv", TINY.fps)
    out = tmp_path / "v.h264"
    assert main(["generate", "--frames", "2", "--model", str(model_dir), "-o", str(out),
                 "--prompt", str(src), "--prompt-frames", "3", "--seed", "1", *FAST]) == 0
    data = out.read_bytes()
    canonical = nalmod.split_annexb_units(encode_video(src, TINY))[1]
    head = b"".join(canonical[:2 + 3 * TINY.mbs_per_frame])  # SPS, PPS, 3 pictures
    assert data.startswith(head)
    assert len(decode_annexb(data, TINY, strict=False)) == 5


@pytest.mark.slow
def test_cli_stdout_pipes_into_ffmpeg(model_dir, tmp_path, ffmpeg_exe):
    out = tmp_path / "out.webm"
    gen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "avclm.cli",
            "generate",
            "--frames",
            "3",
            "--model",
            str(model_dir),
            "-o",
            "-",
            "--seed",
            "4",
            *FAST,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    ff = subprocess.run([ffmpeg_exe, "-nostdin", "-v", "error", "-f", "h264", "-i", "-",
                         "-c:v", "libvpx", "-y", str(out)], stdin=gen.stdout, capture_output=True,
                        check=False)
    gen.stdout.close()
    assert gen.wait() == 0, gen.stderr.read().decode()
    assert ff.returncode == 0, ff.stderr.decode()
    assert out.stat().st_size > 0
    assert _count_frames(out)[1] == 3


def test_cli_stdout_carries_only_the_stream(model_dir, capfdbinary):
    assert main(["generate", "--frames", "2", "--model", str(model_dir), "-o", "-", "--seed", "6",
                 "--max-nal-tokens", "12", "--max-attempts", "1"]) == 0
    out, err = capfdbinary.readouterr()
    assert out.startswith(b"\x00\x00\x00\x01\x67")
    assert len(decode_annexb(out, TINY, strict=False)) == 2
    assert b"2 frames" in err


def test_cli_errors(model_dir, jpeg_model_dir, capsys):
    from codeclm.model_dir import bundled_model_dir

    if bundled_model_dir("h264") is None:
        assert main(["generate", "--frames", "1", "-o", "x.mp4"]) == 1
        assert "no model given" in capsys.readouterr().err
    assert main(["generate", "--frames", "1", "--model", str(jpeg_model_dir), "-o", "x.mp4"]) == 1
    err = capsys.readouterr().err
    assert "jpeg model" in err and err.count("\n") == 1
    assert (
        main(["generate", "--frames", "1", "--model", str(model_dir), "-o", "-", "--batch", "2"])
        == 1
    )
    assert "stdout" in capsys.readouterr().err
    assert main(["generate", "--frames", "0", "--model", str(model_dir), "-o", "x.mp4"]) == 1


def test_cli_bar_shows_resampled_and_substituted_and_a_hint_when_slow(model_dir, tmp_path,
                                                                       capsys, monkeypatch):
    """An untrained model fails verification: the bar counts the NAL units sampled again
    and substituted as they happen, and a slow frame prints the hint once."""
    from avclm.commands import generate as verb

    monkeypatch.setattr(verb, "SLOW_FRAME_S", 0.0)
    assert main(["generate", "-n", "1", "--frames", "2", "--model", str(model_dir), "-o",
                 str(tmp_path / "v.mp4"), "--seed", "0", "--max-nal-tokens", "12",
                 "--max-attempts", "2"]) == 0
    err = capsys.readouterr().err
    counts = re.findall(r"(\d+) resampled, (\d+) substituted", err)
    assert counts and int(counts[-1][0]) > 0 and int(counts[-1][1]) > 0
    assert err.count("hint: frames are slow") == 1


def test_a_continuation_prompt_too_long_for_the_context_keeps_the_idr_tail(
        model_dir, explode_frames):
    """A context (300) that a re-encoded busy frame (over 500 tokens with this random
    model) cannot hold: the row goes on from SPS/PPS and the IDR picture's latest slices
    instead of stopping, and the stream still decodes strictly to the asked frame count."""
    events = list(generate_video(model_dir, 4, config=SamplingConfig(seed=0), context=300))
    stats = events[-1].stats
    assert stats["continuations"] >= 1 and stats["frames"] == [4]
    stream = b"".join(e.data for e in events if isinstance(e, NalEvent))
    assert len(decode_annexb(stream, TINY, strict=True)) == 4
    assert explode_frames(stream) == 4
