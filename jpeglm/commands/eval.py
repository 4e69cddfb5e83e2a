"""Evaluate a JPEG-LM model with the paper's protocol: prompted completion and unconditional FID.

  jpeglm eval complete --model DIR --images DIR -o OUT [--ratios 0.25 0.5 0.75] [--samples N]
                       [--seeds 0 1 2] [--extractor inception|pixels] [--weights PATH]
                       [--temperature T --top-k K --top-p P] [--batch B] [--shards DIR]
  jpeglm eval uncond   --model DIR --images HELDOUT_DIR -o OUT [--samples N] [...]

complete: every image (class subfolders = classes) is encoded with the model's profile;
for each r the model is prompted with the header and the first r of the MCUs
(``jpeglm.codec.prompt_prefix``) and samples to EOS, constrained to valid scans by the
JPEG grammar (``--no-grammar``: free sampling, as in the paper). FID of the completions (tolerant decode)
against the real images at the profile's size, per r and seed, and per class
(OUT/per_class_fid.csv); validity rate = strict decode; bits per byte on held-out shards.
uncond: N images per seed from the header alone, FID against the held-out folder.

Outputs: OUT/results.json, OUT/results.md (the paper's table: rows = model, columns = r),
OUT/fid_vs_r.png; samples in OUT/samples/r{r}_seed{s}/{image}.jpg (standalone JPEGs of
the bytes as sampled, written atomically; a re-run skips the ones that exist).
FID is comparable to published numbers only with --extractor inception and the standard
pytorch-fid weights file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

#: ``eval uncond`` images per seed by default: the paper's 1000 where a GPU makes that a
#: matter of minutes; on a CPU (about 10-30 s per image for a 7B-class model, hours for
#: 1000 x 3 seeds even with the tiny models) a count that finishes while you wait
UNCOND_SAMPLES = {"cuda": 1000, "cpu": 50}


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
    _shared(u)


def _shared(p: argparse.ArgumentParser) -> None:
    from codeclm.eval import runner

    runner.add_common_arguments(p, batch=True)
    runner.add_fid_arguments(p)
    p.add_argument("--no-grammar", dest="grammar", action="store_false",
                   help="sample freely, as the paper did (default: the JPEG scan grammar "
                   "constrains sampling to valid scans)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="new tokens per image at most (default: what the context leaves)")
    p.add_argument("--max-mcu-tokens", type=int, default=None,
                   help="free sampling: an MCU open after this many tokens ends the image")


def run(args: argparse.Namespace) -> int:
    return {"complete": run_complete, "uncond": run_uncond}[args.sub](args)


# ---------------------------------------------------------------------------- shared steps
def _setup(args):
    """Checks, extractor (fails first if weights are missing), model."""
    from codeclm.eval import extractors, runner
    from codeclm.generation.loading import load_model

    runner.check_common(args)
    device = args.device or runner.default_device()
    net, info = extractors.build_extractor(args.extractor, args.weights, device)
    dtype = None
    if args.dtype:
        import torch

        dtype = getattr(torch, args.dtype)
    lm = load_model(args.model, "jpeg", args.device, dtype, threads=args.threads)
    return net, info, lm, device


def _generate(args, lm, store, tag: str, ids: list[str], prompts: list[bytes], seed: int,
              bar) -> int:
    """Generate the missing samples of one set (``ids[k]`` from ``prompts[k]``), each with
    generator seed ``sample_seed(seed, k)``; write each as a standalone JPEG of the bytes
    as sampled. Returns how many were generated."""
    from codeclm.eval import runner
    from jpeglm import codec
    from jpeglm.generate import ImageEvent, McuEvent, generate_images

    made = 0
    for run_ in runner.runs(store.pending(tag, ids, ".jpg")):
        chunk = [prompts[k] for k in run_]
        units: dict[int, list[bytes]] = {i: [] for i in range(len(chunk))}
        config = runner.sampling_config(args, runner.sample_seed(seed, run_[0]))
        for ev in generate_images(lm, prompts=chunk, batch=args.batch, config=config,
                                  grammar=args.grammar, max_tokens=args.max_tokens,
                                  max_mcu_tokens=args.max_mcu_tokens):
            if isinstance(ev, McuEvent):
                units[ev.sample].append(ev.data)
            elif isinstance(ev, ImageEvent):
                raw = chunk[ev.sample] + b"".join(units.pop(ev.sample))
                store.write(tag, ids[run_[ev.sample]], ".jpg", codec.to_jpeg(raw, lm.profile))
                made += 1
                bar.update(1)
    return made


def _score(path: Path, profile, collector) -> tuple[bool, int]:
    """Feed a sample's tolerant decode to ``collector``; (strictly valid, intact MCUs)."""
    from codeclm.errors import DecodeError
    from jpeglm import codec

    data = path.read_bytes()
    img, n_intact = codec.decode_tolerant(data, profile)
    collector.add(np.asarray(img, np.uint8))
    try:
        codec.check(data, profile)
        return True, n_intact
    except DecodeError:
        return False, n_intact


