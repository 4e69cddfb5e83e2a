"""Applications built on the toolkit, outside its core.

``codeclm`` (the shared core) never imports a modality package by name; these programs
use both modalities directly:

- :mod:`codeclm_apps.demo`: ``make demo`` (``python -m codeclm_apps.demo``);
- :mod:`codeclm_apps.bundled_eval`: pixel statistics of the bundled models' samples
  against their training media (``python -m codeclm_apps.bundled_eval video|image``).
"""
