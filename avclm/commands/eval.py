"""Evaluate an AVC-LM model: prompted video continuation (paper: 10 prompt frames, 5 generated).

  avclm eval continue --model DIR --videos DIR -o OUT [--prompt-frames 10] [--frames 5]
                      [--samples N] [--seeds 0 1 2] [--extractor auto|inception|pixels]
                      [--weights PATH] [--shards DIR] [sampling flags]

Each clip is encoded with the model's profile; the model is prompted with the NAL units
of its first K frames and generates M more (``avclm.generate.generate_video``: NAL verification,
retries, canonical substitutes; ``--no-verify``: the header gate only); the stream is decoded (tolerant) and frames K..K+M-1 are
compared with the ground truth (the canonical clip, decoded): PSNR and SSIM per frame
index, frame-level FID (Inception with --weights, or --extractor pixels), validity rate
(strict decode of the whole stream), retries and substitutions, and bits per byte on
held-out shards (--shards). A "repeat last prompt frame" baseline is measured beside
the model. Writes OUT/results.json, OUT/results.md, OUT/psnr_vs_frame.png; samples go
to OUT/samples/seed{s}/{clip}.h264 (a re-run skips the ones that exist).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SUBVERBS = ("continue",)


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
    runner.add_common_arguments(p, batch=False)
    runner.add_fid_arguments(p, choices=("auto", "inception", "pixels", "none"), default="auto",
                             help="frame FID features: auto (inception when --weights or "
                                  "$CODECLM_INCEPTION_WEIGHTS is set, else no FID), inception, "
                                  "pixels (weight-free, not comparable to published FID) or none")


def run(args: argparse.Namespace) -> int:
    if args.sub == "continue":
        return run_continue(args)
    raise AssertionError(args.sub)


# ---------------------------------------------------------------------------- continue
def run_continue(args: argparse.Namespace) -> int:
    import os

    import numpy as np

    from avclm.stream import decode_annexb_with_stats
    from codeclm.errors import ConfigError, DecodeError
    from codeclm.eval import extractors, metrics, report, runner
    from codeclm.generation.loading import load_model

    runner.check_common(args)
    K, M = args.prompt_frames, args.frames
    if K < 1 or M < 1:
        raise ConfigError(f"--prompt-frames and --frames must be >= 1 (got {K}, {M})")
    out = Path(args.output)
    quiet = args.no_progress

    # FID extractor first: a missing weights file fails before any generation
    extractor_name = args.extractor
    if extractor_name == "auto":
        extractor_name = ("inception" if (args.weights or os.environ.get(extractors.WEIGHTS_ENV))
                          else "none")
    net, feat_info = None, {"name": "none"}
    if extractor_name != "none":
        net, feat_info = extractors.build_extractor(extractor_name, args.weights,
                                                    args.device or runner.default_device())

    dtype = None
    if args.dtype:
        import torch

        dtype = getattr(torch, args.dtype)
    lm = load_model(args.model, "h264", args.device, dtype, threads=args.threads)
    profile = lm.profile
    if K + M > profile.frames:
        raise ConfigError(f"--prompt-frames {K} + --frames {M} = {K + M} frames, but a clip of "
                          f"profile {profile.name!r} holds {profile.frames}")
    items = runner.select(runner.list_media(args.videos, runner.VIDEO_EXTS), args.samples)

    refs, skipped = _references(items, profile, out, K + M, quiet)
    items = [it for it in items if it.id in refs]
    if not items:
        raise ConfigError(f"{args.videos}: no clip has the {K + M} frames the evaluation needs "
                          f"({len(skipped)} skipped: {skipped[0]['reason'] if skipped else ''})")
    store = runner.SampleStore(out)
    generated = _generate_missing(args, lm, store, items, refs, quiet)

    # metrics, recomputed from the files
    psnr_by_frame = {j: [] for j in range(K, K + M)}
    ssim_by_frame = {j: [] for j in range(K, K + M)}
    base_psnr = {j: [] for j in range(K, K + M)}
    base_ssim = {j: [] for j in range(K, K + M)}
    valid = {s: [] for s in args.seeds}
    sample_meta = {s: [] for s in args.seeds}
    dev = args.device or runner.default_device()
    fb = getattr(args, "feature_batch", 32)
    real_col = extractors.FeatureCollector(net, fb, dev) if net is not None else None
    fake_cols = {s: extractors.FeatureCollector(net, fb, dev) for s in args.seeds} if net else {}
    for it in runner.progress(items, desc="metrics", disable=quiet):
        gt, _ = decode_annexb_with_stats(refs[it.id], profile, strict=True)
        if real_col is not None:
            for f in gt[K:K + M]:
                real_col.add(f)
        for j in range(K, K + M):
            base_psnr[j].append(metrics.psnr(gt[K - 1], gt[j]))
            base_ssim[j].append(metrics.ssim(gt[K - 1], gt[j]))
        for s in args.seeds:
            data = store.path(f"seed{s}", it.id, ".h264").read_bytes()
            frames, dec = decode_annexb_with_stats(data, profile, strict=False)
            try:
                strict_frames = decode_annexb_with_stats(data, profile, strict=True)[0]
                ok = len(strict_frames) == K + M
            except DecodeError:
                ok = False
            valid[s].append(ok)
            meta_path = store.path(f"seed{s}", it.id, ".json")
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            meta.update(concealed_frames=dec.damaged_frames, frames_decoded=len(frames))
            sample_meta[s].append(meta)
            grey = np.full_like(gt[0], 128)
            for j in range(K, K + M):
                f = frames[j] if j < len(frames) else grey
                psnr_by_frame[j].append(metrics.psnr(gt[j], f))
                ssim_by_frame[j].append(metrics.ssim(gt[j], f))
                if s in fake_cols:
                    fake_cols[s].add(f)

    fid = None
    if real_col is not None:
        real_feats = real_col.features()
        fid = report.seed_summary({s: metrics.fid(real_feats, col.features(), args.fid_backend, dev)
                                   for s, col in fake_cols.items()})
        fid.update(frames_per_set=len(real_feats), backend=args.fid_backend)

    bpb = None
    if args.shards:
        bpb = runner.shard_bpb(lm, args.shards, max_blocks=args.bpb_blocks, show_progress=not quiet)

    def agg(d):
        return {j: dict(zip(("mean", "std"), report.mean_std(v))) for j, v in d.items()}

    n_samples = sum(len(v) for v in valid.values())
    rejected = sum(m.get("rejected", 0) for v in sample_meta.values() for m in v)
    replaced = sum(m.get("replaced", 0) for v in sample_meta.values() for m in v)
    label = runner.model_label(lm)
    results = {
        "task": "avclm eval continue",
        "model": {"path": str(lm.path), "label": label, "profile": profile.name},
        "protocol": {"prompt_frames": K, "frames": M, "clips": len(items), "seeds": args.seeds,
                     "sampling": runner.sampling_settings(args),
                     "ground_truth": "the canonical encoding of each clip, decoded",
                     "sample_seed": "seed * 1000003 + clip index"},
        "feature_extractor": feat_info,
        "comparable_to_published": bool(feat_info.get("comparable_to_published", False)),
        "psnr_by_frame": agg(psnr_by_frame),
        "ssim_by_frame": agg(ssim_by_frame),
        "baseline_repeat_last_prompt_frame": {"psnr_by_frame": agg(base_psnr),
                                              "ssim_by_frame": agg(base_ssim)},
        "psnr_mean": report.mean_std([x for v in psnr_by_frame.values() for x in v])[0],
        "ssim_mean": report.mean_std([x for v in ssim_by_frame.values() for x in v])[0],
        "fid": fid,
        "validity": {"rate": sum(sum(v) for v in valid.values()) / max(1, n_samples),
                     "by_seed": {s: sum(v) / max(1, len(v)) for s, v in valid.items()},
                     "strict_decode": "every picture decodes cleanly and the stream holds K+M"},
        "verifier": {"rejected_nals": rejected, "replaced_nals": replaced,
                     "rejected_per_sample": rejected / max(1, n_samples),
                     "replaced_per_sample": replaced / max(1, n_samples),
                     "concealed_frames": sum(m.get("concealed_frames", 0)
                                             for v in sample_meta.values() for m in v)},
        "bits_per_byte": bpb,
        "samples": {"total": n_samples, "generated_this_run": generated,
                    "skipped_clips": skipped},
    }
    report.write_json(out / "results.json", results)
    report.write_text(out / "results.md", _markdown(results, label, K, M))
    frames_idx = list(range(K, K + M))
    report.line_plot(out / "psnr_vs_frame.png", {
        label: (frames_idx, [results["psnr_by_frame"][j]["mean"] for j in frames_idx],
                [results["psnr_by_frame"][j]["std"] for j in frames_idx]),
        "repeat last prompt frame": (frames_idx, [results["baseline_repeat_last_prompt_frame"]
                                                  ["psnr_by_frame"][j]["mean"] for j in frames_idx],
                                     None)},
        "frame index", "PSNR (dB)", f"Continuation after {K} prompt frames")
    print(f"{out}: {n_samples} samples ({generated} generated now), PSNR "
          f"{report.fmt(results['psnr_mean'])} dB, SSIM {report.fmt(results['ssim_mean'], 4)}, "
          f"validity {results['validity']['rate']:.1%}"
          + (f", FID {report.fmt(fid['mean'])}" if fid else ""), file=sys.stderr)
    return 0


def _references(items, profile, out: Path, need: int, quiet: bool) -> tuple[dict, list]:
    """Ground truth: each clip's canonical encoding (cached as OUT/reference/{clip}.h264).
    Returns ({clip id: bytes} for clips with at least ``need`` frames, skipped [{id, reason}])."""
    from avclm.codec import encode_video
    from codeclm.errors import CodecLMError
    from codeclm.eval import runner
    from codeclm.io import atomic_write_bytes

    refs, skipped = {}, []
    for it in runner.progress(items, desc="encode", disable=quiet):
        path = out / "reference" / f"{it.id}.h264"
        try:
            if path.is_file():
                data = path.read_bytes()
            else:
                data = encode_video(it.path, profile)
                atomic_write_bytes(path, data)
        except CodecLMError as e:
            skipped.append({"id": it.id, "reason": str(e)})
            continue
        n = _count_pictures(data)
        if n < need:
            skipped.append({"id": it.id, "reason": f"{n} frames, fewer than {need}"})
            continue
        refs[it.id] = data
    return refs, skipped


def _generate_missing(args, lm, store, items, refs: dict, quiet: bool) -> int:
    """Generate every (seed, clip) sample not on disk yet: OUT/samples/seed{s}/{clip}.h264
    (prompt + generated NAL units) and a .json beside it with the generator's counts
    (written first; the .h264 marks the sample done). Returns how many were generated."""
    from avclm.generate import DoneEvent, NalEvent, generate_video
    from codeclm.eval import report, runner

    K, M = args.prompt_frames, args.frames
    kwargs = {"verify": not args.no_verify}
    if args.max_nal_tokens is not None:
        kwargs["max_nal_tokens"] = args.max_nal_tokens
    if args.max_attempts is not None:
        kwargs["max_attempts"] = args.max_attempts
    ids = [it.id for it in items]
    todo = [(s, k) for s in args.seeds for k in store.pending(f"seed{s}", ids, ".h264")]
    bar = runner.progress(total=len(todo), desc="generate", disable=quiet)
    for s, k in todo:
        config = runner.sampling_config(args, runner.sample_seed(s, k))
        nals, stats = [], {}
        for ev in generate_video(lm, M, prompt=refs[ids[k]], prompt_frames=K, config=config,
                                 **kwargs):
            if isinstance(ev, NalEvent):
                nals.append(ev.data)
            elif isinstance(ev, DoneEvent):
                stats = ev.stats
        meta = {"seed": s, "sample_seed": config.seed, "wall_s": stats.get("wall_s"),
                **{k: stats.get(k, 0) for k in ("rejected", "replaced", "continuations",
                                                "tokens_sampled")}}
        report.write_json(store.path(f"seed{s}", ids[k], ".json"), meta)
        store.write(f"seed{s}", ids[k], ".h264", b"".join(nals))
        bar.update(1)
    bar.close()
    return len(todo)


def _count_pictures(data: bytes) -> int:
    """Pictures in a canonical stream (slices with first_mb_in_slice == 0)."""
    from avclm import nal as nalmod

    n = 0
    for u in nalmod.split_annexb(data):
        if nalmod.is_picture_nal(u) and nalmod.first_mb_in_slice(u) == 0:
            n += 1
    return n


def _markdown(res: dict, label: str, K: int, M: int) -> str:
    from codeclm.eval import report

    cols = [f"frame {j}" for j in range(K, K + M)]
    base = res["baseline_repeat_last_prompt_frame"]
    out = [f"# AVC-LM prompted continuation ({K} prompt frames, {M} generated)\n",
           (f"{res['protocol']['clips']} clips x {len(res['protocol']['seeds'])} seeds; "
           f"sampling {res['protocol']['sampling']}.\n"),
           "## PSNR (dB) per frame index\n",
           report.markdown_table(["Model"] + cols, [
               [label] + [report.fmt(res["psnr_by_frame"][j]["mean"]) for j in range(K, K + M)],
               ["repeat last prompt frame"] + [report.fmt(base["psnr_by_frame"][j]["mean"])
                                               for j in range(K, K + M)]]),
           "\n## SSIM per frame index\n",
           report.markdown_table(["Model"] + cols, [
               [label] + [report.fmt(res["ssim_by_frame"][j]["mean"], 4) for j in range(K, K + M)],
               ["repeat last prompt frame"] + [report.fmt(base["ssim_by_frame"][j]["mean"], 4)
                                               for j in range(K, K + M)]]),
           "\n## Other metrics\n"]
    fid = res["fid"]
    fid_txt = "not computed (no Inception weights; pass --weights or --extractor pixels)"
    if fid:
        fid_txt = report.fmt_mean_std(list(fid["by_seed"].values())) + (
            "" if res["comparable_to_published"] else
            " (pixels features: not comparable to published FID)")
    bpb = res["bits_per_byte"]
    rows = [["frame FID (generated frames)", fid_txt],
            ["validity rate (strict decode)", f"{res['validity']['rate']:.1%}"],
            ["rejected NALs per sample", report.fmt(res["verifier"]["rejected_per_sample"])],
            ["substituted NALs per sample", report.fmt(res["verifier"]["replaced_per_sample"])],
            ["bits per byte (held-out shards)", report.fmt(bpb["bpb"], 4) if bpb else "n/a"]]
    out.append(report.markdown_table(["metric", "value"], rows))
    return "\n".join(out)