def _real_features(items, profile, net, args, device, quiet, modeled: dict | None = None):
    """Features of the real images at the profile's size (``codec.prepare``) and, given
    their ``modeled`` bytes, of their canonical JPEG round trip (the codec's own FID floor).
    Returns (features, round-trip features or None, skipped [{id, reason}])."""
    from codeclm.errors import InputError
    from codeclm.eval import extractors, runner
    from jpeglm import codec

    real = extractors.FeatureCollector(net, args.feature_batch, device)
    rt = extractors.FeatureCollector(net, args.feature_batch, device) if modeled else None
    skipped = []
    for it in runner.progress(items, desc="real features", disable=quiet):
        try:
            im = codec.prepare(it.path, profile)
        except InputError as e:
            skipped.append({"id": it.id, "reason": str(e)})
            continue
        real.add(np.asarray(im, np.uint8))
        if rt is not None:
            rt.add(np.asarray(codec.decode(modeled[it.id], profile), np.uint8))
    return real.features(), (rt.features() if rt is not None else None), skipped


def _valid_items(items, profile):
    """(items that encode, modeled bytes by id, skipped [{id, reason}])."""
    from codeclm.errors import EncodeError, InputError
    from jpeglm import codec

    modeled, skipped = {}, []
    for it in items:
        try:
            modeled[it.id] = codec.encode_image(it.path, profile)
        except (InputError, EncodeError) as e:
            skipped.append({"id": it.id, "reason": str(e)})
    return [it for it in items if it.id in modeled], modeled, skipped


def _fitting_prompts(items, modeled, ratios, lm):
    """(items whose prompt at every ratio leaves room in the context to sample, skipped
    [{id, reason}] for the others): such an image is dropped from every set, so all
    sets score the same images."""
    from jpeglm import codec

    context = lm.model.config.max_position_embeddings
    kept, skipped = [], []
    for it in items:
        r = max(ratios)
        prompt = codec.prompt_prefix(modeled[it.id], r, lm.profile)
        n = len(lm.tokenizer.encode(prompt, bos=True, eos=False))
        if n + 1 >= context:
            skipped.append({"id": it.id, "reason": f"its prompt at r={r:g} is {n} tokens and "
                            f"fills the model's {context}-token context"})
        else:
            kept.append(it)
    return kept, skipped


