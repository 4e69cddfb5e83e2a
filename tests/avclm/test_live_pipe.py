"""`avclm generate -o - | ffmpeg ...` is live: a real ffmpeg process reading the pipe with
the README's flags decodes the first frame while the generator is still writing the stream.

The test relays the generator's stdout to ffmpeg's stdin itself, counting the bytes, so
"while still generating" is measured on the stream (how much of it ffmpeg had been given
when its first frame came out), not on process lifetimes. Without the flags ffmpeg reads
its 5 MB probe (more than a whole clip) first and shows nothing until the stream ends
(checked by hand: the first frame then came after 3640 of 3769 bytes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from codeclm.model_dir import bundled_model_dir

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 24  # three 8-frame windows of the bundled model
#: what the README tells a reader to put before `-f h264 -i -`
LIVE_FLAGS = ["-probesize", "32", "-analyzeduration", "0"]


@pytest.mark.skipif(bundled_model_dir("h264") is None, reason="no bundled video model")
def test_first_frame_reaches_ffmpeg_while_generating(ffmpeg_exe):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    producer = subprocess.Popen(
        [sys.executable, "-m", "avclm.cli", "generate", "--frames", str(FRAMES), "--seed", "2",
         "-o", "-", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    consumer = subprocess.Popen(
        [ffmpeg_exe, "-nostdin", "-loglevel", "error", *LIVE_FLAGS, "-f", "h264", "-i", "pipe:0",
         "-threads", "1", "-flush_packets", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    forwarded = [0]  # bytes of the stream handed to ffmpeg so far

    def relay():
        try:
            while chunk := producer.stdout.read1(1 << 16):
                consumer.stdin.write(chunk)
                consumer.stdin.flush()
                forwarded[0] += len(chunk)
        finally:
            consumer.stdin.close()

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        frame_bytes = 64 * 64 * 3  # the bundled model's profile: tiny, 64x64
        first = consumer.stdout.read(frame_bytes)
        given_at_first_frame = forwarded[0]  # an upper bound: the relay may have moved on
        rest = consumer.stdout.read()
        assert producer.wait(timeout=600) == 0, producer.stderr.read().decode()
        thread.join(timeout=60)
        assert consumer.wait(timeout=60) == 0, consumer.stderr.read().decode()
    finally:
        for p in (producer, consumer):
            if p.poll() is None:
                p.kill()
                p.wait()
    total = forwarded[0]
    assert len(first) == frame_bytes
    assert given_at_first_frame < total // 2, (
        f"ffmpeg's first frame came after {given_at_first_frame} of {total} bytes")
    # every frame arrives (one repeated frame per continuation)
    assert (len(first) + len(rest)) % frame_bytes == 0
    assert (len(first) + len(rest)) // frame_bytes >= FRAMES
