"""The FID floor: real images, through the canonical codec, against held-out images.

``python -m jpeglm.reference_fid --images HELDOUT --reference TRAIN [--profile tiny]
[-n N] [--extractor pixels] [--fid-backend fast] [--seed 0] [-o OUT.json]``

``jpeglm eval uncond`` scores a model's samples against held-out images. A model that
wrote exactly the kind of images it was trained on would score what this module
measures, on the same extractor and backend: the held-out images (read as the eval
reads them, ``codec.prepare``) against as many reference images (training images, drawn
at random with ``--seed``), each encoded with the profile's canonical JPEG and decoded,
as a model's output is. An FID goal below this floor asks a model to be closer to the
held-out images than its own training data is.

Prints one JSON object: ``fid``, ``heldout`` and ``reference`` (image counts), the
settings; ``-o`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def reference_fid(heldout: list[Path], reference: list[Path], profile, extractor: str = "pixels",
                  backend: str = "fast", weights: str | None = None) -> float:
    """FID of ``reference`` images through the canonical JPEG at ``profile`` against the
    ``heldout`` images at the profile's size, with ``extractor`` and ``backend``
    (:func:`codeclm.eval.metrics.fid`)."""
    import numpy as np

    from codeclm.eval import extractors, metrics
    from jpeglm import codec
    from jpeglm.completion_mse import canonical_pixels

    net, _ = extractors.build_extractor(extractor, weights)
    real = extractors.extract(net, [np.asarray(codec.prepare(p, profile), np.uint8)
                                    for p in heldout])
    written = [canonical_pixels(codec.encode_image(p, profile), profile) for p in reference]
    return metrics.fid(real, extractors.extract(net, written), backend)


def main(argv: list[str] | None = None) -> int:
    from codeclm.cli import OneLineParser
    from codeclm.eval.extractors import EXTRACTORS
    from codeclm.eval.metrics import FID_BACKENDS
    from jpeglm.profile import PROFILES

    p = OneLineParser(prog="python -m jpeglm.reference_fid",
                      description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, type=Path, help="held-out images")
    p.add_argument("--reference", required=True, type=Path,
                   help="reference (training) images, none of them held out")
    p.add_argument("--profile", default="tiny", choices=sorted(PROFILES),
                   help="codec profile (the model's; default tiny)")
    p.add_argument("-n", "--limit", type=int, default=None,
                   help="use the first N held-out images and N reference ones (default: all "
                        "held-out images)")
    p.add_argument("--extractor", default="pixels", choices=list(EXTRACTORS))
    p.add_argument("--weights", default=None, help="FID Inception weights (--extractor inception)")
    p.add_argument("--fid-backend", default="fast", choices=list(FID_BACKENDS))
    p.add_argument("--seed", type=int, default=0, help="picks the reference images")
    p.add_argument("-o", "--output", default=None, help="also write the JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    args = p.parse_args(argv)
    from codeclm.errors import CodecLMError

    try:
        result = _measure(args, PROFILES[args.profile])
    except CodecLMError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    text = json.dumps(result)
    print(text, flush=True)
    if args.output:
        from codeclm.io import atomic_write_bytes

        atomic_write_bytes(args.output, text.encode() + b"\n")
    return 0


def _measure(args: argparse.Namespace, profile) -> dict:
    """The checks that need no images read (-n, -o, overlap, counts), then the FID."""
    import numpy as np

    from codeclm.errors import ConfigError
    from codeclm.outputs import check_output_file
    from jpeglm.completion_mse import check_disjoint, image_paths

    if args.limit is not None and args.limit < 2:
        raise ConfigError(f"-n must be >= 2 (FID needs two images a side), got {args.limit}")
    if args.output:
        check_output_file(args.output, args.overwrite)
    heldout = image_paths(args.images, args.limit)
    pool = image_paths(args.reference)
    check_disjoint(heldout, pool, "--reference")
    if len(heldout) < 2 or len(pool) < len(heldout):
        raise ConfigError(f"need at least 2 held-out images and as many reference ones; got "
                          f"{len(heldout)} held-out, {len(pool)} reference")
    picks = np.random.default_rng(args.seed).choice(len(pool), len(heldout), replace=False)
    reference = [pool[int(i)] for i in sorted(picks)]
    fid = reference_fid(heldout, reference, profile, args.extractor, args.fid_backend,
                        args.weights)
    return {"fid": fid, "heldout": len(heldout), "reference": len(reference),
            "profile": profile.name, "extractor": args.extractor,
            "fid_backend": args.fid_backend, "seed": args.seed,
            "images": str(args.images), "reference_images": str(args.reference)}


if __name__ == "__main__":
    sys.exit(main())