# ---------------------------------------------------------------------------- complete
def run_complete(args: argparse.Namespace) -> int:
    from codeclm.errors import ConfigError
    from codeclm.eval import extractors, longtail, metrics, report, runner
    from jpeglm import codec

    ratios = [float(r) for r in args.ratios]
    if any(not 0.0 <= r < 1.0 for r in ratios) or len(set(ratios)) != len(ratios):
        raise ConfigError(f"--ratios must be distinct values in [0, 1): {args.ratios}")
    out, quiet = Path(args.output), args.no_progress
    net, feat_info, lm, device = _setup(args)
    profile = lm.profile
    all_items = runner.list_media(args.images, runner.IMAGE_EXTS)
    items, modeled, skipped = _valid_items(runner.select(all_items, args.samples), profile)
    items, too_long = _fitting_prompts(items, modeled, ratios, lm)
    for s in too_long:
        print(f"skipped {s['id']}: {s['reason']}", file=sys.stderr)
    skipped += too_long
    if len(items) < 2:
        raise ConfigError(f"{args.images}: FID needs at least 2 readable images, "
                          f"found {len(items)}")
    ids = [it.id for it in items]
    store = runner.SampleStore(out)

    sets = [(r, s) for r in ratios for s in args.seeds]
    todo = sum(len(store.pending(_tag(r, s), ids, ".jpg")) for r, s in sets)
    bar = runner.progress(total=todo, desc="generate", disable=quiet)
    generated = 0
    for r, s in sets:
        prompts = [codec.prompt_prefix(modeled[i], r, profile) for i in ids]
        generated += _generate(args, lm, store, _tag(r, s), ids, prompts, s, bar)
    bar.close()

    real, roundtrip, _ = _real_features(items, profile, net, args, device, quiet, modeled)
    classes = [it.cls for it in items]
    freq = longtail.class_frequencies(all_items, args.class_counts)
    fid, valid, intact, per_class = {}, {}, {}, {}
    for r, s in runner.progress(sets, desc="metrics", disable=quiet):
        col = extractors.FeatureCollector(net, args.feature_batch, device)
        scores = [_score(store.path(_tag(r, s), i, ".jpg"), profile, col) for i in ids]
        fake = col.features()
        fid.setdefault(r, {})[s] = metrics.fid(real, fake, args.fid_backend, device)
        valid.setdefault(r, {})[s] = sum(v for v, _ in scores) / len(scores)
        intact.setdefault(r, {})[s] = sum(n for _, n in scores) / (len(scores) * profile.mcu_count)
        if any(c is not None for c in classes):
            per_class.setdefault(r, {})[s] = metrics.grouped_fid(real, fake, classes)

    class_rows, class_summary = longtail.per_class_rows(per_class, freq, ratios)
    if class_rows:
        report.write_csv(out / "per_class_fid.csv", longtail.CSV_HEADER, class_rows)
    bpb = (runner.shard_bpb(lm, args.shards, max_blocks=args.bpb_blocks, show_progress=not quiet)
           if args.shards else None)
    label = runner.model_label(lm)
    comparable = bool(feat_info["comparable_to_published"])
    results = {
        "task": "jpeglm eval complete",
        "model": {"path": str(lm.path), "label": label, "profile": profile.name},
        "protocol": {"ratios": ratios, "prompt_mcus": {r: int(r * profile.mcu_count + 1e-9)
                                                       for r in ratios},
                     "images": len(items), "seeds": args.seeds, "grammar": args.grammar,
                     "sampling": runner.sampling_settings(args),
                     "real_images": "the evaluated images fitted to the profile size",
                     "sample_seed": "seed * 1000003 + image index (sorted ids)"},
        "feature_extractor": feat_info,
        "comparable_to_published": comparable,
        "fid": {r: report.seed_summary(fid[r]) for r in ratios},
        "fid_backend": args.fid_backend,
        "codec_roundtrip_fid": (metrics.fid(real, roundtrip, args.fid_backend, device)
                                if roundtrip is not None else None),
        "validity": {r: report.seed_summary(valid[r]) for r in ratios},
        "intact_mcu_fraction": {r: report.seed_summary(intact[r]) for r in ratios},
        "per_class": class_summary,
        "bits_per_byte": bpb,
        "samples": {"total": len(sets) * len(ids), "generated_this_run": generated,
                    "skipped_images": skipped},
    }
    report.write_json(out / "results.json", results)
    md = ["# JPEG-LM prompted completion\n",
          (f"{len(items)} images x {len(args.seeds)} seeds; FID (mean ± std over seeds), "
          f"{feat_info['name']} features; sampling {runner.sampling_settings(args)}"
          f"{', grammar-constrained' if args.grammar else ''}.\n"),
          report.fid_table(label, ratios, {r: list(fid[r].values()) for r in ratios}, comparable),
          "\n## Validity and intact MCUs\n",
          report.markdown_table(["metric"] + [report.ratio_label(r) for r in ratios], [
              ["validity rate (strict decode)"] + [f"{results['validity'][r]['mean']:.1%}"
                                                   for r in ratios],
              ["intact MCUs"] + [f"{results['intact_mcu_fraction'][r]['mean']:.1%}"
                                 for r in ratios]]),
          (f"\nCodec round trip FID (real images through the canonical JPEG, the floor at r = 1): "
          f"{report.fmt(results['codec_roundtrip_fid'])}\n")]
    if class_summary:
        md += ["\n## Per-class FID (long tail)\n",
               report.markdown_table(["r", "classes", "Spearman(FID, class frequency)", "p"], [
                   [report.ratio_label(r), v["classes"], report.fmt(v["spearman_rho"], 3),
                    report.fmt(v["spearman_p"], 4)] for r, v in class_summary.items()]),
               "\nPer class: per_class_fid.csv (FID averaged over seeds).\n"]
    if bpb:
        md.append(f"\nBits per byte on {bpb['path']}: {bpb['bpb']:.4f} ({bpb['tokens']} tokens, "
                  f"{bpb['bytes']} bytes)\n")
    report.write_text(out / "results.md", "\n".join(md))
    report.line_plot(out / "fid_vs_r.png", {
        label: (ratios, [results["fid"][r]["mean"] for r in ratios],
                [results["fid"][r]["std"] for r in ratios])}, "prompt ratio r", "FID",
        "Prompted completion" + ("" if comparable else " (pixels features)"))
    print(f"{out}: " + ", ".join(f"r={r:g} FID {report.fmt(results['fid'][r]['mean'])}"
                                 for r in ratios)
          + f"; {generated} samples generated now", file=sys.stderr)
    return 0


