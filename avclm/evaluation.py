"""AVC-LM's evaluation protocol as a library: prompted video continuation.

    >>> from avclm.evaluation import ContinueConfig, evaluate_continuation
    >>> results = evaluate_continuation(None, "clips/", "eval_video/",
    ...                                 ContinueConfig(prompt_frames=4, frames=4,
    ...                                                extractor="pixels"))

Each clip is encoded with the model's profile (the ground truth: that canonical clip,
decoded, cached as ``OUT/reference/{clip}.h264``); the model is prompted with the NAL
units of its first K frames and generates M more (:func:`avclm.generate.generate_video`);
frames K..K+M-1 are compared with the ground truth: PSNR and SSIM per frame index,
frame-level FID, validity (strict decode of the whole stream), the generator's retries
and substitutions, and bits per byte on held-out shards. A "repeat the last prompt
frame" baseline is measured beside the model. Samples are files
``OUT/samples/seed{s}/{clip}.h264`` (+ ``.json``); a re-run regenerates none of them.
:func:`evaluate_continuation` returns the results dict (the layout of ``results.json``);
:func:`write_continuation_report` writes ``results.json``, ``results.md`` and
``psnr_vs_frame.png`` from it. ``avclm eval continue`` is these two calls.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from codeclm.errors import CodecLMError, ConfigError, DecodeError
from codeclm.eval.protocol import ScoredEvalConfig


@dataclasses.dataclass
class ContinueConfig(ScoredEvalConfig):
    """The protocol's settings: those of :class:`codeclm.eval.protocol.ScoredEvalConfig`
    (seeds, sampling, device, features, bits per byte, guidance scale...), plus
    ``prompt_frames`` K and ``frames`` M (the paper: 10 and 5); ``samples``: clips drawn at
    random (seeded; None: all); ``max_nal_tokens`` / ``max_attempts`` / ``verify`` /
    ``continuation``: the generator's (None: its defaults; ``continuation`` is in the run
    record, so samples of the two modes never mix in one output folder). ``extractor``
    here: ``auto`` (Inception when ``weights`` or ``$CODECLM_INCEPTION_WEIGHTS`` is set,
    else no FID), ``inception``,
    ``pixels`` or ``none``. With a class-conditional model, clips in a folder named after
    one of its classes are continued with that class at ``cfg_scale``
    (:func:`codeclm.eval.classes.item_classes`)."""

    prompt_frames: int = 10
    frames: int = 5
    samples: int | None = None
    max_nal_tokens: int | None = None
    max_attempts: int | None = None
    verify: bool = True
    continuation: str = "seamless"
    extractor: str = "auto"

    def check(self) -> None:
        """Range checks that need no model (typed one-line errors)."""
        super().check()
        from avclm.renumber import check_continuation

        check_continuation(self.continuation)
        if self.prompt_frames < 1 or self.frames < 1:
            raise ConfigError(f"--prompt-frames and --frames must be >= 1 (got "
                              f"{self.prompt_frames}, {self.frames})")


def continuation_extractor(config: ContinueConfig) -> tuple[object, dict]:
    """``(feature net or None, info)`` for ``config.extractor``; fails at once when the
    Inception weights are missing (call it before any generation)."""
    from codeclm.eval import extractors, runner

    name = config.extractor
    if name == "auto":
        name = "inception" if (config.weights or os.environ.get(extractors.WEIGHTS_ENV)) else "none"
    if name == "none":
        return None, {"name": "none"}
    return extractors.build_extractor(name, config.weights,
                                      config.device or runner.default_device())


def evaluate_continuation(model, videos: str | os.PathLike, out: str | os.PathLike,
                          config: ContinueConfig | None = None, *, extractor=None) -> dict:
    """Run the protocol on the clips in ``videos`` (class subfolders allowed) with
    ``model`` (a ``LoadedModel``, a model directory, or None: the bundled one), samples
    under ``out``; return the results dict. ``extractor``: ``(net, info)`` from
    :func:`continuation_extractor` if already built. Raises typed errors."""
    from codeclm.eval import classes, protocol, run_record, runner

    config = config or ContinueConfig()
    config.check()
    net, feat_info = extractor if extractor is not None else continuation_extractor(config)
    lm = protocol.load_eval_model(model, "h264", config)
    K, M, profile, out = config.prompt_frames, config.frames, lm.profile, Path(out)
    if K + M > profile.frames:
        raise ConfigError(f"--prompt-frames {K} + --frames {M} = {K + M} frames, but a clip of "
                          f"profile {profile.name!r} holds {profile.frames}")
    items = runner.select(runner.list_media(videos, runner.VIDEO_EXTS), config.samples)
    run_record.start_run(out, continuation_record(run_record.loaded_identity(lm), config, videos),
                         config.overwrite)
    refs, skipped = reference_clips(items, profile, out, K + M, config.quiet)
    items = [it for it in items if it.id in refs]
    if not items:
        raise ConfigError(f"{videos}: no clip has the {K + M} frames the evaluation needs "
                          f"({len(skipped)} skipped: {skipped[0]['reason'] if skipped else ''})")
    store = runner.SampleStore(out)
    cond = classes.item_classes(lm, items)
    generated = generate_continuations(lm, store, items, refs, config, cond)
    scores = _Scores.of(config, net, refs, store, items, profile)
    bpb = (runner.shard_bpb(lm, config.shards, max_blocks=config.bpb_blocks,
                            show_progress=not config.quiet) if config.shards else None)
    return {
        "task": "avclm eval continue",
        "model": {"path": str(lm.path), "label": runner.model_label(lm), "profile": profile.name},
        "protocol": {"prompt_frames": K, "frames": M, "clips": len(items), "seeds": config.seeds,
                     "sampling": protocol.sampling_record(config.sampling),
                     "ground_truth": "the canonical encoding of each clip, decoded",
                     "sample_seed": "seed * 1000003 + clip index",
                     "conditioning": classes.conditioning_record(cond, config.cfg_scale)},
        "feature_extractor": feat_info,
        "comparable_to_published": bool(feat_info.get("comparable_to_published", False)),
        **scores.results(config),
        "bits_per_byte": bpb,
        "samples": {"total": scores.n_samples, "generated_this_run": generated,
                    "skipped_clips": skipped},
    }


def continuation_record(model: dict, config: ContinueConfig, videos) -> dict:
    """The run record (:mod:`codeclm.eval.run_record`) of ``eval continue`` with the
    model ``model`` (its identity) on the clips in ``videos``."""
    from codeclm.eval import run_record

    return run_record.run_record("avclm eval continue", model, config,
                                 prompts=run_record.prompt_folder(videos))


def reference_clips(items, profile, out: Path, need: int, quiet: bool) -> tuple[dict, list]:
    """Ground truth: each clip's canonical encoding (cached as OUT/reference/{clip}.h264).
    Returns ({clip id: bytes} for clips with at least ``need`` frames, skipped [{id, reason}])."""
    from avclm.codec import encode_video
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
        n = count_pictures(data)
        if n < need:
            skipped.append({"id": it.id, "reason": f"{n} frames, fewer than {need}"})
            continue
        refs[it.id] = data
    return refs, skipped


def generate_continuations(lm, store, items, refs: dict, config: ContinueConfig,
                           cond: dict | None = None) -> int:
    """Generate every (seed, clip) sample not on disk yet: OUT/samples/seed{s}/{clip}.h264
    (prompt + generated NAL units) and a .json beside it with the generator's counts
    (written first; the .h264 marks the sample done). ``cond``: ``{clip id: class or
    None}`` to continue each clip with (guidance ``config.cfg_scale``). Returns how many
    were generated."""
    from avclm.generate import DoneEvent, NalEvent, generate_video
    from codeclm.eval import protocol, report, runner
    from codeclm.eval.protocol import eval_scale

    K, M = config.prompt_frames, config.frames
    kwargs = {"verify": config.verify, "continuation": config.continuation}
    if config.max_nal_tokens is not None:
        kwargs["max_nal_tokens"] = config.max_nal_tokens
    if config.max_attempts is not None:
        kwargs["max_attempts"] = config.max_attempts
    ids = [it.id for it in items]
    todo = [(s, k) for s in config.seeds for k in store.pending(f"seed{s}", ids, ".h264")]
    bar = runner.progress(total=len(todo), desc="generate", disable=config.quiet)
    for s, k in todo:
        sampling = protocol.sample_config(config.sampling, s, k)
        nals, stats = [], {}
        name = (cond or {}).get(ids[k])
        guided = ({} if name is None else
                  {"class_name": name, "cfg_scale": eval_scale(config.cfg_scale)})
        for ev in generate_video(lm, M, prompt=refs[ids[k]], prompt_frames=K, config=sampling,
                                 **kwargs, **guided):
            if isinstance(ev, NalEvent):
                nals.append(ev.data)
            elif isinstance(ev, DoneEvent):
                stats = ev.stats
        meta = {"seed": s, "sample_seed": sampling.seed, "wall_s": stats.get("wall_s"),
                "class": name,
                **{k: stats.get(k, 0) for k in ("rejected", "replaced", "continuations",
                                                "resumes", "tokens_sampled")}}
        report.write_json(store.path(f"seed{s}", ids[k], ".json"), meta)
        store.write(f"seed{s}", ids[k], ".h264", b"".join(nals))
        bar.update(1)
    bar.close()
    return len(todo)


def count_pictures(data: bytes) -> int:
    """Pictures in a canonical stream (slices with first_mb_in_slice == 0)."""
    from avclm import nal as nalmod

    return sum(1 for u in nalmod.split_annexb(data)
               if nalmod.is_picture_nal(u) and nalmod.first_mb_in_slice(u) == 0)


@dataclasses.dataclass
class _Scores:
    """Per-frame-index metric lists (model and baseline), validity and sample metadata
    per seed, and the feature collectors, filled from the files on disk."""

    frames: range
    psnr: dict
    ssim: dict
    base_psnr: dict
    base_ssim: dict
    valid: dict
    meta: dict
    real: object
    fake: dict
    #: class -> {"psnr": [...], "ssim": [...], "valid": [...]} over its samples (clips in
    #: class subfolders only; a sample's PSNR/SSIM: mean over its generated frames)
    by_class: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, config: ContinueConfig, net, refs: dict, store, items, profile) -> _Scores:
        from avclm.stream import decode_annexb_with_stats
        from codeclm.eval import extractors, runner

        K, M = config.prompt_frames, config.frames
        dev = config.device or runner.default_device()

        def col():
            return extractors.FeatureCollector(net, config.feature_batch, dev)

        js = range(K, K + M)
        sc = cls(js, *({j: [] for j in js} for _ in range(4)),
                 {s: [] for s in config.seeds}, {s: [] for s in config.seeds},
                 col() if net is not None else None,
                 {s: col() for s in config.seeds} if net else {})
        for it in runner.progress(items, desc="metrics", disable=config.quiet):
            gt, _ = decode_annexb_with_stats(refs[it.id], profile, strict=True)
            sc.add_reference(gt, K)
            for s in config.seeds:
                sc.add_sample(s, gt, store.path(f"seed{s}", it.id, ".h264"), profile, K + M,
                              it.cls)
        return sc

    def add_reference(self, gt: list, K: int) -> None:
        from codeclm.eval import metrics

        if self.real is not None:
            for f in gt[self.frames.start:self.frames.stop]:
                self.real.add(f)
        for j in self.frames:
            self.base_psnr[j].append(metrics.psnr(gt[K - 1], gt[j]))
            self.base_ssim[j].append(metrics.ssim(gt[K - 1], gt[j]))

    def add_sample(self, s: int, gt: list, path: Path, profile, total: int,
                   cls: str | None = None) -> None:
        """Score one sample stream: tolerant decode for the metrics, strict for validity;
        ``cls``: the clip's class folder (its scores also go to :attr:`by_class`)."""
        import numpy as np

        from avclm.stream import decode_annexb_with_stats
        from codeclm.eval import metrics

        data = path.read_bytes()
        frames, dec = decode_annexb_with_stats(data, profile, strict=False)
        try:
            ok = len(decode_annexb_with_stats(data, profile, strict=True)[0]) == total
        except DecodeError:
            ok = False
        self.valid[s].append(ok)
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        meta.update(concealed_frames=dec.damaged_frames, frames_decoded=len(frames))
        self.meta[s].append(meta)
        grey = np.full_like(gt[0], 128)
        psnr, ssim = [], []
        for j in self.frames:
            f = frames[j] if j < len(frames) else grey
            psnr.append(metrics.psnr(gt[j], f))
            ssim.append(metrics.ssim(gt[j], f))
            self.psnr[j].append(psnr[-1])
            self.ssim[j].append(ssim[-1])
            if s in self.fake:
                self.fake[s].add(f)
        if cls is not None:
            per = self.by_class.setdefault(cls, {"psnr": [], "ssim": [], "valid": []})
            per["psnr"].append(float(np.mean(psnr)))
            per["ssim"].append(float(np.mean(ssim)))
            per["valid"].append(ok)

    @property
    def n_samples(self) -> int:
        return sum(len(v) for v in self.valid.values())

    def _fid(self, config: ContinueConfig) -> dict | None:
        from codeclm.eval import metrics, report, runner

        if self.real is None:
            return None
        dev = config.device or runner.default_device()
        real = self.real.features()
        fid = report.seed_summary({s: metrics.fid(real, col.features(), config.fid_backend, dev)
                                   for s, col in self.fake.items()})
        fid.update(frames_per_set=len(real), backend=config.fid_backend)
        return fid

    def results(self, config: ContinueConfig) -> dict:
        """The metric entries of the results dict."""
        from codeclm.eval import report

        def agg(d):
            return {j: dict(zip(("mean", "std"), report.mean_std(v))) for j, v in d.items()}

        n = self.n_samples
        metas = [m for v in self.meta.values() for m in v]
        rejected = sum(m.get("rejected", 0) for m in metas)
        replaced = sum(m.get("replaced", 0) for m in metas)
        return {
            "psnr_by_frame": agg(self.psnr),
            "ssim_by_frame": agg(self.ssim),
            "baseline_repeat_last_prompt_frame": {"psnr_by_frame": agg(self.base_psnr),
                                                  "ssim_by_frame": agg(self.base_ssim)},
            "psnr_mean": report.mean_std([x for v in self.psnr.values() for x in v])[0],
            "ssim_mean": report.mean_std([x for v in self.ssim.values() for x in v])[0],
            "fid": self._fid(config),
            "validity": {"rate": sum(sum(v) for v in self.valid.values()) / max(1, n),
                         "by_seed": {s: sum(v) / max(1, len(v)) for s, v in self.valid.items()},
                         "strict_decode": "every picture decodes cleanly and the stream holds K+M"},
            "verifier": {"rejected_nals": rejected, "replaced_nals": replaced,
                         "rejected_per_sample": rejected / max(1, n),
                         "replaced_per_sample": replaced / max(1, n),
                         "concealed_frames": sum(m.get("concealed_frames", 0) for m in metas)},
            "per_class": self.per_class(),
        }

    def per_class(self) -> dict | None:
        """``{class: {samples, psnr_mean, ssim_mean, validity}}`` (None: no class folders)."""
        if not self.by_class:
            return None
        return {c: {"samples": len(v["valid"]), "psnr_mean": sum(v["psnr"]) / len(v["psnr"]),
                    "ssim_mean": sum(v["ssim"]) / len(v["ssim"]),
                    "validity": sum(v["valid"]) / len(v["valid"])}
                for c, v in sorted(self.by_class.items())}


