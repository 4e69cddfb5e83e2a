"""Evaluate an AVC-LM model: prompted video continuation (paper: 10 prompt frames, 5 generated).

  avclm eval continue --model DIR --videos DIR -o OUT [--prompt-frames 10] [--frames 5]
                      [--samples N] [--seeds 0 1 2] [--extractor auto|inception|pixels]
                      [--weights PATH] [--shards DIR] [sampling flags]

Each clip is encoded with the model's profile; the model is prompted with the NAL units
of its first K frames and generates M more (``avclm.generate.generate_video``: NAL
verification, retries, canonical substitutes; ``--no-verify``: the header gate only);
the stream is decoded (tolerant) and frames K..K+M-1 are compared with the ground truth
(the canonical clip, decoded): PSNR and SSIM per frame index, frame-level FID (Inception
with --weights, or --extractor pixels), validity rate (strict decode of the whole
stream), retries and substitutions, and bits per byte on held-out shards (--shards). A
"repeat last prompt frame" baseline is measured beside the model. Writes
OUT/results.json, OUT/results.md, OUT/psnr_vs_frame.png; samples go to
OUT/samples/seed{s}/{clip}.h264 (a re-run skips the ones that exist; OUT/run.json
records the model and the settings that change a sample, and a re-run with other ones
is refused unless --overwrite). Clips in class
subfolders (``--videos DIR/<class>/...``) also get per-class PSNR, SSIM and validity
(results.json ``per_class``, a table in results.md); with a class-conditional model
(trained with ``--labels``) each clip whose folder names one of its classes is continued
with that class (``--cfg-scale S``, default 1: plain conditional sampling). The protocol
itself is the library function ``avclm.evaluation.evaluate_continuation``.
"""

from __future__ import annotations

import argparse
import sys

SUBVERBS = ("continue", "classes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from codeclm.eval import runner

    sub = parser.add_subparsers(dest="sub", metavar="SUBVERB")
    sub.required = True
    p = sub.add_parser("continue", help="prompted continuation: PSNR/SSIM per frame, FID, validity",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True,
                   help="folder of video clips (class subfolders allowed)")
    p.add_argument("--prompt-frames", type=int, default=10, help="K: prompt frames (default 10)")
    p.add_argument("--frames", type=int, default=5, help="M: frames generated (default 5)")
    p.add_argument("--samples", type=int, default=None,
                   help="evaluate this many clips, drawn at random (seeded; default: all)")
    p.add_argument("--max-nal-tokens", type=int, default=None,
                   help="tokens one NAL may take before it is retried (default: the generator's)")
    p.add_argument("--max-attempts", type=int, default=None,
                   help="tries per slice before the canonical substitute "
                        "(default: the generator's)")
    p.add_argument("--no-verify", action="store_true",
                   help="ablation: only the slice-header gate (default: NAL verification "
                        "with rollback, avclm/verifier.py)")
    from avclm.renumber import CONTINUATIONS

    p.add_argument("--continuation", choices=CONTINUATIONS, default=CONTINUATIONS[0],
                   help="what a continuation beyond one context window writes, as in avclm "
                   "generate (default seamless: nothing)")
    p.add_argument("--cfg-scale", type=float, default=None, metavar="S",
                   help="a class-conditional model: clips in a folder named after one of its "
                        "classes are continued with that class at this guidance scale "
                        "(default 1: plain conditional); per-class numbers are reported "
                        "whenever the clips sit in class folders")
    runner.add_common_arguments(p, batch=False)
    runner.add_fid_arguments(p, choices=("auto", "inception", "pixels", "none"), default="auto",
                             help="frame FID features: auto (inception when --weights or "
                                  "$CODECLM_INCEPTION_WEIGHTS is set, else no FID), inception, "
                                  "pixels (weight-free, not comparable to published FID) or none")
    from . import eval_classes

    eval_classes.add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    if args.sub == "continue":
        return run_continue(args)
    if args.sub == "classes":
        from . import eval_classes

        return eval_classes.run(args)
    raise AssertionError(args.sub)


# ---------------------------------------------------------------------------- continue
def run_continue(args: argparse.Namespace) -> int:
    """Parse, call :func:`avclm.evaluation.evaluate_continuation`, write, print."""
    from avclm import evaluation
    from codeclm.eval import protocol, report, run_record, runner

    config = evaluation.ContinueConfig(
        **runner.scored_settings(args), prompt_frames=args.prompt_frames, frames=args.frames,
        samples=args.samples, max_nal_tokens=args.max_nal_tokens,
        max_attempts=args.max_attempts, verify=not args.no_verify,
        continuation=args.continuation)
    config.check()
    record = evaluation.continuation_record(run_record.model_dir_identity(args.model, "h264"),
                                            config, args.videos)
    run_record.check_run_dir(args.output, record, config.overwrite)
    extractor = evaluation.continuation_extractor(config)  # missing weights fail first
    lm = protocol.load_eval_model(args.model, "h264", config, args.threads)
    res = evaluation.evaluate_continuation(lm, args.videos, args.output, config,
                                           extractor=extractor)
    evaluation.write_continuation_report(args.output, res)
    fid = res["fid"]
    print(f"{args.output}: {res['samples']['total']} samples "
          f"({res['samples']['generated_this_run']} generated now), PSNR "
          f"{report.fmt(res['psnr_mean'])} dB, SSIM {report.fmt(res['ssim_mean'], 4)}, "
          f"validity {res['validity']['rate']:.1%}"
          + (f", FID {report.fmt(fid['mean'])}" if fid else ""), file=sys.stderr)
    return 0