def _tag(r: float, s: int) -> str:
    from codeclm.eval.runner import ratio_tag

    return f"r{ratio_tag(r)}_seed{s}"


# ---------------------------------------------------------------------------- uncond
def run_uncond(args: argparse.Namespace) -> int:
    from codeclm.errors import ConfigError
    from codeclm.eval import extractors, metrics, report, runner
    from jpeglm import codec

    if args.samples is not None and args.samples < 2:
        raise ConfigError(f"--samples must be at least 2 for FID, got {args.samples}")
    out, quiet = Path(args.output), args.no_progress
    net, feat_info, lm, device = _setup(args)
    if args.samples is None:
        kind = "cuda" if str(lm.model.device).startswith("cuda") else "cpu"
        args.samples = UNCOND_SAMPLES[kind]
        if not quiet:
            print(f"eval uncond: {args.samples} images per seed x {len(args.seeds)} seeds on "
                  f"{kind} (the default there; the paper used 1000: --samples 1000); the "
                  f"progress bar shows the time left", file=sys.stderr)
    profile = lm.profile
    items = runner.select(runner.list_media(args.images, runner.IMAGE_EXTS), args.real_samples)
    ids = [f"{i:05d}" for i in range(args.samples)]
    prompts = [codec.header(profile)] * len(ids)
    store = runner.SampleStore(out)
    todo = sum(len(store.pending(f"uncond_seed{s}", ids, ".jpg")) for s in args.seeds)
    bar = runner.progress(total=todo, desc="generate", disable=quiet)
    generated = sum(_generate(args, lm, store, f"uncond_seed{s}", ids, prompts, s, bar)
                    for s in args.seeds)
    bar.close()

    real, _, skipped = _real_features(items, profile, net, args, device, quiet)
    if len(real) < 2:
        raise ConfigError(f"{args.images}: FID needs at least 2 held-out images")
    fid, valid = {}, {}
    for s in runner.progress(args.seeds, desc="metrics", disable=quiet):
        col = extractors.FeatureCollector(net, args.feature_batch, device)
        scores = [_score(store.path(f"uncond_seed{s}", i, ".jpg"), profile, col) for i in ids]
        fid[s] = metrics.fid(real, col.features(), args.fid_backend, device)
        valid[s] = sum(v for v, _ in scores) / len(scores)
    bpb = (runner.shard_bpb(lm, args.shards, max_blocks=args.bpb_blocks, show_progress=not quiet)
           if args.shards else None)
    label = runner.model_label(lm)
    comparable = bool(feat_info["comparable_to_published"])
    results = {
        "task": "jpeglm eval uncond",
        "model": {"path": str(lm.path), "label": label, "profile": profile.name},
        "protocol": {"generated_per_seed": len(ids), "real_images": len(real), "seeds": args.seeds,
                     "grammar": args.grammar, "sampling": runner.sampling_settings(args)},
        "feature_extractor": feat_info,
        "comparable_to_published": comparable,
        "fid": report.seed_summary(fid),
        "fid_backend": args.fid_backend,
        "validity": report.seed_summary(valid),
        "bits_per_byte": bpb,
        "samples": {"total": len(ids) * len(args.seeds), "generated_this_run": generated,
                    "skipped_real_images": skipped},
    }
    report.write_json(out / "results.json", results)
    rows = [[label if comparable else f"{label} (pixels features: not comparable to published FID)",
             report.fmt_mean_std(list(fid.values())), f"{results['validity']['mean']:.1%}"]]
    if comparable:
        rows += [[k, report.fmt(v), ""] for k, v in report.PUBLISHED_UNCOND_FID.items()]
    md = ["# JPEG-LM unconditional generation\n",
          (f"{len(ids)} images per seed x {len(args.seeds)} seeds against {len(real)} held-out "
          f"images; {feat_info['name']} features.\n"),
          report.markdown_table(["Model", "FID", "validity (strict decode)"], rows)]
    if bpb:
        md.append(f"\nBits per byte on {bpb['path']}: {bpb['bpb']:.4f}\n")
    report.write_text(out / "results.md", "\n".join(md))
    print(f"{out}: FID {report.fmt_mean_std(list(fid.values()))}, validity "
          f"{results['validity']['mean']:.1%}; {generated} samples generated now", file=sys.stderr)
    return 0
