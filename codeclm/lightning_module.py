"""The Llama decoder as a LightningModule: loss, bits per byte, optimizer, schedule.

:class:`CodecLM` wraps a ``transformers.LlamaForCausalLM`` built from a named preset
(:func:`codeclm.models.llama_config`) with the vocabulary of the shards' tokenizer.
The model itself is created in :meth:`CodecLM.configure_model`, inside the strategy's
init context; under Lightning's ``ModelParallelStrategy`` it is sharded there with FSDP2
(:func:`shard_fsdp2`: the 7B recipes); outside a Trainer call ``configure_model()`` by hand.

Metrics (logged per step in training, per validation run in validation):

* ``train/loss``, ``val/loss``: cross-entropy in nats per target token.
* ``train/bpb``, ``val/bpb``: bits per byte = loss (nats/token) * target tokens /
  bytes covered / ln 2, where bytes covered is the exact sum of ``len(token_bytes)``
  over the target tokens (special tokens cover 0 bytes), taken from a lookup tensor.
* ``train/tokens_per_sec``: input tokens per second (all devices) between consecutive
  training batches, data loading included.

GPU options (all off / portable by default; see ``recipes/*-7b.yaml``):
``attn_implementation`` ("sdpa", or "flash_attention_2" on CUDA with flash-attn
installed), ``gradient_checkpointing``, ``compile`` (``torch.compile`` of the Llama
module in place, so checkpoint keys do not change; under FSDP2 after sharding); precision
(``bf16-mixed``) and sharding (``ModelParallelStrategy``: FSDP2; DDP; ``FSDPStrategy``)
are Trainer options.

Warm start: ``init_from: DIR`` (``--model.init_from``) starts from an exported model
directory's weights instead of a random init (fine-tuning on your own data, or another
training leg after an export); the tokenizer and preset must match, the optimizer and
schedule start fresh. Shards made with ``--labels`` from the same tokenizer add class
tokens: an unconditional model then gets their embedding and output rows as the mean of
its existing rows (:func:`codeclm.labels.grow_vocab_rows`).

Checkpoints carry everything export needs (``checkpoint["codeclm"]``: tokenizer JSON,
codec profile, Llama config), so ``jpeglm export CKPT -o DIR`` needs nothing else.

Validation previews: with ``log_samples`` = N > 0, the first validation batch's first N
blocks that contain a sample start (``<s>``) are decoded twice, as the real bytes and as
the model's teacher-forced argmax predictions (free: the logits exist already), with the
modality's tolerant decoder, and saved as PNG strips (real row above predicted row) to
``LOG_DIR/samples/``, listed in ``LOG_DIR/samples.csv`` and sent to TensorBoard.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from .errors import CodecLMError, ConfigError, TokenizerError
from .io import write_png
from .models import llama_config

LN2 = math.log(2.0)
#: checkpoint key of the toolkit's own entry
CKPT_KEY = "codeclm"
CKPT_FORMAT = 1


def token_byte_lengths(tokenizer) -> torch.Tensor:
    """``(vocab,)`` int64: bytes each token stands for (0 for special tokens)."""
    return torch.tensor([len(b) if b else 0 for b in tokenizer.token_bytes], dtype=torch.int64)


def cosine_schedule(step: int, warmup_steps: int, decay_steps: int, lr: float,
                    min_lr: float) -> float:
    """Learning-rate multiplier at optimizer ``step`` (0-based): linear warmup from lr/warmup
    to lr over ``warmup_steps``, cosine decay to ``min_lr`` at ``decay_steps``, then flat."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, decay_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    target = min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return target / lr


