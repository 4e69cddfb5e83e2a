"""JPEG-LM's evaluation protocols as a library: prompted completion and unconditional FID.

    >>> from jpeglm.evaluation import CompleteConfig, evaluate_completion
    >>> results = evaluate_completion(None, "val/", "eval/",
    ...                               CompleteConfig(ratios=[0.5], extractor="pixels"))

complete: every image (class subfolders = classes) is encoded with the model's profile;
for each r the model is prompted with the header and the first r of the MCUs
(``jpeglm.codec.prompt_prefix``) and samples to EOS (the JPEG grammar on unless
``grammar=False``). FID of the completions (tolerant decode) against the real images at
the profile's size, per r and seed, and per class (``OUT/per_class_fid.csv``); validity
rate = strict decode; bits per byte on held-out shards. uncond: N images per seed from
the header alone, FID against a held-out folder.

Samples are files ``OUT/samples/<set>/<image>.jpg`` (standalone JPEGs of the bytes as
sampled); a re-run regenerates none of them. ``evaluate_*`` return the results dict (the
layout of ``results.json``); ``write_*_report`` write ``results.json``, ``results.md``
and the plot. ``jpeglm eval complete|uncond`` are these calls.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from codeclm.errors import ConfigError, DecodeError, EncodeError, InputError
from codeclm.eval.protocol import ScoredEvalConfig

#: ``eval uncond`` images per seed by default: the paper's 1000 where a GPU makes that a
#: matter of minutes; on a CPU (about 10-30 s per image for a 7B-class model, hours for
#: 1000 x 3 seeds even with the tiny models) a count that finishes while you wait
UNCOND_SAMPLES = {"cuda": 1000, "cpu": 50}


@dataclasses.dataclass
class ImageEvalConfig(ScoredEvalConfig):
    """Settings both image protocols share: those of
    :class:`codeclm.eval.protocol.ScoredEvalConfig` (seeds, sampling, batch, device,
    features, bits per byte, guidance scale...), plus ``grammar``: the JPEG scan grammar
    (False: free sampling, as the paper), ``finish_early`` (an MCU the model would end
    early is finished plainly; False: ``--no-finish-early``) and ``max_tokens`` /
    ``max_mcu_tokens``: the generator's limits."""

    grammar: bool = True
    finish_early: bool = True
    max_tokens: int | None = None
    max_mcu_tokens: int | None = None


@dataclasses.dataclass
class CompleteConfig(ImageEvalConfig):
    """Prompted completion: ``ratios`` r (fraction of MCUs given), ``samples`` images drawn
    at random (seeded; None: all), ``class_counts`` (CSV or JSON of training-set class
    counts for the long-tail table; None: class shares of the evaluated folder). With a
    class-conditional model, an image in a folder named after one of its classes is
    completed with that class (:func:`codeclm.eval.classes.item_classes`)."""

    ratios: list[float] = dataclasses.field(default_factory=lambda: [0.25, 0.5, 0.75])
    samples: int | None = None
    class_counts: str | os.PathLike | None = None

    def check(self) -> None:
        super().check()
        ratios = [float(r) for r in self.ratios]
        if any(not 0.0 <= r < 1.0 for r in ratios) or len(set(ratios)) != len(ratios):
            raise ConfigError(f"--ratios must be distinct values in [0, 1): {self.ratios}")


@dataclasses.dataclass
class UncondConfig(ImageEvalConfig):
    """Unconditional generation: ``samples`` images per seed (None: ``UNCOND_SAMPLES`` for
    the model's device), ``real_samples`` held-out images drawn at random (None: all).
    ``class_name``: a class-conditional model's class to ask every sample for (guidance
    ``cfg_scale``); FID is then against the held-out images of that class (the
    subfolder of that name, or all images when there is none)."""

    samples: int | None = None
    real_samples: int | None = None
    class_name: str | None = None

    def check(self) -> None:
        super().check()
        if self.samples is not None and self.samples < 2:
            raise ConfigError(f"--samples must be at least 2 for FID, got {self.samples}")


def image_extractor(config: ImageEvalConfig) -> tuple[object, dict]:
    """``(feature net, info)`` for ``config.extractor``; fails at once when the Inception
    weights are missing (call it before any generation)."""
    from codeclm.eval import extractors, runner

    return extractors.build_extractor(config.extractor, config.weights,
                                      config.device or runner.default_device())


