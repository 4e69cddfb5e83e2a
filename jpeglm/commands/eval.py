"""Evaluate a JPEG-LM model with the paper's protocol: prompted completion and unconditional FID.

  jpeglm eval complete --model DIR --images DIR -o OUT [--ratios 0.25 0.5 0.75] [--samples N]
                       [--seeds 0 1 2] [--extractor inception|pixels] [--weights PATH]
                       [--temperature T --top-k K --top-p P] [--batch B] [--shards DIR]
  jpeglm eval uncond   --model DIR --images HELDOUT_DIR -o OUT [--samples N] [...]

complete: every image (class subfolders = classes) is encoded with the model's profile;
for each r the model is prompted with the header and the first r of the MCUs
(``jpeglm.codec.prompt_prefix``) and samples to EOS, constrained to valid scans by the
JPEG grammar (``--no-grammar``: free sampling, as in the paper). FID of the completions
(tolerant decode) against the real images at the profile's size, per r and seed, and per
class (OUT/per_class_fid.csv); validity rate = strict decode; bits per byte on held-out
shards. uncond: N images per seed from the header alone, FID against the held-out
folder.

Class-conditional models (trained with ``--labels``): complete gives each image whose
folder names one of the model's classes that class (``--cfg-scale S``, default 1: plain
conditional sampling) and reports validity per class beside per-class FID; uncond
``--class NAME`` asks every sample for NAME and scores FID against the held-out images
in IMAGES/NAME/ (all of them when there is no such folder). Without ``--class``, uncond
samples without a class token, as for an unconditional model.

Outputs: OUT/results.json, OUT/results.md (the paper's table: rows = model, columns = r),
OUT/fid_vs_r.png; samples in OUT/samples/r{r}_seed{s}/{image}.jpg (standalone JPEGs of
the bytes as sampled, written atomically; a re-run skips the ones that exist).
OUT/run.json records the model and every setting that changes a sample: a re-run with
other settings (say another --temperature) is refused, naming the first difference,
unless --overwrite (which removes only the earlier run's samples and reports).
FID is comparable to published numbers only with --extractor inception and the standard
pytorch-fid weights file. The protocols themselves are library functions in
``jpeglm.evaluation``.
"""

from __future__ import annotations

import argparse
import sys

from jpeglm.evaluation import UNCOND_SAMPLES

