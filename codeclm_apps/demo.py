"""`make demo`: watch the bundled models generate a video and an image grid on a CPU.

Runs exactly what a user would type::

    avclm generate --frames 16 -o demo_out/demo.mp4 --seed 2 --overwrite
    python -m data_tools synth demo_out/heldout-video --kind video --count 1 --seed 2 \
        --sources photo-crops --split heldout --overwrite
    avclm generate --prompt demo_out/heldout-video/00000-photo-crops.mp4 --prompt-frames 4 \
        --frames 4 -o demo_out/continued.mp4 --seed 2 --overwrite
    jpeglm generate -n 16 -o demo_out/images --seed 2 --overwrite
    python -m data_tools synth demo_out/heldout --kind image --count 4 --seed 2 \
        --sources photo-crops --split heldout --overwrite
    jpeglm complete demo_out/heldout/*.png --prefix-ratio 0.5 -o demo_out/complete --seed 2 \
        --overwrite

(the second and third: a camera pan over a photo that the video model never saw (its
training clips pan over the other photos), and the model continuing its first 4 frames
by 4 more; the last two: crops of photos the image
model never saw, and the model writing the bottom half of each from its top half;
``--overwrite`` so that a second `make demo` replaces the first one's outputs, and only
those: before any command runs, each output is claimed in ``demo_out/.codeclm-run.json``
(``codeclm.outputs.claim_outputs``), and one that exists without being recorded there,
e.g. your own ``demo_out/demo.mp4``, is refused and left as it is), then checks the
outputs with the strict decoders (every frame and every image must decode with no error)
and prints what it made. Uses a GPU when one is available (the generators pick ``cuda``
by default). Without bundled models it falls back to a real canonical encode/decode
round trip of the bundled sample media, and says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from codeclm.errors import CodecLMError
from codeclm.model_dir import bundled_model_dir
from codeclm.outputs import claim_outputs

#: the marker's tool name for the demo's outputs in its directory
DEMO_TOOL = "make demo"
#: what the demo writes directly in its directory (with models; files and folders)
GENERATION_OUTPUTS = ("demo.mp4", "heldout-video", "continued.mp4", "images", "heldout",
                      "complete")
#: the held-out video the demo continues: ``data_tools synth --sources ... --split ...``
#: (the bundled video model's training source, over photos it was not trained on), the
#: prompt's frames and the frames generated after them
VIDEO_PROMPT_SOURCE, VIDEO_PROMPT_SPLIT = "photo-crops", "heldout"
PROMPT_FRAMES, CONTINUED_FRAMES = 4, 4


def strict_video_frames(mp4: Path, profile) -> int:
    """Demux an MP4 back to Annex-B and decode it strictly; returns the frame count."""
    import av

    from avclm import nal
    from avclm.stream import decode_annexb

    with av.open(str(mp4)) as c:
        stream = c.streams.video[0]
        units = [p for p in c.demux(stream) if p.size]
        extradata = bytes(stream.codec_context.extradata or b"")
    # avcC extradata: SPS/PPS with 2-byte lengths; packets: 4-byte length-prefixed NALs
    out = bytearray(_avcc_parameter_sets(extradata))
    for packet in units:
        data = bytes(packet)
        i = 0
        while i + 4 <= len(data):
            n = int.from_bytes(data[i:i + 4], "big")
            out += b"\x00\x00\x00\x01" + data[i + 4:i + 4 + n]
            i += 4 + n
    annexb = bytes(out)
    assert nal.split_annexb(annexb), "empty stream"
    return len(decode_annexb(annexb, profile, strict=True))


def _avcc_parameter_sets(extradata: bytes) -> bytes:
    if not extradata or extradata[0] != 1:  # already Annex-B (or none)
        return extradata
    out, i = bytearray(), 5
    for _ in range(2):  # SPS list, then PPS list
        count = extradata[i] & (0x1F if not out else 0xFF)
        i += 1
        for _ in range(count):
            n = int.from_bytes(extradata[i:i + 2], "big")
            out += b"\x00\x00\x00\x01" + extradata[i + 2:i + 2 + n]
            i += 2 + n
    return bytes(out)


def _run(cli_main, argv: list[str], shown: str | None = None) -> None:
    """Run a CLI's ``main`` on ``argv``, printing the command line (or ``shown``) first."""
    print("$ " + (shown or " ".join(argv)), flush=True)
    rc = cli_main(argv[1:])
    if rc:
        raise SystemExit(f"demo: `{' '.join(argv)}` failed with exit code {rc}")


def generation_demo(out: Path, frames: int, images: int, seed: int) -> None:
    from avclm.cli import main as avclm_main
    from codeclm.profile import load_profile
    from jpeglm import codec as jpeg_codec
    from jpeglm.cli import main as jpeglm_main

    video = out / "demo.mp4"
    t0 = time.perf_counter()
    _run(avclm_main, ["avclm", "generate", "--frames", str(frames), "-o", str(video),
                      "--seed", str(seed), "--overwrite"])
    t_video = time.perf_counter() - t0
    vprofile = load_profile(bundled_model_dir("h264"))
    n = strict_video_frames(video, vprofile)
    print(f"demo: {video}: {n} frames, {vprofile.width}x{vprofile.height}, decodes strictly "
          f"({t_video:.1f} s)")
    if n != frames:
        raise SystemExit(f"demo: expected {frames} frames, decoded {n}")
    continuation_demo(out, seed, vprofile)

    t0 = time.perf_counter()
    _run(jpeglm_main, ["jpeglm", "generate", "-n", str(images), "-o", str(out / "images"),
                       "--seed", str(seed), "--overwrite"])
    t_images = time.perf_counter() - t0
    jprofile = load_profile(bundled_model_dir("jpeg"))
    jpgs = sorted((out / "images").glob("*.jpg"))
    for p in jpgs:
        jpeg_codec.decode(p.read_bytes(), jprofile, strict=True)
    print(f"demo: {out / 'images'}: {len(jpgs)} images, all decode strictly ({t_images:.1f} s)")
    completion_demo(out, seed)