# ---------------------------------------------------------------------------- shared steps
def _class_runs(indices: list[int], classes: list[str | None] | None) -> list[list[int]]:
    """Sorted ``indices`` -> runs of consecutive numbers of one class (as
    :func:`codeclm.eval.runner.runs`, also split where ``classes[k]`` changes)."""
    out: list[list[int]] = []
    for k in indices:
        if out and k == out[-1][-1] + 1 and (classes is None or classes[k] == classes[k - 1]):
            out[-1].append(k)
        else:
            out.append([k])
    return out


def generate_set(lm, store, tag: str, ids: list[str], prompts: list[bytes], seed: int,
                 config: ImageEvalConfig, bar, classes: list[str | None] | None = None) -> int:
    """Generate the missing samples of one set (``ids[k]`` from ``prompts[k]``, asked for
    class ``classes[k]`` when given and not None, guidance ``config.cfg_scale``), each
    with generator seed ``sample_seed(seed, k)``; write each as a standalone JPEG of the
    bytes as sampled. Returns how many were generated."""
    from codeclm.eval import protocol
    from codeclm.eval.protocol import eval_scale
    from jpeglm import codec
    from jpeglm.generate import ImageEvent, McuEvent, generate_images

    made = 0
    for run_ in _class_runs(store.pending(tag, ids, ".jpg"), classes):
        chunk = [prompts[k] for k in run_]
        units: dict[int, list[bytes]] = {i: [] for i in range(len(chunk))}
        sampling = protocol.sample_config(config.sampling, seed, run_[0])
        name = classes[run_[0]] if classes is not None else None
        guided = ({} if name is None else
                  {"class_name": name, "cfg_scale": eval_scale(config.cfg_scale)})
        for ev in generate_images(lm, prompts=chunk, batch=config.batch, config=sampling,
                                  grammar=config.grammar, finish_early=config.finish_early,
                                  max_tokens=config.max_tokens,
                                  max_mcu_tokens=config.max_mcu_tokens, **guided):
            if isinstance(ev, McuEvent):
                units[ev.sample].append(ev.data)
            elif isinstance(ev, ImageEvent):
                raw = chunk[ev.sample] + b"".join(units.pop(ev.sample))
                store.write(tag, ids[run_[ev.sample]], ".jpg", codec.to_jpeg(raw, lm.profile))
                made += 1
                bar.update(1)
    return made


def score_sample(path: Path, profile, collector) -> tuple[bool, int]:
    """Feed a sample's tolerant decode to ``collector``; (strictly valid, intact MCUs)."""
    import numpy as np

    from jpeglm import codec

    data = path.read_bytes()
    img, n_intact = codec.decode_tolerant(data, profile)
    collector.add(np.asarray(img, np.uint8))
    try:
        codec.check(data, profile)
        return True, n_intact
    except DecodeError:
        return False, n_intact


def real_features(items, profile, net, config: ImageEvalConfig, modeled: dict | None = None):
    """Features of the real images at the profile's size (``codec.prepare``) and, given
    their ``modeled`` bytes, of their canonical JPEG round trip (the codec's own FID floor).
    Returns (features, round-trip features or None, skipped [{id, reason}])."""
    import numpy as np

    from codeclm.eval import extractors, runner
    from jpeglm import codec

    device = config.device or runner.default_device()
    real = extractors.FeatureCollector(net, config.feature_batch, device)
    rt = extractors.FeatureCollector(net, config.feature_batch, device) if modeled else None
    skipped = []
    for it in runner.progress(items, desc="real features", disable=config.quiet):
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


def completion_record(model: dict, config: CompleteConfig, images) -> dict:
    """The run record (:mod:`codeclm.eval.run_record`) of ``eval complete`` with the
    model ``model`` (its identity) on the images in ``images``."""
    from codeclm.eval import run_record

    return run_record.run_record("jpeglm eval complete", model, config,
                                 prompts=run_record.prompt_folder(images))


def uncond_record(model: dict, config: UncondConfig) -> dict:
    """The run record of ``eval uncond`` (the held-out images never change a sample)."""
    from codeclm.eval import run_record

    return run_record.run_record("jpeglm eval uncond", model, config)


def completion_tag(r: float, s: int) -> str:
    """The sample folder of ratio ``r``, seed ``s``: ``r0.5_seed1``."""
    from codeclm.eval.runner import ratio_tag

    return f"r{ratio_tag(r)}_seed{s}"


