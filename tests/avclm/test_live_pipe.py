"""`avclm generate -o - | ffmpeg ...` is live: a real ffmpeg process reading the pipe
with the README's flags decodes the first frame while the generator is still running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeclm.model_dir import bundled_model_dir

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 24  # three 8-frame windows of the bundled model: generation outlasts frame 1
#: what the README tells a reader to put before `-f h264 -i -`
LIVE_FLAGS = ["-probesize", "32", "-analyzeduration", "0"]


@pytest.mark.skipif(bundled_model_dir("h264") is None, reason="no bundled video model")
def test_first_frame_reaches_ffmpeg_while_generating(ffmpeg_exe):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    producer = subprocess.Popen(
        [sys.executable, "-m", "avclm.cli", "generate", "--frames", str(FRAMES), "--seed", "2",
         "-o", "-", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    consumer = subprocess.Popen(
        [ffmpeg_exe, "-nostdin", "-loglevel", "error", *LIVE_FLAGS, "-f", "h264", "-i", "pipe:0",
         "-threads", "1", "-flush_packets", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        stdin=producer.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    producer.stdout.close()  # the consumer holds the read end now
    try:
        frame_bytes = 64 * 64 * 3  # the bundled model's profile: tiny, 64x64
        first = consumer.stdout.read(frame_bytes)
        still_generating = producer.poll() is None
        rest = consumer.stdout.read()
        assert producer.wait(timeout=600) == 0, producer.stderr.read().decode()
        assert consumer.wait(timeout=60) == 0, consumer.stderr.read().decode()
    finally:
        for p in (producer, consumer):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert len(first) == frame_bytes
    assert still_generating, "ffmpeg showed nothing until the generator had finished"
    # every frame arrives (one repeated frame per continuation)
    assert (len(first) + len(rest)) % frame_bytes == 0
    assert (len(first) + len(rest)) // frame_bytes >= FRAMES
