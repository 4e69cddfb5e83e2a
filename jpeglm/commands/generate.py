"""Generate images with a JPEG-LM model: N standalone .jpg files and a grid.png.

Every image is a complete, valid baseline JPEG: sampling is masked by the scan grammar
(--no-grammar samples freely as the paper does; damaged streams are then repaired:
intact MCUs kept, the rest mid-grey). --preview writes DIR/preview_<i>.png as MCUs
arrive (finished MCUs, grey elsewhere).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codeclm.class_args import add_class_arguments
from codeclm.generation.args import add_sampling_arguments, sampling_config
from codeclm.io import write_png


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--num", type=int, required=True, metavar="N", help="images to generate"
    )
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="output directory (new or empty; --overwrite replaces an earlier run)")
    add_common_arguments(parser)


def check_common_arguments(args: argparse.Namespace) -> None:
    """Range checks of the flags of :func:`add_common_arguments` (before any model loads)."""
    from codeclm.class_args import check_class_args
    from codeclm.generation.args import check_positive, check_sampling_args

    check_sampling_args(args)
    check_class_args(args)
    check_positive(args, "max_tokens", "max_mcu_tokens", "preview_every")


def output_names(names: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    """Every file a run with these sample names may write into its directory."""
    return [
        f for n in names for f in (f"{n}.jpg", f"preview_{n}.png", *(e.format(n) for e in extra))
    ] + ["grid.png"]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `generate` and `complete`."""
    add_sampling_arguments(parser)
    add_class_arguments(parser)
    g = parser.add_argument_group("validity and output")
    g.add_argument("--no-grammar", action="store_true",
                   help="sample without the JPEG scan grammar (damaged images are repaired)")
    g.add_argument("--no-finish-early", action="store_true",
                   help="ablation: where the model's draw would end an MCU before its blocks "
                   "are coded, draw its next allowed token instead (default: finish the MCU "
                   "plainly, flat blocks of the running DC, then write the model's marker; "
                   "see jpeglm/grammar/plain.py)")
    g.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="new tokens per image at most (default: what the context leaves)")
    g.add_argument("--max-mcu-tokens", type=int, default=None, metavar="N",
                   help="without the grammar: end an image whose MCU is still open after N tokens")
    g.add_argument("--preview", action="store_true",
                   help="write DIR/preview_<i>.png while generating")
    g.add_argument("--preview-every", type=int, default=None, metavar="K",
                   help="update previews every K MCUs (default: one row of MCUs)")


def run_samples(args, prompts: list[bytes] | None, count: int | None, names: list[str],
                outdir: Path, lm, extra_grid=None) -> list:
    """Generate, writing ``<name>.jpg`` per sample, previews if asked; returns ImageEvents."""
    from tqdm import tqdm

    from codeclm.io import atomic_write_bytes
    from jpeglm import codec
    from jpeglm.generate import DoneEvent, ImageEvent, McuEvent, generate_images, preview

    profile = lm.profile
    n = count if prompts is None else len(prompts)
    every = args.preview_every or profile.mcus_per_row
    heads = prompts or [codec.header(profile)] * n
    pieces: dict[int, list[bytes]] = {}
    total = n * profile.mcu_count - sum(len(codec.split_mcus(p)[1]) for p in heads)
    bar = tqdm(total=total, unit="MCU", file=sys.stderr, disable=args.quiet, dynamic_ncols=True)
    results, stats = [], {}
    outdir.mkdir(parents=True, exist_ok=True)
    for ev in generate_images(
        lm,
        count,
        prompts=prompts,
        batch=args.batch,
        config=sampling_config(args),
        grammar=not args.no_grammar,
        finish_early=not args.no_finish_early,
        max_tokens=args.max_tokens,
        max_mcu_tokens=args.max_mcu_tokens,
        class_name=args.class_name,
        cfg_scale=args.cfg_scale,
    ):
        if isinstance(ev, McuEvent):
            bar.update(1)
            got = pieces.setdefault(ev.sample, [])
            got.append(ev.data)
            if args.preview and len(got) % every == 0:
                write_png(preview(heads[ev.sample] + b"".join(got), profile),
                          outdir / f"preview_{names[ev.sample]}.png")
        elif isinstance(ev, ImageEvent):
            atomic_write_bytes(outdir / f"{names[ev.sample]}.jpg", codec.to_jpeg(ev.data, profile))
            if args.preview:
                write_png(ev.image, outdir / f"preview_{names[ev.sample]}.png")
            results.append(ev)
        elif isinstance(ev, DoneEvent):
            stats = ev.stats
    bar.close()
    if not args.quiet:
        print(f"{stats['images']} images -> {outdir}  ({class_note(args)}"
              f"{stats['valid']} valid as sampled, "
              f"{stats['tokens_sampled']} tokens, {stats['tokens_per_s']:.0f} tok/s, "
              f"{_changed(stats)}seed {stats['seed']})", file=sys.stderr)
        invalid = [f"{names[r.sample]}.jpg" for r in sorted(results, key=lambda r: r.sample)
                   if not r.valid]
        if invalid:
            print(not_valid_note(invalid, args), file=sys.stderr)
    return results


def class_note(args) -> str:
    """``class circle, cfg 3, `` for a class-conditional run (empty otherwise)."""
    if args.class_name is None:
        return ""
    from codeclm.class_args import DEFAULT_CFG_SCALE

    scale = DEFAULT_CFG_SCALE if args.cfg_scale is None else args.cfg_scale
    return f"class {args.class_name}, cfg {scale:g}, "


def _changed(stats: dict) -> str:
    """"grammar changed C of N draws (F MCUs finished early), " when draws were made
    filters-first, else nothing."""
    from codeclm.generation.stats import changed_note

    note = changed_note(stats, "grammar", "MCU")
    return f"{note}, " if note else ""


def not_valid_note(files: list[str], args) -> str:
    """Which outputs were not valid as sampled, what that means, and why it happens."""
    shown = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
    why = ("sampled freely (--no-grammar), the bytes broke the scan" if args.no_grammar else
           "the sample ran out of tokens (--max-tokens or the model's context) before its "
           "last MCU")
    return (f"not valid as sampled: {shown}. Their bytes do not decode strictly ({why}); "
            "each .jpg was repaired: the intact MCUs kept, the rest mid-grey.")


def run(args: argparse.Namespace) -> int:
    from codeclm.class_args import check_class_of_model, list_classes
    from codeclm.errors import ConfigError
    from codeclm.outputs import check_output_dir

    if list_classes(args, "jpeg"):
        return 0
    if args.num < 1:
        raise ConfigError(f"-n must be >= 1, got {args.num}")
    check_common_arguments(args)
    target = check_output_dir(args.output, "jpeglm generate", args.overwrite)
    width = len(str(args.num - 1))
    names = [f"{i:0{width}d}" for i in range(args.num)]

    from codeclm.model_dir import check_model_dir, resolve_model_dir

    check_model_dir(resolve_model_dir(args.model, "jpeg"), "jpeg")  # before torch loads
    check_class_of_model(args, resolve_model_dir(args.model, "jpeg"))

    from codeclm.generation.args import model_dtype
    from codeclm.generation.loading import load_model
    from jpeglm.generate import grid

    lm = load_model(args.model, "jpeg", args.device, model_dtype(args), threads=args.threads)
    outdir = target.create(output_names(names))
    results = run_samples(args, None, args.num, names, outdir, lm)
    write_png(grid([r.image for r in sorted(results, key=lambda r: r.sample)]), outdir / "grid.png")
    return 0
