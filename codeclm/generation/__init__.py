"""Generation: prefill + decode loop over a static KV cache (the gpt-fast shape).

One module per job, each usable alone; import from the module (this package file
imports nothing, so the torch-free :mod:`.args`, :mod:`.sampling_config` and
:mod:`.stats` stay light):

- :mod:`.sampling_config`: :class:`~.sampling_config.SamplingConfig` (the settings) and
  :func:`~.sampling_config.draw_seed` (a fresh seed), torch-free.
- :mod:`.sampling`: logits -> token. Temperature, top-k, top-p (in that order, as
  Hugging Face's processors apply them), then one draw per row from that row's own
  ``torch.Generator`` (exponential race: ``argmax(p / E)``, ``E ~ Exp(1)``, which samples
  exactly from ``p``). With top-k the draw is over the k candidates only (no vocabulary
  sort).
- :mod:`.forward`: :class:`~.forward.KVCacheLM`, a Llama forward with a static, per-row
  KV cache, ``prefill(row, ids, start)`` and ``decode(tokens, positions)``.
- :mod:`.native`: the C kernels of the CPU decode step (``codeclm/_native.c``): a skinny
  product over packed weights and the decode attention, used on one thread for float32
  models where built (``CODECLM_NATIVE=0`` turns them off).
- :mod:`.compiled`: the opt-in ``torch.compile`` of the decode step
  (``KVCacheLM(..., compile=True)``, ``generate(..., compile=True)``), falling back to
  eager with a warning when compiling fails.
- :mod:`.session`: a batch of streams (:class:`~.session.Session`, :func:`~.session.generate`):
  per-row prompts, stop on EOS / ``max_new_tokens`` / a unit verdict
  (:class:`~.session.Accept`, :class:`~.session.Reject`, :class:`~.session.Stop`), a
  per-row :class:`~.session.Constraint` (grammar) that masks logits, unit splitting
  (:mod:`codeclm.streaming`), callbacks per token and per unit, and rollback.
- :mod:`.stats`: :class:`~.stats.DecodeStats` (tokens, seconds, tokens/s; the one stats
  type) and the :class:`~.stats.DoneEvent` that ends every event stream.
- :mod:`.loading`: :func:`~.loading.load_model` and :func:`~.loading.default_device`.
- :mod:`.args`: the sampling flags every generating verb and eval shares (torch-free).

Seeds: row ``r`` of a run with seed ``s`` draws from ``torch.Generator().manual_seed(s + r)``
and consumes exactly one draw per sampled token, so row ``r`` of a batch gives the same
tokens as a batch-1 run with seed ``s + r`` and the same prompt (up to float rounding of
batched matmuls, which has not flipped a token in our tests).
"""
