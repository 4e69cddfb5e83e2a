"""Llama weights straight from ``config.json`` + ``model.safetensors``, without transformers.

Generation only needs the tensors and a handful of config numbers: the sampler
(:class:`codeclm.generation.forward.KVCacheLM`) has its own forward. Importing ``transformers`` and
building a ``LlamaForCausalLM`` costs seconds on a small CPU (more than generating a
tiny-model image), so the generating commands load models through this module and
``transformers`` stays for training, export and compatibility checks.

Loading is strict: the checkpoint must hold exactly the tensors the config implies,
with exactly those shapes (a missing layer, an extra tensor or a mis-sized matrix is a
:class:`~codeclm.errors.ModelError`, never a silently random-initialised weight).
Only safetensors files are read (single file or the sharded
``model.safetensors.index.json`` layout, found by :func:`codeclm.weights.weight_files`);
pickled ``.bin`` checkpoints are refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from .errors import ModelError
from .weights import stored_tensors, weight_files

#: activations the sampler's MLP knows (Hugging Face ``hidden_act`` names)
ACTIVATIONS = {"silu": torch.nn.functional.silu, "swish": torch.nn.functional.silu,
               "gelu": torch.nn.functional.gelu, "relu": torch.nn.functional.relu}


@dataclasses.dataclass(frozen=True)
class LlamaSpec:
    """The numbers of a Llama ``config.json`` that fix its tensors and its forward.

    Attribute names are Hugging Face's, so code written against ``model.config`` reads
    a spec the same way. ``head_dim`` defaults to ``hidden_size // num_attention_heads``.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    hidden_act: str = "silu"
    attention_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    model_type: str = "llama"

    @classmethod
    def from_config_dict(cls, cfg: dict, where: str = "config.json") -> LlamaSpec:
        """Read a Hugging Face Llama config dict; :class:`ModelError` for anything the
        sampler's forward does not implement (another architecture, scaled RoPE)."""
        if cfg.get("model_type") != "llama":
            raise ModelError(f"{where}: the sampler runs Llama models, not "
                             f"{cfg.get('model_type')!r}")
        rope = cfg.get("rope_parameters") or {}
        scaling = cfg.get("rope_scaling")
        rope_type = rope.get("rope_type", "default")
        if (scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default")) \
                or rope_type != "default":
            kind = rope_type if rope_type != "default" else scaling
            raise UnsupportedConfig(f"{where}: scaled RoPE ({kind}) is not implemented by "
                                    "the native loader")
        try:
            heads = int(cfg["num_attention_heads"])
            spec = cls(
                vocab_size=int(cfg["vocab_size"]), hidden_size=int(cfg["hidden_size"]),
                intermediate_size=int(cfg["intermediate_size"]),
                num_hidden_layers=int(cfg["num_hidden_layers"]), num_attention_heads=heads,
                num_key_value_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads),
                max_position_embeddings=int(cfg["max_position_embeddings"]),
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
                hidden_act=str(cfg.get("hidden_act", "silu")),
                attention_bias=bool(cfg.get("attention_bias", False)),
                mlp_bias=bool(cfg.get("mlp_bias", False)),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)))
        except KeyError as e:
            raise ModelError(f"{where}: missing {e.args[0]!r}") from None
        except (TypeError, ValueError, ZeroDivisionError) as e:
            raise ModelError(f"{where}: bad value ({e})") from None
        if min(spec.vocab_size, spec.hidden_size, spec.intermediate_size, spec.num_hidden_layers,
               spec.num_key_value_heads, spec.head_dim, spec.max_position_embeddings) <= 0 \
                or spec.num_attention_heads % spec.num_key_value_heads:
            raise ModelError(f"{where}: inconsistent sizes")
        if spec.hidden_act not in ACTIVATIONS:
            raise UnsupportedConfig(f"{where}: activation {spec.hidden_act!r} not implemented")
        return spec

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor name a ``LlamaForCausalLM`` checkpoint of this spec holds -> shape."""
        H, I, D = self.hidden_size, self.intermediate_size, self.head_dim
        q, kv = self.num_attention_heads * D, self.num_key_value_heads * D
        shapes = {"model.embed_tokens.weight": (self.vocab_size, H), "model.norm.weight": (H,)}
        if not self.tie_word_embeddings:
            shapes["lm_head.weight"] = (self.vocab_size, H)
        for i in range(self.num_hidden_layers):
            p = f"model.layers.{i}."
            shapes.update({
                p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
                p + "self_attn.q_proj.weight": (q, H), p + "self_attn.k_proj.weight": (kv, H),
                p + "self_attn.v_proj.weight": (kv, H), p + "self_attn.o_proj.weight": (H, q),
                p + "mlp.gate_proj.weight": (I, H), p + "mlp.up_proj.weight": (I, H),
                p + "mlp.down_proj.weight": (H, I)})
            if self.attention_bias:
                shapes.update(
                    {
                        p + "self_attn.q_proj.bias": (q,),
                        p + "self_attn.k_proj.bias": (kv,),
                        p + "self_attn.v_proj.bias": (kv,),
                        p + "self_attn.o_proj.bias": (H,),
                    }
                )
            if self.mlp_bias:
                shapes.update({p + "mlp.gate_proj.bias": (I,), p + "mlp.up_proj.bias": (I,),
                               p + "mlp.down_proj.bias": (H,)})
        return shapes


class UnsupportedConfig(ModelError):
    """A valid Llama config that the native forward does not implement (load it with
    transformers instead)."""


@dataclasses.dataclass
class LlamaWeights:
    """The tensors of one Llama model (Hugging Face names) and its :class:`LlamaSpec`.

    ``config`` is the spec (so ``weights.config.vocab_size`` reads like a HF model's).
    Tensors live on one device in one dtype.
    """

    config: LlamaSpec
    tensors: dict[str, torch.Tensor]
    #: tensors computed from ``tensors`` once and reused by every sampler session over
    #: these weights (the fused, transposed projections of
    #: :class:`codeclm.generation.forward.KVCacheLM`), keyed by the deriving code's names;
    #: they would go stale if ``tensors`` were changed in place (generation never does)
    derived: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict, repr=False,
                                                         compare=False)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def get(self, name: str) -> torch.Tensor | None:
        return self.tensors.get(name)

    @property
    def lm_head(self) -> torch.Tensor:
        return self.tensors.get("lm_head.weight", self.tensors["model.embed_tokens.weight"])

    def parameters(self) -> Iterator[torch.Tensor]:
        return iter(self.tensors.values())

    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())

    def derive(self, name: str, make) -> torch.Tensor:
        """``derived[name]``, computed by ``make()`` the first time it is asked for."""
        if name not in self.derived:
            self.derived[name] = make()
        return self.derived[name]

    def rope(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin`` ``[length, head_dim]`` of the default Llama RoPE (computed in fp32,
        as transformers does, then cast to the weights' dtype)."""
        D = self.config.head_dim
        emb = self.tensors["model.embed_tokens.weight"]
        inv = 1.0 / (self.config.rope_theta ** (torch.arange(0, D, 2, dtype=torch.int64)
                                                .to(device=emb.device, dtype=torch.float) / D))
        freqs = torch.outer(torch.arange(length, device=emb.device, dtype=torch.float), inv)
        full = torch.cat((freqs, freqs), -1)
        return full.cos().to(emb.dtype), full.sin().to(emb.dtype)

    @classmethod
    def from_hf(cls, model) -> LlamaWeights:
        """View a ``transformers`` ``LlamaForCausalLM``'s tensors (shared, not copied)."""
        cfg = model.config.to_dict() if hasattr(model.config, "to_dict") else vars(model.config)
        spec = LlamaSpec.from_config_dict(cfg, where="model config")
        tensors = {k: v.detach() for k, v in model.state_dict().items()}
        if spec.tie_word_embeddings:
            tensors.pop("lm_head.weight", None)
        return cls(spec, tensors)


def read_spec(directory: str | os.PathLike) -> LlamaSpec:
    """The :class:`LlamaSpec` of a model directory's ``config.json``."""
    path = Path(directory) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path.parent}: not a model directory (missing config.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: not a readable JSON config ({e})") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{path}: not a JSON object")
    return LlamaSpec.from_config_dict(cfg, where=str(path))


