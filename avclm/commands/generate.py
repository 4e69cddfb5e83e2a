"""Generate videos with an AVC-LM model, writing each NAL unit as soon as it exists.

Output: an MP4 (or .mov/.mkv) assembled without re-encoding, a raw Annex-B ``.h264``
stream, or ``-`` for Annex-B on stdout, flushed after every NAL unit, so that

    avclm generate --frames 16 -o - | ffmpeg -probesize 32 -analyzeduration 0 -f h264 -i - out.webm

converts (or, with ffplay, plays) while it is generated: the two flags stop ffmpeg from
reading ~5 MB (more than a whole clip) before it starts. Exactly ``--frames`` new frames per
sample (after the prompt's, which are part of the output), also beyond one context window (the model
continues from its last frame, re-encoded; see avclm/generate.py). Progress (frames,
tokens/s) goes to stderr; stdout carries only video bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from pathlib import Path

from codeclm.class_args import add_class_arguments
from codeclm.errors import ConfigError, InputError, OutputError
from codeclm.generation.args import add_sampling_arguments, model_dtype, sampling_config

STREAM_SUFFIXES = (".h264", ".264", ".avc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, required=True, metavar="N",
                        help="new frames to generate per sample")
    parser.add_argument("-o", "--output", default="generated.mp4", metavar="OUT",
                        help="OUT.mp4 (also .mov/.mkv), OUT.h264 (raw Annex-B) or - (Annex-B "
                        "to stdout); with -n N: OUT_0.mp4 ... (default generated.mp4)")
    parser.add_argument("--prompt", metavar="VIDEO", default=None,
                        help="continue this video (encoded with the model's profile)")
    parser.add_argument("--prompt-frames", type=int, default=None, metavar="K",
                        help="use the first K frames of --prompt (default: all, up to one clip)")
    add_sampling_arguments(parser, batch=False)
    add_class_arguments(parser)
    parser.add_argument("-n", "--num", "--batch", dest="batch", type=int, default=1, metavar="N",
                        help="videos to generate, sampled together (default 1)")
    g = parser.add_argument_group("validity")
    g.add_argument("--max-nal-tokens", type=int, default=None, metavar="N",
                   help="tokens one NAL unit may take before it is sampled again (default 400)")
    g.add_argument("--max-attempts", type=int, default=None, metavar="N",
                   help="tries per NAL unit before a canonical one is used (default 4)")
    g.add_argument("--no-verify", action="store_true",
                   help="ablation: no token masks and no slice-data check, only the slice-header "
                   "gate (default: every NAL unit is verified, see avclm/verifier.py)")
    g.add_argument("--no-slice-grammar", action="store_true",
                   help="ablation: keep the header masks and the verifier but drop the "
                   "macroblock-layer token masks (slices then pass by resampling; default: "
                   "every sampled token continues a valid slice, see avclm/slice_automaton.py)")
    g.add_argument("--no-finish-early", action="store_true",
                   help="ablation: where the model's draw would end a slice that cannot end "
                   "yet, draw its next allowed token instead (default: finish the slice the "
                   "plainest way, no more coefficients, then write the model's start code; "
                   "see avclm/nal_masks.py)")
    g.add_argument("--context", type=int, default=None, metavar="TOKENS",
                   help="KV cache per sample in tokens (default: the model's context)")
    g.add_argument("--window", type=int, default=None, metavar="FRAMES",
                   help="frames per context window before continuing from the last frame "
                   "(default: the profile's clip length, as in training)")
    from avclm.renumber import CONTINUATIONS

    g.add_argument("--continuation", choices=CONTINUATIONS, default=CONTINUATIONS[0],
                   help="what a continuation writes: nothing, the model's later pictures "
                   "renumbered to follow the last frame (seamless, default), or the last "
                   "frame again as the re-encoded IDR picture the model was prompted with "
                   "(idr: exact references, one repeated frame per continuation)")


class _Sink:
    """Where one sample's Annex-B bytes go: stdout, a .h264 file (atomic), or memory
    (for the MP4 written at the end)."""

    def __init__(self, path: str, stack: contextlib.ExitStack):
        from codeclm.io import atomic_write

        self.path = path
        self.kind = "stdout" if path == "-" else (
            "stream" if Path(path).suffix.lower() in STREAM_SUFFIXES else "container")
        self.chunks: list[bytes] = []
        self.file = None
        if self.kind == "stdout":
            self.file = sys.stdout.buffer
        elif self.kind == "stream":
            self.file = stack.enter_context(atomic_write(path, "wb"))

    def write(self, data: bytes) -> None:
        if self.file is not None:
            self.file.write(data)
            if self.kind == "stdout":
                self.file.flush()
        else:
            self.chunks.append(data)

    def close(self, profile) -> None:
        if self.kind == "container":
            from avclm.codec import annexb_to_mp4

            annexb_to_mp4(b"".join(self.chunks), self.path, profile)


def output_paths(output: str, batch: int) -> list[str]:
    """One output path per row: ``OUT`` for a batch of 1, else ``OUT_<row>.<ext>``."""
    p = Path(output)
    if batch == 1:
        return [output]
    return [str(p.with_name(f"{p.stem}_{r}{p.suffix}")) for r in range(batch)]


#: printed once (under the bar) when a frame takes longer than SLOW_FRAME_S
SLOW_HINT = ("hint: frames are slow because many NAL units fail verification and are "
             "sampled again (see 'resampled' on the bar): the model is undertrained for its "
             "profile. Train longer, or trade quality for speed with --max-attempts 1 "
             "(substitute at once) or --max-nal-tokens 100; --no-verify shows raw samples.")
SLOW_FRAME_S = 30.0


class _LiveCounts:
    """The progress bar's postfix: tokens/s, NAL units sampled again and substituted so
    far, and a one-time hint when a frame is slow."""

    def __init__(self, bar):
        import time

        self.bar, self.clock = bar, time.perf_counter
        self.rejected = self.substituted = self.tokens = 0
        self.last_frame = self.clock()
        self.hinted = False

    def nal(self, ev) -> None:
        self.substituted += ev.source == "replacement"
        if not self.hinted and self.clock() - self.last_frame > SLOW_FRAME_S:
            self.hinted = True
            if not self.bar.disable:
                self.bar.write(SLOW_HINT, file=sys.stderr)
        self.show()

    def frame(self, ev) -> None:
        self.last_frame = self.clock()
        self.rejected, self.tokens = ev.rejected, ev.tokens
        self.show()

    def show(self) -> None:
        elapsed = self.bar.format_dict.get("elapsed") or 0
        rate = f"{self.tokens / elapsed:.0f} tok/s, " if elapsed > 0 else ""
        self.bar.set_postfix_str(f"{rate}{self.rejected} resampled, {self.substituted} "
                                 "substituted", refresh=False)


def check_arguments(args: argparse.Namespace) -> list[str]:
    """Every range, input and output check, before torch or the model is loaded; returns
    the output paths."""
    from codeclm.class_args import check_class_args
    from codeclm.generation.args import check_positive, check_sampling_args
    from codeclm.outputs import check_output_file

    from .encode import CONTAINER_SUFFIXES

    if args.output == "-" and args.batch != 1:
        raise ConfigError("-o - (stdout) takes one video; use -n 1 or a file name")
    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    check_sampling_args(args)
    check_class_args(args)
    check_positive(args, "prompt_frames", "max_nal_tokens", "max_attempts", "context")
    if args.window is not None and args.window < 2:
        raise ConfigError(f"--window must be >= 2 (a context window holds at least 2 frames), "
                          f"got {args.window}")
    if args.prompt_frames is not None and args.prompt is None:
        raise ConfigError("--prompt-frames needs --prompt VIDEO")
    if args.prompt is not None and not Path(args.prompt).is_file():
        what = "not a regular file" if Path(args.prompt).exists() else "no such file"
        raise InputError(f"{args.prompt}: {what}")
    if args.output == "-":
        return ["-"]
    suffix = Path(args.output).suffix.lower()
    if suffix not in STREAM_SUFFIXES and suffix not in CONTAINER_SUFFIXES:
        raise OutputError(f"{args.output}: the output must end in one of "
                          f"{', '.join(sorted(CONTAINER_SUFFIXES | set(STREAM_SUFFIXES)))}")
    paths = output_paths(args.output, args.batch)
    for p in paths:
        check_output_file(p, args.overwrite)
    return paths


def run(args: argparse.Namespace) -> int:
    from codeclm.class_args import check_class_of_model, list_classes

    if list_classes(args, "h264"):
        return 0
    paths = check_arguments(args)

    from codeclm.model_dir import check_model_dir, resolve_model_dir

    check_model_dir(resolve_model_dir(args.model, "h264"), "h264")  # before torch loads
    check_class_of_model(args, resolve_model_dir(args.model, "h264"))

    from tqdm import tqdm

    from avclm.generate import DoneEvent, FrameEvent, NalEvent, generate_video, load_model

    config = sampling_config(args)
    lm = load_model(args.model, "h264", args.device, model_dtype(args), threads=args.threads)
    kw = {"verify": not args.no_verify, "slice_grammar": not args.no_slice_grammar,
          "finish_early": not args.no_finish_early}
    if args.max_nal_tokens is not None:
        kw["max_nal_tokens"] = args.max_nal_tokens
    if args.max_attempts is not None:
        kw["max_attempts"] = args.max_attempts
    stats = {}
    with contextlib.ExitStack() as stack:
        sinks = [_Sink(p, stack) for p in paths]
        events = generate_video(
            lm,
            args.frames,
            prompt=args.prompt,
            prompt_frames=args.prompt_frames,
            batch=args.batch,
            config=config,
            context=args.context,
            window=args.window,
            continuation=args.continuation,
            class_name=args.class_name,
            cfg_scale=args.cfg_scale,
            **kw,
        )
        first = next(events)  # the prompt and context checks run before any progress bar shows
        bar = tqdm(total=args.frames * args.batch, unit="frame", file=sys.stderr,
                   disable=args.quiet, dynamic_ncols=True)
        live = _LiveCounts(bar)
        for ev in itertools.chain([first], events):
            if isinstance(ev, NalEvent):
                sinks[ev.row].write(ev.data)
                live.nal(ev)
            elif isinstance(ev, FrameEvent):
                if ev.source != "prompt":
                    bar.update(1)
                live.frame(ev)
            elif isinstance(ev, DoneEvent):
                stats = ev.stats
        bar.close()
        for sink in sinks:
            sink.close(lm.profile)
    if not args.quiet:
        where = "stdout" if args.output == "-" else ", ".join(paths)
        checked = [v for v in stats.get("verify") or [] if v]
        if checked:
            total = {k: sum(v[k] for v in checked) for k in
                     ("nals_checked", "passed", "truncated", "retries", "substitutions")}
            print(f"verifier: {total['passed']} of {total['nals_checked']} NALs passed, "
                  f"{total['truncated']} cut off at --max-nal-tokens; {total['retries']} "
                  f"sampled again, {total['substitutions']} substituted", file=sys.stderr)
        print(f"{sum(stats['frames'])} frames -> {where}  ({stats['tokens_sampled']} tokens, "
              f"{stats['tokens_per_s']:.0f} tok/s,{_changed(stats)} {stats['replaced']} NALs "
              f"replaced, {stats['continuations']} continuations{_resumed(stats)}, "
              f"seed {stats['seed']})",
              file=sys.stderr)
    return 0


def _changed(stats: dict) -> str:
    """" masks changed C of N draws (F slices finished early)," when draws were made
    filters-first, else nothing."""
    from codeclm.generation.stats import changed_note

    note = changed_note(stats, "masks", "slice")
    return f" {note}," if note else ""


def _resumed(stats: dict) -> str:
    """", N pictures resumed" when the context filled inside pictures, else nothing."""
    n = stats.get("resumes", 0)
    return f", {n} picture{'s' if n != 1 else ''} resumed" if n else ""