def shard_fsdp2(model, mesh, precision: str | None = None) -> None:
    """FSDP2 (``torch.distributed.fsdp.fully_shard``) over ``mesh``, in place: one unit per
    ``LlamaDecoderLayer``, then the root (embeddings, final norm, head). With ``bf16-mixed``
    the units compute in bf16 over fp32 master weights and reduce gradients in fp32
    (``MixedPrecisionPolicy``, as Lightning recommends for ``ModelParallelStrategy``)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    kwargs: dict[str, Any] = {"mesh": mesh}
    if precision == "bf16-mixed":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                   reduce_dtype=torch.float32)
    for module in model.modules():
        if isinstance(module, LlamaDecoderLayer):
            fully_shard(module, **kwargs)
    fully_shard(model, **kwargs)


def is_no_decay(name: str) -> bool:
    """Parameters without weight decay: norm gains and biases (Llama has no biases)."""
    return "norm" in name or name.endswith(".bias")


class CodecLM(L.LightningModule):
    """A Llama decoder trained on codec token blocks.

    Args:
        preset: architecture name in ``codeclm.models.PRESETS`` (mini, tiny, small, 1b,
            llama2-7b).
        context: tokens the model reads (linked from ``data.context`` by the CLI).
        lr: peak learning rate (after warmup). min_lr: floor of the cosine decay.
        warmup_steps: optimizer steps of linear warmup.
        decay_steps: step at which the cosine reaches ``min_lr`` (default: the Trainer's
            ``max_steps`` / estimated stepping batches).
        betas, weight_decay, eps: AdamW settings; weight decay applies to the weight
            matrices and embeddings, not to norm gains.
        attn_implementation: "sdpa" (default, any device), "eager", or "flash_attention_2"
            (CUDA + flash-attn).
        gradient_checkpointing: recompute activations in backward (saves memory, ~30% slower).
        compile: ``torch.compile`` the Llama module.
        log_samples: validation previews per validation run (0 disables).
        vocab_size: if set, must equal the tokenizer's vocabulary (a recipe can pin it).
        model_overrides: extra ``LlamaConfig`` fields (e.g. ``{"rope_theta": 500000}``).
        init_from: an exported model directory (``jpeglm export`` / ``avclm export``) whose
            weights start this run (fine-tuning; a new optimizer and schedule). Its
            tokenizer and preset must match.
        tokenizer, profile: the shards' ByteTokenizer and codec profile (linked from the
            data module by the CLI; not hyperparameters, but stored in checkpoints).
    """

    def __init__(self, preset: str = "tiny", context: int = 128, lr: float = 3e-4,
                 min_lr: float = 3e-5, warmup_steps: int = 100, decay_steps: int | None = None,
                 betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.1,
                 eps: float = 1e-8, attn_implementation: str = "sdpa",
                 gradient_checkpointing: bool = False, compile: bool = False,
                 log_samples: int = 2, vocab_size: int | None = None,
                 model_overrides: dict[str, Any] | None = None, init_from: str | None = None,
                 tokenizer: Any = None, profile: Any = None):
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer", "profile"])
        if attn_implementation not in ("sdpa", "eager", "flash_attention_2"):
            raise ConfigError(f"attn_implementation {attn_implementation!r} is not one of "
                              "sdpa, eager, flash_attention_2")
        if not 0 <= min_lr <= lr:
            raise ConfigError(f"need 0 <= min_lr ({min_lr}) <= lr ({lr})")
        if warmup_steps < 1:
            raise ConfigError("warmup_steps must be at least 1")
        if log_samples < 0:
            raise ConfigError("log_samples must be >= 0")
        self.tokenizer, self.profile = tokenizer, profile
        self.model = None
        if tokenizer is not None:
            if vocab_size is not None and vocab_size != tokenizer.vocab_size:
                raise TokenizerError(f"model vocab_size {vocab_size} does not match the "
                                     f"tokenizer's {tokenizer.vocab_size} entries")
            # validates preset and context now, before any Trainer starts
            self.llama_config = llama_config(preset, tokenizer.vocab_size, context,
                                             **(model_overrides or {}))
            self.register_buffer("token_nbytes", token_byte_lengths(tokenizer), persistent=False)
        self._t_last: float | None = None
        self._val_sums: torch.Tensor | None = None

    # --- model ---------------------------------------------------------------------------
    def build_model(self):
        """A freshly initialised LlamaForCausalLM for this configuration (current device ctx)."""
        from transformers import AutoModelForCausalLM

        if self.tokenizer is None:
            raise ConfigError("CodecLM needs a tokenizer (pass the data module's tokenizer)")
        attn = self.hparams.attn_implementation
        if attn == "flash_attention_2":
            import importlib.util

            if not torch.cuda.is_available() or importlib.util.find_spec("flash_attn") is None:
                raise ConfigError("attn_implementation flash_attention_2 needs a CUDA GPU and the "
                                  "flash-attn package; use sdpa")
        model = AutoModelForCausalLM.from_config(self.llama_config, attn_implementation=attn)
        if self.hparams.init_from:
            self._load_init_weights(model, Path(self.hparams.init_from))
        return model

    def _load_init_weights(self, model, directory: Path) -> None:
        """Start from an exported model directory's weights (``init_from``: fine-tuning,
        or a further training leg from a released model). Its tokenizer must be the data's
        and its architecture this preset's; the optimizer and schedule start fresh."""
        from safetensors.torch import load_file

        from .labels import grow_vocab_rows
        from .tokenizer import ByteTokenizer

        weights = directory / "model.safetensors"
        if not weights.is_file() or not (directory / "tokenizer.json").is_file():
            raise ConfigError(f"init_from {directory}: not an exported model directory "
                              "(needs model.safetensors and tokenizer.json)")

        theirs = ByteTokenizer.load(directory / "tokenizer.json")
        if theirs.fingerprint() != self.tokenizer.fingerprint():
            raise TokenizerError(f"init_from {directory}: its tokenizer differs from the data's "
                                 "(the shards must be made with the model's tokenizer.json)")
        state = load_file(str(weights))
        own = model.state_dict()
        # an unconditional model fine-tuned on labelled shards: rows for the class tokens
        state, self.grown_rows = grow_vocab_rows(state, own)
        bad = sorted(k for k in state if k not in own or own[k].shape != state[k].shape)
        missing = sorted(set(own) - set(state))
        if bad or missing:
            raise ConfigError(f"init_from {directory}: weights do not fit preset "
                              f"{self.hparams.preset!r} ({len(bad)} mismatched, {len(missing)} "
                              f"missing tensors, e.g. {(bad or missing)[0]})")
        model.load_state_dict(state)

    def configure_model(self) -> None:
        """Create the Llama model (Lightning calls this inside the strategy's init context)."""
        if self.model is not None:
            return
        device = self.trainer.strategy.root_device if self._trainer is not None else None
        if device is not None and device.type == "cuda":
            # build on the GPU: a 7B model never exists in host memory once per rank
            with torch.device(device):
                model = self.build_model()
        else:
            model = self.build_model()
        if self.hparams.gradient_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        mesh = self._fsdp2_mesh()
        if mesh is not None:
            shard_fsdp2(model, mesh, self.trainer.precision)
        if self.hparams.compile:  # after sharding (Lightning's compile guide for FSDP2)
            model.compile()
        self.model = model

    def _fsdp2_mesh(self):
        """The data-parallel device mesh under Lightning's ``ModelParallelStrategy`` (FSDP2),
        else None (single device, DDP, ``FSDPStrategy``: those wrap the model themselves)."""
        if self._trainer is None:
            return None
        from lightning.pytorch.strategies import ModelParallelStrategy

        strategy = self.trainer.strategy
        if not isinstance(strategy, ModelParallelStrategy):
            return None
        mesh = strategy.device_mesh
        if mesh["tensor_parallel"].size() != 1:
            raise ConfigError(f"ModelParallelStrategy: tensor_parallel_size "
                              f"{mesh['tensor_parallel'].size()} is not supported (the Llama "
                              "model has no tensor-parallel plan); use tensor_parallel_size 1 "
                              "and data_parallel_size = devices x num_nodes")
        return mesh["data_parallel"]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` token ids -> ``(B, T, vocab)`` logits."""
        return self.model(input_ids=input_ids, use_cache=False).logits

    def _step(self, batch: torch.Tensor):
        """One block batch -> (mean loss in nats/token, logits, targets, bytes covered)."""
        inp, tgt = batch[:, :-1], batch[:, 1:]
        logits = self(inp)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1))
        nbytes = self.token_nbytes[tgt].sum()
        return loss, logits, tgt, nbytes

    # --- training -------------------------------------------------------------------------
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss, _, tgt, nbytes = self._step(batch)
        bpb = loss.detach() * tgt.numel() / nbytes.clamp_min(1) / LN2
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("train/bpb", bpb, on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._t_last is not None:
            tokens = (batch.shape[1] - 1) * batch.shape[0] * self.trainer.world_size
            self.log("train/tokens_per_sec", tokens / max(now - self._t_last, 1e-9),
                     on_step=True, on_epoch=False)
        self._t_last = now

    def on_train_epoch_start(self) -> None:
        self._t_last = None

    # --- validation -----------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(3, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        loss, logits, tgt, nbytes = self._step(batch)
        n = tgt.numel()
        count = torch.tensor(float(n), dtype=torch.float64, device=self.device)
        self._val_sums += torch.stack([loss.detach().double() * n, count, nbytes.double()])
        if (batch_idx == 0 and self.hparams.log_samples > 0 and self.global_rank == 0
                and not self.trainer.sanity_checking):
            self._log_previews(batch, logits.argmax(-1))

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        nats, tokens, nbytes = sums.tolist()
        if tokens > 0:
            self.log("val/loss", nats / tokens, prog_bar=True, sync_dist=False)
            self.log("val/bpb", nats / max(nbytes, 1.0) / LN2, sync_dist=False)

    # --- optimizer ------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            # by name, not by p.ndim: FSDP (use_orig_params) shows every shard as 1-D
            if p.requires_grad:
                (no_decay if is_no_decay(name) else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps)
        decay_steps = hp.decay_steps
        if decay_steps is None:
            total = self.trainer.estimated_stepping_batches if self._trainer is not None else 0
            if not math.isfinite(total):
                raise ConfigError("the cosine schedule needs a length: set trainer.max_steps "
                                  "or model.decay_steps")
            decay_steps = int(total)
        decay_steps = max(decay_steps, hp.warmup_steps + 1)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: cosine_schedule(s, hp.warmup_steps, decay_steps, hp.lr, hp.min_lr))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store tokenizer, profile, the shards' codec library versions and the Llama config
        so export needs only the checkpoint."""
        from .profile import profile_to_dict

        trainer = getattr(self, "_trainer", None)
        versions = getattr(getattr(trainer, "datamodule", None), "versions", None)
        checkpoint[CKPT_KEY] = {
            "versions": versions,
            "format": CKPT_FORMAT,
            "modality": self.tokenizer.modality,
            "tokenizer": self.tokenizer.backend.to_str(),
            "profile": profile_to_dict(self.profile) if self.profile is not None else None,
            "llama_config": self.llama_config.to_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume on shards tokenized with a different tokenizer."""
        from tokenizers import Tokenizer

        from .tokenizer import ByteTokenizer

        info = checkpoint.get(CKPT_KEY)
        if info is None or self.tokenizer is None:
            return
        theirs = ByteTokenizer(Tokenizer.from_str(info["tokenizer"]),
                               info.get("modality", self.tokenizer.modality))
        if theirs.fingerprint() != self.tokenizer.fingerprint():
            raise TokenizerError(f"the checkpoint was trained with a different tokenizer "
                                 f"({theirs.vocab_size} entries) than the data's "
                                 f"({self.tokenizer.vocab_size} entries)")

    # --- previews -------------------------------------------------------------------------
    def _log_previews(self, batch: torch.Tensor, preds: torch.Tensor) -> None:
        from .modality import modality_for

        if self.profile is None:
            return
        modality = modality_for(self.profile)
        log_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        step = self.global_step
        rows = []
        for i, (real, pred) in enumerate(preview_pairs(batch.cpu(), preds.cpu(), self.tokenizer,
                                                       self.hparams.log_samples)):
            strip = preview_strip([decode_frames(modality, self.tokenizer.decode(real)),
                                   decode_frames(modality, self.tokenizer.decode(pred))])
            path = log_dir / "samples" / f"step{step:08d}-{i}.png"
            write_png(strip, path)
            rows.append([step, i, str(path), len(real)])
            for lg in self.loggers:
                exp = getattr(lg, "experiment", None)
                if hasattr(exp, "add_image"):  # TensorBoard's SummaryWriter
                    exp.add_image(f"val/sample_{i}", strip, step, dataformats="HWC")
        if rows:
            index = log_dir / "samples.csv"
            new = not index.exists()
            with open(index, "a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(["step", "sample", "png", "tokens"])
                w.writerows(rows)


def preview_pairs(batch: torch.Tensor, preds: torch.Tensor, tokenizer, n: int):
    """Up to ``n`` (real ids, predicted ids) pairs from a block batch.

    ``batch`` is ``(B, T+1)``, ``preds`` the ``(B, T)`` argmax predictions of
    ``batch[:, 1:]``. A candidate is a sample start (``<s>``) in a block's inputs; it covers
    the tokens after ``<s>`` up to its ``</s>`` (or the block's end). Complete samples come
    first, then the longest; at most one per block.
    """
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    cands = []
    for r, (row, prow) in enumerate(zip(batch.tolist(), preds.tolist())):
        inp = row[:-1]
        best = None
        for start in (i for i, t in enumerate(inp) if t == bos):
            real = row[start + 1:]
            complete = eos in real
            end = real.index(eos) if complete else len(real)
            key = (complete, end)
            if best is None or key > best[0]:
                best = (key, real[:end], prow[start:start + end])
        if best is not None:
            cands.append((best[0], r, best[1], best[2]))
    cands.sort(key=lambda c: (not c[0][0], -c[0][1], c[1]))
    return [(real, pred) for _, _, real, pred in cands[:n]]


def decode_frames(modality, data: bytes) -> list[np.ndarray]:
    """Tolerant decode; a codec error (which decode_tolerant should never raise) is reported
    as a warning and shown as one grey frame rather than stopping training."""
    try:
        return modality.decode_tolerant(data)
    except CodecLMError as e:
        from lightning.pytorch.utilities import rank_zero_warn

        rank_zero_warn(f"sample preview: decode failed ({e})")
        return []


def preview_strip(rows: list[list[np.ndarray]], max_frames: int = 8, gap: int = 2) -> np.ndarray:
    """Rows of RGB frames -> one ``(H, W, 3)`` uint8 image (rows stacked, frames side by side,
    at most ``max_frames`` per row, ``gap`` pixels of white between)."""
    frames = [f for r in rows for f in r[:max_frames]]
    h = max((f.shape[0] for f in frames), default=16)
    w = max((f.shape[1] for f in frames), default=16)
    ncols = max(1, max(min(len(r), max_frames) for r in rows))
    img = np.full((len(rows) * (h + gap) - gap, ncols * (w + gap) - gap, 3), 255, np.uint8)
    for ri, r in enumerate(rows):
        if not r:
            img[ri * (h + gap):ri * (h + gap) + h, :w] = 128
        for ci, f in enumerate(r[:max_frames]):
            f = np.asarray(f, np.uint8)
            y, x = ri * (h + gap), ci * (w + gap)
            img[y:y + f.shape[0], x:x + f.shape[1]] = f[..., :3]
    return img