from . import eval_classes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sub", metavar="SUBVERB")
    sub.required = True
    c = sub.add_parser("complete", help="prompted completion FID at several prompt ratios r",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--images", required=True,
                   help="folder of real images (class subfolders allowed)")
    c.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75],
                   help="prompt ratios r: fraction of MCUs given (default: 0.25 0.5 0.75)")
    c.add_argument("--samples", type=int, default=None,
                   help="evaluate this many images, drawn at random (seeded; default: all)")
    c.add_argument("--class-counts", default=None,
                   help="CSV (class,count) or JSON {class: count} of training-set class counts "
                        "for the long-tail table (default: class shares of --images)")
    _shared(c)
    u = sub.add_parser("uncond", help="unconditional FID against held-out images",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    u.add_argument("--images", required=True, help="held-out real images")
    u.add_argument("--samples", type=int, default=None,
                   help=f"images generated per seed (default {UNCOND_SAMPLES['cuda']} on a GPU, "
                   f"the paper's; {UNCOND_SAMPLES['cpu']} on a CPU)")
    u.add_argument("--real-samples", type=int, default=None,
                   help="use this many held-out images, drawn at random (default: all)")
    u.add_argument("--class", dest="class_name", metavar="NAME", default=None,
                   help="a class-conditional model: ask every sample for this class; FID "
                        "against IMAGES/NAME/ when that folder exists")
    _shared(u)
    eval_classes.add_arguments(sub)


def _shared(p: argparse.ArgumentParser) -> None:
    from codeclm.eval import runner

    runner.add_common_arguments(p, batch=True)
    runner.add_fid_arguments(p)
    p.add_argument("--no-grammar", dest="grammar", action="store_false",
                   help="sample freely, as the paper did (default: the JPEG scan grammar "
                   "constrains sampling to valid scans)")
    p.add_argument("--no-finish-early", dest="finish_early", action="store_false",
                   help="ablation: where the model's draw would end an MCU early, draw its "
                   "next allowed token instead (default: finish the MCU plainly)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="new tokens per image at most (default: what the context leaves)")
    p.add_argument("--max-mcu-tokens", type=int, default=None,
                   help="free sampling: an MCU open after this many tokens ends the image")
    p.add_argument("--cfg-scale", type=float, default=None, metavar="S",
                   help="a class-conditional model: guidance scale of the samples asked for a "
                        "class (default 1: plain conditional)")


def run(args: argparse.Namespace) -> int:
    return {"complete": run_complete, "uncond": run_uncond,
            "classes": eval_classes.run}[args.sub](args)


# ---------------------------------------------------------------------------- shared steps
def _config(cls, args: argparse.Namespace, **extra):
    """The protocol config of ``cls`` from the parsed flags."""
    from codeclm.eval import runner

    return cls(**runner.scored_settings(args), grammar=args.grammar,
               finish_early=args.finish_early,
               max_tokens=args.max_tokens, max_mcu_tokens=args.max_mcu_tokens, **extra)


def _setup(args: argparse.Namespace, config, record_of):
    """Checks, the output directory (``record_of(model identity)``: the run record),
    extractor (fails first if weights are missing), model."""
    from codeclm.eval import protocol, run_record
    from jpeglm import evaluation

    config.check()
    identity = run_record.model_dir_identity(args.model, "jpeg")
    run_record.check_run_dir(args.output, record_of(identity), config.overwrite)
    extractor = evaluation.image_extractor(config)
    return extractor, protocol.load_eval_model(args.model, "jpeg", config, args.threads)


def run_complete(args: argparse.Namespace) -> int:
    """Parse, call :func:`jpeglm.evaluation.evaluate_completion`, write, print."""
    from codeclm.eval import report
    from jpeglm import evaluation

    config = _config(evaluation.CompleteConfig, args, ratios=args.ratios, samples=args.samples,
                     class_counts=args.class_counts)
    extractor, lm = _setup(args, config, lambda model: evaluation.completion_record(
        model, config, args.images))
    res = evaluation.evaluate_completion(lm, args.images, args.output, config,
                                         extractor=extractor)
    evaluation.write_completion_report(args.output, res)
    print(f"{args.output}: " + ", ".join(f"r={r:g} FID {report.fmt(res['fid'][r]['mean'])}"
                                         for r in res["protocol"]["ratios"])
          + f"; {res['samples']['generated_this_run']} samples generated now", file=sys.stderr)
    return 0


def run_uncond(args: argparse.Namespace) -> int:
    """Parse, call :func:`jpeglm.evaluation.evaluate_unconditional`, write, print."""
    from codeclm.eval import report
    from jpeglm import evaluation

    config = _config(evaluation.UncondConfig, args, samples=args.samples,
                     real_samples=args.real_samples, class_name=args.class_name)
    from codeclm.class_args import check_class_of_model
    from codeclm.model_dir import resolve_model_dir

    check_class_of_model(args, resolve_model_dir(args.model, "jpeg"))  # before any weights
    extractor, lm = _setup(args, config, lambda model: evaluation.uncond_record(model, config))
    res = evaluation.evaluate_unconditional(lm, args.images, args.output, config,
                                            extractor=extractor)
    evaluation.write_uncond_report(args.output, res)
    print(f"{args.output}: FID {report.fmt_mean_std(list(res['fid']['by_seed'].values()))}, "
          f"validity {res['validity']['mean']:.1%}; {res['samples']['generated_this_run']} "
          "samples generated now", file=sys.stderr)
    return 0
