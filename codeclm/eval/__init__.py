"""Evaluation shared by both modalities: metrics, feature extractors, reports, runner helpers.

- :mod:`.metrics`: FID (Fréchet distance of feature statistics), PSNR, SSIM, bits per byte.
- :mod:`.extractors`: FID feature extractors (the FID InceptionV3, a weight-free pixel one).
- :mod:`.inception`: the pytorch-fid "FID Inception" architecture, written in-repo.
- :mod:`.report`: ``results.json``, ``results.md`` (the paper's table layout), plots.
- :mod:`.runner`: media listing, resumable sample files, sampling settings, shard bpb.
"""