def _bpb(lm, config: ImageEvalConfig) -> dict | None:
    from codeclm.eval import runner

    if not config.shards:
        return None
    return runner.shard_bpb(lm, config.shards, max_blocks=config.bpb_blocks,
                            show_progress=not config.quiet)


def _header(task: str, lm) -> dict:
    """The results' first entries: task and model."""
    from codeclm.eval import runner

    return {"task": task, "model": {"path": str(lm.path), "label": runner.model_label(lm),
                                    "profile": lm.profile.name}}


# ---------------------------------------------------------------------------- complete
def evaluate_completion(model, images: str | os.PathLike, out: str | os.PathLike,
                        config: CompleteConfig | None = None, *, extractor=None) -> dict:
    """Prompted completion of the images in ``images`` (class subfolders allowed) with
    ``model`` (a ``LoadedModel``, a model directory, or None: the bundled one), samples
    under ``out`` (and ``per_class_fid.csv`` when there are classes); returns the results
    dict. ``extractor``: ``(net, info)`` from :func:`image_extractor` if already built."""
    from codeclm.eval import classes as class_eval
    from codeclm.eval import protocol, run_record, runner
    from jpeglm import codec

    config = config or CompleteConfig()
    config.check()
    net, feat_info = extractor if extractor is not None else image_extractor(config)
    lm = protocol.load_eval_model(model, "jpeg", config)
    ratios, profile, out = [float(r) for r in config.ratios], lm.profile, Path(out)
    all_items = runner.list_media(images, runner.IMAGE_EXTS)
    items, modeled, skipped = _valid_items(runner.select(all_items, config.samples), profile)
    items, too_long = _fitting_prompts(items, modeled, ratios, lm)
    for s in too_long:
        print(f"skipped {s['id']}: {s['reason']}", file=sys.stderr)
    skipped += too_long
    if len(items) < 2:
        raise ConfigError(f"{images}: FID needs at least 2 readable images, found {len(items)}")
    run_record.start_run(out, completion_record(run_record.loaded_identity(lm), config, images),
                         config.overwrite)
    ids = [it.id for it in items]
    cond = class_eval.item_classes(lm, items)
    store = runner.SampleStore(out)
    sets = [(r, s) for r in ratios for s in config.seeds]
    todo = sum(len(store.pending(completion_tag(r, s), ids, ".jpg")) for r, s in sets)
    bar = runner.progress(total=todo, desc="generate", disable=config.quiet)
    generated = 0
    for r, s in sets:
        prompts = [codec.prompt_prefix(modeled[i], r, profile) for i in ids]
        generated += generate_set(lm, store, completion_tag(r, s), ids, prompts, s, config, bar,
                                  [cond[i] for i in ids])
    bar.close()
    scores = _completion_scores(lm, store, items, all_items, modeled, sets, net, config, out)
    results = _completion_results(lm, feat_info, config, ratios, len(items), scores)
    results["protocol"]["conditioning"] = class_eval.conditioning_record(cond, config.cfg_scale)
    results["samples"] = {"total": len(sets) * len(ids), "generated_this_run": generated,
                          "skipped_images": skipped}
    return results


def _completion_scores(lm, store, items, all_items, modeled, sets, net, config, out) -> dict:
    """FID, validity and intact MCUs per (r, seed), the codec round trip FID, the per-class
    summary (writing ``per_class_fid.csv``) and bits per byte."""
    from codeclm.eval import extractors, longtail, metrics, report, runner

    profile, ratios = lm.profile, [float(r) for r in config.ratios]
    device = config.device or runner.default_device()
    ids = [it.id for it in items]
    real, roundtrip, _ = real_features(items, profile, net, config, modeled)
    classes = [it.cls for it in items]
    freq = longtail.class_frequencies(all_items, config.class_counts)
    fid, valid, intact, per_class, class_valid = {}, {}, {}, {}, {}
    for r, s in runner.progress(sets, desc="metrics", disable=config.quiet):
        col = extractors.FeatureCollector(net, config.feature_batch, device)
        scores = [score_sample(store.path(completion_tag(r, s), i, ".jpg"), profile, col)
                  for i in ids]
        fake = col.features()
        fid.setdefault(r, {})[s] = metrics.fid(real, fake, config.fid_backend, device)
        valid.setdefault(r, {})[s] = sum(v for v, _ in scores) / len(scores)
        intact.setdefault(r, {})[s] = sum(n for _, n in scores) / (len(scores) * profile.mcu_count)
        if any(c is not None for c in classes):
            per_class.setdefault(r, {})[s] = metrics.grouped_fid(real, fake, classes)
            for c, (v, _) in zip(classes, scores):
                if c is not None:
                    class_valid.setdefault(r, {}).setdefault(c, []).append(v)
    class_rows, class_summary = longtail.per_class_rows(per_class, freq, ratios)
    if class_rows:
        report.write_csv(out / "per_class_fid.csv", longtail.CSV_HEADER, class_rows)
    return {"fid": fid, "valid": valid, "intact": intact, "per_class": class_summary,
            "class_validity": {r: {c: sum(v) / len(v) for c, v in sorted(by.items())}
                               for r, by in class_valid.items()},
            "roundtrip": (metrics.fid(real, roundtrip, config.fid_backend, device)
                          if roundtrip is not None else None),
            "bpb": _bpb(lm, config)}