def continuation_demo(out: Path, seed: int, profile) -> None:
    """A held-out clip, continued by the bundled video model after its first frames."""
    from avclm.cli import main as avclm_main
    from data_tools.__main__ import main as data_tools_main

    heldout = out / "heldout-video"
    _run(data_tools_main, ["python -m data_tools", "synth", str(heldout), "--kind", "video",
                           "--count", "1", "--seed", str(seed), "--sources",
                           VIDEO_PROMPT_SOURCE, "--split", VIDEO_PROMPT_SPLIT, "--overwrite"])
    prompt = min(heldout.glob("*.mp4"))
    video = out / "continued.mp4"
    t0 = time.perf_counter()
    _run(avclm_main, ["avclm", "generate", "--prompt", str(prompt), "--prompt-frames",
                      str(PROMPT_FRAMES), "--frames", str(CONTINUED_FRAMES), "-o", str(video),
                      "--seed", str(seed), "--overwrite"])
    n = strict_video_frames(video, profile)
    print(f"demo: {video}: {PROMPT_FRAMES} frames of a held-out clip, then {n - PROMPT_FRAMES} "
          f"generated, decodes strictly ({time.perf_counter() - t0:.1f} s)")
    if n != PROMPT_FRAMES + CONTINUED_FRAMES:
        raise SystemExit(f"demo: expected {PROMPT_FRAMES + CONTINUED_FRAMES} frames, decoded {n}")


def completion_demo(out: Path, seed: int, count: int = 4) -> None:
    """Held-out photo crops, completed from their top half by the bundled image model."""
    from data_tools.__main__ import main as data_tools_main
    from jpeglm.cli import main as jpeglm_main

    heldout = out / "heldout"
    _run(data_tools_main, ["python -m data_tools", "synth", str(heldout), "--kind", "image",
                           "--count", str(count), "--seed", str(seed), "--sources",
                           "photo-crops", "--split", "heldout", "--overwrite"])
    t0 = time.perf_counter()
    photos = sorted(str(p) for p in heldout.glob("*.png"))
    tail = ["--prefix-ratio", "0.5", "-o", str(out / "complete"), "--seed", str(seed),
            "--overwrite"]
    _run(jpeglm_main, ["jpeglm", "complete", *photos, *tail],
         shown=" ".join(["jpeglm", "complete", f"{heldout}/*.png", *tail]))
    print(f"demo: {out / 'complete'}/grid.png: original, prompt, completion for {len(photos)} "
          f"held-out photos ({time.perf_counter() - t0:.1f} s)")


def roundtrip_demo(out: Path) -> None:
    """Without bundled models: canonical encode -> strict decode of the bundled media."""
    from avclm import codec as avc_codec
    from avclm.profile import PROFILES as AVC
    from avclm.stream import decode_annexb
    from jpeglm import codec as jpeg_codec
    from jpeglm.assets import sample_paths
    from jpeglm.profile import PROFILES as JPEG

    print("demo: no bundled models installed; running a canonical codec round trip instead")
    claim_outputs(out, DEMO_TOOL, [f"{Path(p).stem}.jpg" for p in sample_paths()])
    for path in sample_paths():
        data = jpeg_codec.encode_image(path, JPEG["paper"])
        img = jpeg_codec.decode(data, JPEG["paper"], strict=True)
        (out / f"{Path(path).stem}.jpg").write_bytes(jpeg_codec.to_jpeg(data, JPEG["paper"]))
        print(f"  {Path(path).name}: {len(data)} modeled bytes -> {img.size[0]}x{img.size[1]}")
    for clip in avc_codec.SAMPLE_CLIPS.values():
        data = avc_codec.encode_video(clip, AVC["paper"])
        frames = decode_annexb(data, AVC["paper"], strict=True)
        print(f"  {Path(clip).name}: {len(data)} bytes -> {len(frames)} frames "
              f"{frames[0].shape[1]}x{frames[0].shape[0]}, mean {np.mean(frames):.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codeclm_apps.demo",
                                description=__doc__.splitlines()[0])
    p.add_argument("-o", "--out", default="demo_out", help="output directory (default demo_out)")
    p.add_argument("--frames", type=int, default=16, help="video frames to generate")
    p.add_argument("--images", type=int, default=16, help="images to generate")
    p.add_argument("--seed", type=int, default=2,
                   help="sampling seed (default 2; outputs vary by seed, see the model cards)")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        if bundled_model_dir("h264") and bundled_model_dir("jpeg"):
            claim_outputs(out, DEMO_TOOL, GENERATION_OUTPUTS)
            generation_demo(out, args.frames, args.images, args.seed)
        else:
            roundtrip_demo(out)
    except CodecLMError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1
    print(f"demo: done; outputs in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
