"""codeclm: the shared core of JPEG-LM and AVC-LM.

Everything both modalities use lives here once: typed errors, atomic output,
the byte-level BPE tokenizer, Llama presets, the Lightning module and data
module, the sampler and evaluation metrics. A modality (``jpeglm``, ``avclm``)
contributes only its canonical codec, its validity rules and its CLI verbs.
"""

__version__ = "0.1.0"