def load_weights(directory: str | os.PathLike, device: str = "cpu",
                 dtype: torch.dtype | None = None) -> LlamaWeights:
    """Load and check a model directory's weights (see the module docstring).

    ``dtype`` None keeps the stored dtype; otherwise every tensor is cast to it.
    """
    from safetensors import SafetensorError, safe_open

    spec = read_spec(directory)
    expected = spec.tensor_shapes()
    # headers first (empty, truncated, corrupt files; names and shapes): no tensor is read
    # until the checkpoint is known to be exactly the config's model
    stored = {k: shape for k, (_, shape) in stored_tensors(Path(directory)).items()}
    tied_head = spec.tie_word_embeddings and "lm_head.weight" in stored
    if tied_head:
        stored.pop("lm_head.weight")
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        what = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else "") + \
            (", " if missing and unexpected else "") + \
            (f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "")
        raise ModelError(f"{directory}: weights do not match config.json: {what}")
    for name, shape in expected.items():
        if stored[name] != shape:
            raise ModelError(f"{directory}: {name} has the wrong shape {stored[name]}; "
                             f"config.json implies {shape}")
    tensors: dict[str, torch.Tensor] = {}
    for f in weight_files(Path(directory)):
        try:
            with safe_open(str(f), framework="pt", device="cpu") as st:
                for name in st.keys():  # noqa: SIM118 - safe_open is not iterable
                    tensors[name] = st.get_tensor(name)
        except SafetensorError as e:
            raise ModelError(f"{f}: not a readable safetensors file ({_first_line(e)})") from None
        except OSError as e:
            raise ModelError(f"{f}: cannot read ({e.strerror or e})") from None
    if tied_head:
        head = tensors.pop("lm_head.weight")
        if not torch.equal(head, tensors["model.embed_tokens.weight"]):
            raise ModelError(f"{directory}: tie_word_embeddings is set but lm_head.weight "
                             "differs from the embeddings")
    for name in expected:
        if not tensors[name].is_floating_point():
            raise ModelError(f"{directory}: {name} is {tensors[name].dtype}, not floating point")
    for name, t in tensors.items():
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        tensors[name] = t.to(device)
    if not all(math.isfinite(float(tensors[n].float().abs().max()))
               for n in ("model.embed_tokens.weight", "model.norm.weight")):
        raise ModelError(f"{directory}: the weights hold NaN or infinity")
    return LlamaWeights(spec, tensors)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
