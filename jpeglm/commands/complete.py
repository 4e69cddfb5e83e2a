"""Complete images from their first MCUs (the paper's prompted completion).

Each IMAGE is encoded with the model's profile and cut after the first R of its MCUs
(jpeglm.codec.prompt_prefix: whole rows of MCUs in raster order for R = 0.25/0.5/0.75);
the model writes the rest. DIR gets <i>_<name>.jpg (completion), <i>_<name>_prompt.png
(the prompt: its MCUs, grey below) and grid.png (one row per image: original, prompt,
completion).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .generate import add_common_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="images to complete")
    parser.add_argument("--prefix-ratio", type=float, default=0.5, metavar="R",
                        help="fraction of MCUs given as the prompt, in [0, 1) (default 0.5)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from codeclm.class_args import check_class_of_model, list_classes
    from codeclm.errors import ConfigError, InputError
    from codeclm.outputs import check_output_dir

    from .generate import check_common_arguments, output_names

    if list_classes(args, "jpeg"):
        return 0
    if not 0.0 <= args.prefix_ratio < 1.0:
        raise ConfigError(f"--prefix-ratio must be in [0, 1), got {args.prefix_ratio}")
    check_common_arguments(args)
    for path in args.images:
        if not Path(path).is_file():
            raise InputError(
                f"{path}: {'not a regular file' if Path(path).exists() else 'no such file'}"
            )
    target = check_output_dir(args.output, "jpeglm complete", args.overwrite)

    from codeclm.model_dir import check_model_dir, resolve_model_dir

    check_model_dir(resolve_model_dir(args.model, "jpeg"), "jpeg")  # before torch loads
    check_class_of_model(args, resolve_model_dir(args.model, "jpeg"))

    from codeclm.generation.args import model_dtype
    from codeclm.generation.loading import load_model
    from codeclm.io import write_png
    from jpeglm import codec
    from jpeglm.generate import grid, preview

    from .generate import run_samples

    lm = load_model(args.model, "jpeg", args.device, model_dtype(args), threads=args.threads)
    profile = lm.profile
    outdir = Path(args.output)
    originals, prompts, names = [], [], []
    width = len(str(len(args.images) - 1))
    for i, path in enumerate(args.images):
        modeled = codec.encode_image(path, profile)
        originals.append(codec.decode(modeled, profile))
        prompts.append(codec.prompt_prefix(modeled, args.prefix_ratio, profile))
        names.append(f"{i:0{width}d}_{Path(path).stem}")
    target.create(output_names(names, ("{}_prompt.png",)))
    shown = []
    for name, prompt, original in zip(names, prompts, originals):
        shown.append(preview(prompt, profile))
        write_png(shown[-1], outdir / f"{name}_prompt.png")
    results = sorted(run_samples(args, prompts, None, names, outdir, lm), key=lambda r: r.sample)
    cells = []
    for original, prompt_img, result in zip(originals, shown, results):
        cells += [original, prompt_img, result.image]
    write_png(grid(cells, columns=3), outdir / "grid.png")
    return 0