def _completion_results(lm, feat_info, config, ratios, n_images, sc) -> dict:
    from codeclm.eval import protocol, report

    profile = lm.profile
    return {
        **_header("jpeglm eval complete", lm),
        "protocol": {"ratios": ratios, "prompt_mcus": {r: int(r * profile.mcu_count + 1e-9)
                                                       for r in ratios},
                     "images": n_images, "seeds": config.seeds, "grammar": config.grammar,
                     "finish_early": config.finish_early,
                     "sampling": protocol.sampling_record(config.sampling),
                     "real_images": "the evaluated images fitted to the profile size",
                     "sample_seed": "seed * 1000003 + image index (sorted ids)"},
        "feature_extractor": feat_info,
        "comparable_to_published": bool(feat_info["comparable_to_published"]),
        "fid": {r: report.seed_summary(sc["fid"][r]) for r in ratios},
        "fid_backend": config.fid_backend,
        "codec_roundtrip_fid": sc["roundtrip"],
        "validity": {r: report.seed_summary(sc["valid"][r]) for r in ratios},
        "intact_mcu_fraction": {r: report.seed_summary(sc["intact"][r]) for r in ratios},
        "per_class": sc["per_class"],
        "per_class_validity": sc["class_validity"] or None,
        "bits_per_byte": sc["bpb"],
    }


def write_completion_report(out: str | os.PathLike, results: dict) -> None:
    """``results.json``, ``results.md`` (the paper's table: rows = model, columns = r) and
    ``fid_vs_r.png`` in ``out``."""
    from codeclm.eval import report

    out = Path(out)
    label, ratios = results["model"]["label"], results["protocol"]["ratios"]
    comparable = results["comparable_to_published"]
    report.write_json(out / "results.json", results)
    report.write_text(out / "results.md", completion_markdown(results))
    report.line_plot(out / "fid_vs_r.png", {
        label: (ratios, [results["fid"][r]["mean"] for r in ratios],
                [results["fid"][r]["std"] for r in ratios])}, "prompt ratio r", "FID",
        "Prompted completion" + ("" if comparable else " (pixels features)"))


def completion_markdown(results: dict) -> str:
    from codeclm.eval import report

    label, protocol = results["model"]["label"], results["protocol"]
    ratios, comparable = protocol["ratios"], results["comparable_to_published"]
    md = ["# JPEG-LM prompted completion\n",
          (f"{protocol['images']} images x {len(protocol['seeds'])} seeds; FID (mean ± std over "
           f"seeds), {results['feature_extractor']['name']} features; sampling "
           f"{protocol['sampling']}{', grammar-constrained' if protocol['grammar'] else ''}.\n"),
          report.fid_table(label, ratios, {r: list(results["fid"][r]["by_seed"].values())
                                           for r in ratios}, comparable),
          "\n## Validity and intact MCUs\n",
          report.markdown_table(["metric"] + [report.ratio_label(r) for r in ratios], [
              ["validity rate (strict decode)"] + [f"{results['validity'][r]['mean']:.1%}"
                                                   for r in ratios],
              ["intact MCUs"] + [f"{results['intact_mcu_fraction'][r]['mean']:.1%}"
                                 for r in ratios]]),
          (f"\nCodec round trip FID (real images through the canonical JPEG, the floor at r = 1): "
           f"{report.fmt(results['codec_roundtrip_fid'])}\n")]
    class_summary, bpb = results["per_class"], results["bits_per_byte"]
    if class_summary:
        md += ["\n## Per-class FID (long tail)\n",
               report.markdown_table(["r", "classes", "Spearman(FID, class frequency)", "p"], [
                   [report.ratio_label(r), v["classes"], report.fmt(v["spearman_rho"], 3),
                    report.fmt(v["spearman_p"], 4)] for r, v in class_summary.items()]),
               "\nPer class: per_class_fid.csv (FID averaged over seeds).\n"]
    by_class = results.get("per_class_validity")
    if by_class:
        names = sorted({c for v in by_class.values() for c in v})
        md += ["\n## Validity per class\n", report.markdown_table(
            ["class"] + [report.ratio_label(r) for r in by_class],
            [[c] + [f"{by_class[r][c]:.1%}" for r in by_class] for c in names])]
    if bpb:
        md.append(f"\nBits per byte on {bpb['path']}: {bpb['bpb']:.4f} ({bpb['tokens']} tokens, "
                  f"{bpb['bytes']} bytes)\n")
    return "\n".join(md)