# ---------------------------------------------------------------------------- report files
def write_continuation_report(out: str | os.PathLike, results: dict) -> None:
    """``results.json``, ``results.md`` (PSNR/SSIM tables per frame index, other metrics)
    and ``psnr_vs_frame.png`` (model and baseline) in ``out``."""
    from codeclm.eval import report

    out = Path(out)
    label = results["model"]["label"]
    K, M = results["protocol"]["prompt_frames"], results["protocol"]["frames"]
    report.write_json(out / "results.json", results)
    report.write_text(out / "results.md", continuation_markdown(results, label, K, M))
    frames_idx = list(range(K, K + M))
    report.line_plot(out / "psnr_vs_frame.png", {
        label: (frames_idx, [results["psnr_by_frame"][j]["mean"] for j in frames_idx],
                [results["psnr_by_frame"][j]["std"] for j in frames_idx]),
        "repeat last prompt frame": (frames_idx, [results["baseline_repeat_last_prompt_frame"]
                                                  ["psnr_by_frame"][j]["mean"] for j in frames_idx],
                                     None)},
        "frame index", "PSNR (dB)", f"Continuation after {K} prompt frames")


def continuation_markdown(res: dict, label: str, K: int, M: int) -> str:
    """``results.md``: the PSNR and SSIM tables per frame index, then the other metrics."""
    from codeclm.eval import report

    cols = [f"frame {j}" for j in range(K, K + M)]
    base = res["baseline_repeat_last_prompt_frame"]

    def table(key: str, digits: int) -> str:
        return report.markdown_table(["Model"] + cols, [
            [label] + [report.fmt(res[key][j]["mean"], digits) for j in range(K, K + M)],
            ["repeat last prompt frame"] + [report.fmt(base[key][j]["mean"], digits)
                                            for j in range(K, K + M)]])

    out = [f"# AVC-LM prompted continuation ({K} prompt frames, {M} generated)\n",
           (f"{res['protocol']['clips']} clips x {len(res['protocol']['seeds'])} seeds; "
            f"sampling {res['protocol']['sampling']}.\n"),
           "## PSNR (dB) per frame index\n", table("psnr_by_frame", 2),
           "\n## SSIM per frame index\n", table("ssim_by_frame", 4),
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
    if res.get("per_class"):
        cond = res["protocol"].get("conditioning") or {}
        how = (f"continued with their class, cfg scale {cond['cfg_scale']:g}"
               if cond.get("class_conditional") else "unconditional model")
        out += [f"\n## Per class ({how})\n", report.markdown_table(
            ["class", "samples", "PSNR (dB)", "SSIM", "validity"],
            [[c, v["samples"], report.fmt(v["psnr_mean"]), report.fmt(v["ssim_mean"], 4),
              f"{v['validity']:.1%}"] for c, v in res["per_class"].items()])]
    return "\n".join(out)


# ---------------------------------------------------------------------------- classes
@dataclasses.dataclass
class ClipClasses:
    """The video part of :func:`codeclm.eval.classes.evaluate_classes` (``avclm eval
    classes``): clips of ``frames`` frames generated from nothing (``generate_video``
    with the class and scale; ``verify``, ``max_nal_tokens``, ``max_attempts``: the
    generator's, None: its defaults). The classifier sees
    :func:`codeclm.eval.class_accuracy.clip_features` (first frame and frame
    ``frames - 1``) of each training clip as the model saw it (its canonical encoding at
    the model's profile, decoded) and of each sample (tolerant decode); a sample is
    valid when the whole stream decodes strictly with ``frames`` pictures."""

    frames: int = 4
    verify: bool = True
    max_nal_tokens: int | None = None
    max_attempts: int | None = None
    task: str = "avclm eval classes"
    modality: str = "h264"
    ext: str = ".h264"

    def check(self, profile) -> None:
        if not 1 <= self.frames <= profile.frames:
            raise ConfigError(f"--frames must be between 1 and {profile.frames} (a clip of "
                              f"profile {profile.name!r}), got {self.frames}")

    def fit(self, lm, train_dir: Path):
        from avclm.codec import encode_video
        from avclm.stream import decode_annexb
        from codeclm.eval import runner
        from codeclm.eval.class_accuracy import CentroidClassifier, clip_features

        self.check(lm.profile)
        vectors: dict[str, list] = {}
        for it in runner.list_media(train_dir, runner.VIDEO_EXTS):
            if it.cls is None:
                continue
            frames = decode_annexb(encode_video(it.path, lm.profile), lm.profile, strict=False)
            vectors.setdefault(it.cls, []).append(clip_features(frames, self.frames))
        if not vectors:
            raise ConfigError(f"{train_dir}: no clips in class folders ({train_dir}/<class>/...)")
        return CentroidClassifier.fit_vectors(vectors)

    def generate(self, lm, name: str, scale: float, n: int, sampling, batch: int) -> list[bytes]:
        from avclm.generate import NalEvent, generate_video

        kwargs = {k: v for k, v in (("max_nal_tokens", self.max_nal_tokens),
                                    ("max_attempts", self.max_attempts)) if v is not None}
        out: list[bytes] = []
        for start in range(0, n, batch):
            rows = min(batch, n - start)
            nals: dict[int, list[bytes]] = {r: [] for r in range(rows)}
            for ev in generate_video(lm, self.frames, batch=rows, verify=self.verify,
                                     config=dataclasses.replace(sampling,
                                                                seed=sampling.seed + start),
                                     class_name=name, cfg_scale=scale, **kwargs):
                if isinstance(ev, NalEvent):
                    nals[ev.row].append(ev.data)
            out += [b"".join(nals[r]) for r in range(rows)]
        return out

    def score(self, lm, data: bytes):
        import numpy as np

        from avclm.stream import decode_annexb
        from codeclm.eval.class_accuracy import clip_features

        p = lm.profile
        frames = decode_annexb(data, p, strict=False) or [np.full((p.height, p.width, 3), 128,
                                                                  np.uint8)]
        try:
            ok = len(decode_annexb(data, p, strict=True)) == self.frames
        except DecodeError:
            ok = False
        return clip_features(frames, self.frames), ok

    def protocol(self) -> dict:
        return {"frames": self.frames, "verify": self.verify}
