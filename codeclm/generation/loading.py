"""Loading a model for generation: the device default and :func:`load_model`."""

from __future__ import annotations

from ..errors import ConfigError, ModelError


def default_device() -> str:
    """``"cuda"`` when a CUDA device is available, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(model, modality: str, device: str | None = None, dtype=None,
               threads: int | None = None):
    """A model directory (path or None for the bundled model) or a ``LoadedModel`` ->
    ``LoadedModel`` of the right modality, on ``device`` (default: CUDA if available,
    in bf16; else CPU in fp32). On CPU, torch's thread count is set for the model's
    size (``threads`` overrides; see :mod:`codeclm.threads`)."""
    import torch

    from codeclm.modality import wrong_modality
    from codeclm.model_dir import LoadedModel, load_model_dir, resolve_model_dir
    from codeclm.threads import apply_threads, choose_threads

    if isinstance(model, LoadedModel):
        if model.profile.modality != modality:
            raise ModelError(wrong_modality(model.path, model.profile.modality, modality))
        return model
    if device is None:
        device = default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    choose_threads(0, threads)  # a bad --threads fails before the model is read
    loaded = load_model_dir(resolve_model_dir(model, modality), modality=modality,
                            device=device, dtype=dtype)
    apply_threads(loaded.weights.num_parameters(), threads)
    return loaded