# ---------------------------------------------------------------------------- uncond
def evaluate_unconditional(model, images: str | os.PathLike, out: str | os.PathLike,
                           config: UncondConfig | None = None, *, extractor=None) -> dict:
    """Unconditional samples (``config.samples`` per seed) scored by FID against the
    held-out images in ``images``; samples under ``out``; returns the results dict."""
    from codeclm.eval import extractors, metrics, protocol, run_record, runner
    from jpeglm import codec

    config = config or UncondConfig()
    config.check()
    net, feat_info = extractor if extractor is not None else image_extractor(config)
    lm = protocol.load_eval_model(model, "jpeg", config)
    if config.class_name is not None:
        from codeclm.labels import class_id

        class_id(lm.tokenizer, config.class_name)  # an unknown class fails before sampling
    n = config.samples if config.samples is not None else _default_uncond_count(lm, config)
    profile, device = lm.profile, config.device or runner.default_device()
    items = _class_items(runner.list_media(images, runner.IMAGE_EXTS), config.class_name)
    items = runner.select(items, config.real_samples)
    ids = [f"{i:05d}" for i in range(n)]
    run_record.start_run(out, uncond_record(run_record.loaded_identity(lm), config),
                         config.overwrite)
    store = runner.SampleStore(out)
    tag = uncond_tag(config)
    todo = sum(len(store.pending(tag(s), ids, ".jpg")) for s in config.seeds)
    bar = runner.progress(total=todo, desc="generate", disable=config.quiet)
    generated = sum(generate_set(lm, store, tag(s), ids, [codec.header(profile)] * len(ids), s,
                                 config, bar, [config.class_name] * len(ids))
                    for s in config.seeds)
    bar.close()
    real, _, skipped = real_features(items, profile, net, config)
    if len(real) < 2:
        raise ConfigError(f"{images}: FID needs at least 2 held-out images")
    fid, valid = {}, {}
    for s in runner.progress(config.seeds, desc="metrics", disable=config.quiet):
        col = extractors.FeatureCollector(net, config.feature_batch, device)
        scores = [score_sample(store.path(tag(s), i, ".jpg"), profile, col)
                  for i in ids]
        fid[s] = metrics.fid(real, col.features(), config.fid_backend, device)
        valid[s] = sum(v for v, _ in scores) / len(scores)
    results = _uncond_results(lm, feat_info, config, len(ids), len(real), fid, valid)
    if config.class_name is not None:
        from codeclm.eval.protocol import eval_scale

        results["protocol"].update(class_name=config.class_name,
                                   cfg_scale=eval_scale(config.cfg_scale),
                                   real_images_class=(config.class_name if any(
                                       it.cls == config.class_name for it in items) else None))
    results["samples"] = {"total": len(ids) * len(config.seeds), "generated_this_run": generated,
                          "skipped_real_images": skipped}
    return results


def uncond_tag(config: UncondConfig):
    """seed -> the sample folder of a set: ``uncond_seed0``, or with a class
    ``class_circle_s1_seed0`` (so samples of another class or scale are never reused)."""
    if config.class_name is None:
        return lambda s: f"uncond_seed{s}"
    from codeclm.eval.protocol import eval_scale

    scale = eval_scale(config.cfg_scale)
    return lambda s: f"class_{config.class_name}_s{scale:g}_seed{s}"


def _class_items(items, class_name: str | None):
    """The held-out images of ``class_name`` (its subfolder) when there are any, else all."""
    mine = [it for it in items if class_name is not None and it.cls == class_name]
    return mine or list(items)


def _default_uncond_count(lm, config: UncondConfig) -> int:
    """``UNCOND_SAMPLES`` for the model's device, said once on stderr (unless quiet)."""
    kind = "cuda" if str(lm.model.device).startswith("cuda") else "cpu"
    n = UNCOND_SAMPLES[kind]
    if not config.quiet:
        print(f"eval uncond: {n} images per seed x {len(config.seeds)} seeds on "
              f"{kind} (the default there; the paper used 1000: --samples 1000); the "
              f"progress bar shows the time left", file=sys.stderr)
    return n


def _uncond_results(lm, feat_info, config, n_generated, n_real, fid, valid) -> dict:
    from codeclm.eval import protocol, report

    return {
        **_header("jpeglm eval uncond", lm),
        "protocol": {"generated_per_seed": n_generated, "real_images": n_real,
                     "seeds": config.seeds, "grammar": config.grammar,
                     "finish_early": config.finish_early,
                     "sampling": protocol.sampling_record(config.sampling)},
        "feature_extractor": feat_info,
        "comparable_to_published": bool(feat_info["comparable_to_published"]),
        "fid": report.seed_summary(fid),
        "fid_backend": config.fid_backend,
        "validity": report.seed_summary(valid),
        "bits_per_byte": _bpb(lm, config),
    }


def write_uncond_report(out: str | os.PathLike, results: dict) -> None:
    """``results.json`` and ``results.md`` (FID and validity; published rows when the
    features are comparable) in ``out``."""
    from codeclm.eval import report

    out = Path(out)
    label, comparable = results["model"]["label"], results["comparable_to_published"]
    fid = list(results["fid"]["by_seed"].values())
    report.write_json(out / "results.json", results)
    rows = [[label if comparable else f"{label} (pixels features: not comparable to published FID)",
             report.fmt_mean_std(fid), f"{results['validity']['mean']:.1%}"]]
    if comparable:
        rows += [[k, report.fmt(v), ""] for k, v in report.PUBLISHED_UNCOND_FID.items()]
    protocol = results["protocol"]
    md = ["# JPEG-LM unconditional generation\n",
          (f"{protocol['generated_per_seed']} images per seed x {len(protocol['seeds'])} seeds "
           f"against {protocol['real_images']} held-out images; "
           f"{results['feature_extractor']['name']} features.\n"),
          report.markdown_table(["Model", "FID", "validity (strict decode)"], rows)]
    bpb = results["bits_per_byte"]
    if bpb:
        md.append(f"\nBits per byte on {bpb['path']}: {bpb['bpb']:.4f}\n")
    report.write_text(out / "results.md", "\n".join(md))


# ---------------------------------------------------------------------------- classes
@dataclasses.dataclass
class ImageClasses:
    """The image part of :func:`codeclm.eval.classes.evaluate_classes` (``jpeglm eval
    classes``): the classifier is fitted on the training images as they are; samples are
    standalone JPEGs of the bytes as sampled (``grammar``: the JPEG scan grammar), valid
    when they decode strictly (``jpeglm.codec.check``)."""

    grammar: bool = True
    task: str = "jpeglm eval classes"
    modality: str = "jpeg"
    ext: str = ".jpg"

    def fit(self, lm, train_dir: Path):
        from codeclm.eval.class_accuracy import CentroidClassifier

        return CentroidClassifier.fit_folder(train_dir)

    def generate(self, lm, name: str, scale: float, n: int, sampling, batch: int) -> list[bytes]:
        from jpeglm import codec
        from jpeglm.generate import ImageEvent, generate_images

        events = sorted((e for e in generate_images(lm, n, batch=batch, config=sampling,
                                                    grammar=self.grammar, class_name=name,
                                                    cfg_scale=scale)
                         if isinstance(e, ImageEvent)), key=lambda e: e.sample)
        return [codec.to_jpeg(e.data, lm.profile) for e in events]

    def score(self, lm, data: bytes):
        from codeclm.eval.class_accuracy import features
        from jpeglm import codec

        img, _ = codec.decode_tolerant(data, lm.profile)
        try:
            codec.check(data, lm.profile)
            ok = True
        except DecodeError:
            ok = False
        return features(img), ok

    def protocol(self) -> dict:
        return {"grammar": self.grammar}
