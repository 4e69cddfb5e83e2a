"""Token shards -> training batches: a LightningDataModule over litdata.

A shard directory (written by ``data_tools``) holds::

    index.json  chunk-*.bin   litdata.optimize(..., item_loader=TokensLoader()) output:
                              each sample is one 1-D int array [<s>] + tokens + [</s>]
    tokenizer.json            the ByteTokenizer the ids come from
    profile.json              the codec profile the bytes were made with
    stats.json                counts (read for information only)

Samples are concatenated and cut into blocks of ``context + 1`` tokens
(``litdata.TokensLoader(block_size=context + 1)``); a batch is a ``(batch_size,
context + 1)`` int64 tensor, the model reads ``[:, :-1]`` and predicts ``[:, 1:]``.
Blocks never straddle two chunk files (the tokens left at a chunk's end are skipped).

Validation data is ``val_path`` (another shard directory made with the same tokenizer)
or, without one, a ``val_fraction`` of the blocks split off deterministically by
``litdata.train_test_split`` (seeded; never overlapping the training blocks).

The loaders are ``litdata.StreamingDataLoader``: Lightning saves the training loader's
state (samples yielded, epoch, shuffle seed) in every checkpoint (the fit loop's
``combined_loader`` entry), so a resumed run continues with the very next batch.
:meth:`CodecDataModule.state_dict` records what that state is only valid for (path,
block size, batch size, seed) and a resume that changes any of them is an error.

Everything that can be checked without reading the data is checked in ``__init__``, so
a wrong directory, a tokenizer of the wrong modality, token ids outside the vocabulary
or a context the shards cannot fill fail with one clear line before a Trainer starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from .errors import ConfigError, ProfileError, TokenizerError
from .litdata_offline import offline_litdata
from .modality import command_of, record
from .profile import load_profile
from .tokenizer import ByteTokenizer
from .versions import read as read_versions

#: shortest context (tokens) a model is built with (codeclm.models.llama_config)
MIN_CONTEXT = 16


#: share of the training blocks left out each epoch (several processes: whole batches,
#: the same number per process) from which the data module warns
DROPPED_WARN = 0.1


def batches_per_process(blocks: int, batch_size: int, world_size: int) -> int:
    """Batches each of ``world_size`` processes gets per epoch from ``blocks`` blocks.

    litdata's rule (``litdata.utilities.shuffle._associate_chunks_and_intervals_to_workers``):
    one process reads every block, the last batch partial; with several, ``StreamingDataset``
    forces ``drop_last`` and every process gets the same ``blocks // batch_size //
    world_size`` whole batches (the remainder is dropped each epoch). So too few blocks
    leave *every* process without a batch, never just one.
    """
    if world_size <= 1:
        return -(-blocks // batch_size)
    return blocks // batch_size // world_size


def distributed_world_size() -> int:
    """Processes in the initialized ``torch.distributed`` group (1 without one): the world
    size litdata splits the blocks over (``litdata.utilities.env._DistributedEnv``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def collate_blocks(items: list) -> torch.Tensor:
    """litdata token blocks (numpy or torch, any int dtype) -> one ``(B, T)`` int64 tensor."""
    return torch.from_numpy(np.stack([np.asarray(x) for x in items]).astype(np.int64))


def _blocks(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


class ShardInfo:
    """What ``index.json`` says about a shard directory, read without opening the chunks.

    ``chunk_tokens[i]`` and ``chunk_samples[i]`` are token and sample counts of chunk i.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError(f"{self.path}: shard directory not found")
        index = self.path / "index.json"
        if not index.is_file():
            raise ConfigError(f"{self.path}: not a shard directory (no index.json); "
                              "make one with data_tools")
        try:
            data = json.loads(index.read_text())
            config, chunks = data["config"], data["chunks"]
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"{index}: unreadable shard index ({e})") from e
        if config.get("item_loader") != "TokensLoader":
            raise ConfigError(f"{self.path}: shards were not written for token blocks "
                              f"(item_loader {config.get('item_loader')!r}, "
                              f"expected 'TokensLoader')")
        if not chunks:
            raise ConfigError(f"{self.path}: shard directory has no chunks")
        self.data_format: str = config["data_format"][0]
        self.chunks: list[dict] = chunks
        self.chunk_tokens = [int(c["dim"]) for c in chunks]
        self.chunk_samples = [int(c["chunk_size"]) for c in chunks]

    @property
    def total_tokens(self) -> int:
        return sum(self.chunk_tokens)

    @property
    def total_samples(self) -> int:
        return sum(self.chunk_samples)

    @property
    def mean_sample_tokens(self) -> float:
        """Mean tokens per sample, ``<s>`` and ``</s>`` included."""
        return self.total_tokens / max(1, self.total_samples)

    def blocks(self, block_size: int) -> int:
        """How many ``block_size``-token blocks the TokensLoader will serve."""
        return sum(t // block_size for t in self.chunk_tokens)

    def first_chunk_tokens(self) -> np.ndarray:
        """All token ids of the first chunk (memory-mapped; for a cheap range check)."""
        # litdata's private dtype tables: its chunk headers name dtypes by these indices
        # and it has no public lookup (checked against litdata 0.2.x)
        from litdata.constants import _NUMPY_DTYPES_MAPPING, _TORCH_DTYPES_MAPPING

        kind, idx = self.data_format.split(":")
        if kind == "no_header_numpy":
            dtype = np.dtype(_NUMPY_DTYPES_MAPPING[int(idx)])
        elif kind == "no_header_tensor":
            dtype = torch.empty(0, dtype=_TORCH_DTYPES_MAPPING[int(idx)]).numpy().dtype
        else:
            raise ConfigError(f"{self.path}: unsupported token format {self.data_format!r}")
        chunk = self.chunks[0]
        offset = (1 + int(chunk["chunk_size"]) + 1) * 4  # litdata's chunk header (uint32s)
        return np.memmap(self.path / chunk["filename"], dtype=dtype, mode="r", offset=offset,
                         shape=(int(chunk["dim"]),))


def load_shard_meta(path: str | os.PathLike, modality: str | None = None):
    """(ShardInfo, ByteTokenizer, profile) of a shard directory, checked against each other.

    ``modality`` ("jpeg"/"h264"), when given, must be the shards' modality.
    """
    info = ShardInfo(path)
    tok_file = info.path / "tokenizer.json"
    if not tok_file.is_file():
        raise TokenizerError(f"{info.path}: shard directory has no tokenizer.json")
    tokenizer = ByteTokenizer.load(tok_file)
    if not (info.path / "profile.json").is_file():
        raise ProfileError(f"{info.path}: shard directory has no profile.json")
    profile = load_profile(info.path)
    if tokenizer.modality != profile.modality:
        raise TokenizerError(f"{info.path}: tokenizer is for {tokenizer.modality} but the profile "
                             f"is {profile.modality}")
    if modality is not None and profile.modality != modality:
        raise ConfigError(f"{info.path}: these are {profile.modality} shards "
                          f"(train them with `{command_of(profile.modality)} train`); "
                          f"`{command_of(modality)} train` needs {modality} shards")
    top = int(info.first_chunk_tokens().max(initial=0))
    if top >= tokenizer.vocab_size:
        raise TokenizerError(f"{info.path}: shards hold token id {top} but tokenizer.json has only "
                             f"{tokenizer.vocab_size} entries (shards and tokenizer do not match)")
    return info, tokenizer, profile


class CodecDataModule(L.LightningDataModule):
    """Blocks of ``context + 1`` tokens from litdata shards.

    Args:
        path: shard directory (index.json + chunks + tokenizer.json + profile.json).
        context: model context in tokens; blocks are ``context + 1`` tokens.
        batch_size: blocks per batch per device.
        val_path: a separate validation shard directory (same tokenizer), or None.
        val_fraction: without ``val_path``, the fraction of blocks held out for validation
            (0 disables validation).
        val_batch_size: blocks per validation batch (default: ``batch_size``).
        num_workers: DataLoader worker processes per device (0 = load in the main process).
        seed: shuffle seed (and train/val split seed); part of the resumable state.
        shuffle: shuffle training blocks (chunk order and blocks within a chunk) each epoch.
        modality: "jpeg"/"h264" the shards must be (set by ``jpeglm train`` / ``avclm train``).
        allow_partial_samples: permit a context shorter than the mean sample (then the model
            never sees a whole image/clip and cannot learn to generate one).
    """

    def __init__(self, path: str | None = None, context: int = 128, batch_size: int = 8,
                 val_path: str | None = None, val_fraction: float = 0.05,
                 val_batch_size: int | None = None, num_workers: int = 0, seed: int = 42,
                 shuffle: bool = True, modality: str | None = None,
                 allow_partial_samples: bool = False):
        super().__init__()
        self.save_hyperparameters()
        if path is None:
            raise ConfigError("no training data: pass --data.path DIR (a shard directory made by "
                              "data_tools)")
        if context < MIN_CONTEXT:
            raise ConfigError(f"context of {context} tokens is too short (minimum {MIN_CONTEXT})")
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1):
            raise ConfigError("batch sizes must be at least 1")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction {val_fraction} must be in [0, 1)")
        self.path, self.val_path = str(path), (str(val_path) if val_path else None)
        self.context, self.block_size = int(context), int(context) + 1
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.val_fraction, self.num_workers, self.seed, self.shuffle = (
            float(val_fraction), num_workers, seed, shuffle)

        self.info, self.tokenizer, self.profile = load_shard_meta(path, modality)
        self.modality = self.profile.modality
        #: the codec libraries that made the shards' bytes (codeclm.versions; None if unrecorded)
        self.versions = read_versions(path)
        self.val_info = None
        if self.val_path:
            self.val_info, vtok, _ = load_shard_meta(self.val_path, self.modality)
            if vtok.fingerprint() != self.tokenizer.fingerprint():
                raise TokenizerError(f"{self.val_path}: validation shards use a different "
                                     f"tokenizer than {self.path}")
        mean = self.info.mean_sample_tokens
        if mean > self.context and not allow_partial_samples:
            raise ConfigError(
                f"context of {self.context} tokens is shorter than the mean sample "
                f"({mean:.0f} tokens in {self.path}): the model would never see a whole "
                f"{'clip' if record(self.modality).media_kind == 'video' else 'image'}; "
                "raise --data.context or pass --data.allow_partial_samples true")
        self._check_blocks()
        self.train_ds = self.val_ds = None

    # --- checks ------------------------------------------------------------------------
    def _check_blocks(self) -> None:
        n = self.info.blocks(self.block_size)
        biggest = max(self.info.chunk_tokens)
        if n == 0:
            raise ConfigError(
                f"blocks of context+1 = {self.block_size} tokens are longer than every shard chunk "
                f"of {self.path} (largest {biggest} tokens); lower --data.context or rebuild the "
                "shards with larger chunks")
        n_val = 0
        if self.val_info is not None:
            n_val = self.val_info.blocks(self.block_size)
            if n_val == 0:
                raise ConfigError(f"{self.val_path}: validation shards hold no block of "
                                  f"{self.block_size} tokens")
        elif self.val_fraction > 0:
            # the same arithmetic as litdata.train_test_split
            total = n
            n, n_val = int(total * (1.0 - self.val_fraction)), int(total * self.val_fraction)
            if n_val < 1:
                raise ConfigError(f"val_fraction {self.val_fraction} of {total} blocks is no "
                                  "block; raise --data.val_fraction, pass --data.val_path or "
                                  "set it to 0")
        if n < self.batch_size:
            raise ConfigError(f"{self.path}: only {n} training blocks of {self.block_size} tokens, "
                              f"fewer than one batch of {self.batch_size}")
        self.n_train_blocks, self.n_val_blocks = n, n_val

    def check_world_size(self, world_size: int, stage: str | None = "fit") -> None:
        """Refuse a split that leaves a process without a batch (every process of a
        multi-process run must have one, or the run stops at once having trained nothing);
        warn (rank 0) when at least :data:`DROPPED_WARN` of the training blocks are left
        out each epoch.

        ``stage`` "fit" checks the training and the validation blocks, "validate" only the
        validation ones (none when the attached Trainer has ``limit_val_batches=0``).
        Called by :meth:`setup` with the distributed world size, on every rank alike.
        """
        if world_size <= 1:
            return
        batches = batches_per_process(self.n_train_blocks, self.batch_size, world_size)
        if stage in (None, "fit") and batches < 1:
            raise ConfigError(
                f"{self.path}: {_blocks(self.n_train_blocks, 'training block')} of "
                f"{self.block_size} tokens for {world_size} processes; each process needs "
                f"at least one batch of {self.batch_size} ({self.batch_size * world_size} "
                "blocks in all): add data, lower --data.batch_size or use fewer devices")
        left_out = self.n_train_blocks - batches * self.batch_size * world_size
        if stage in (None, "fit") and left_out >= DROPPED_WARN * self.n_train_blocks:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(
                f"{self.path}: {left_out} of {self.n_train_blocks} training blocks "
                f"({100 * left_out / self.n_train_blocks:.0f}%) are left out each epoch: with "
                f"{world_size} processes each gets the same {batches} whole "
                f"batch{'' if batches == 1 else 'es'} of {self.batch_size}; lower "
                "--data.batch_size or add data")
        if self.val_info is None and self.val_fraction == 0:
            return  # no validation
        if self.trainer is not None and self.trainer.limit_val_batches == 0:
            return  # validation switched off
        if batches_per_process(self.n_val_blocks, self.val_batch_size, world_size) < 1:
            where = self.val_path or f"{self.path} (val_fraction {self.val_fraction})"
            fix = ("add validation data" if self.val_path else "raise --data.val_fraction")
            raise ConfigError(
                f"{where}: {_blocks(self.n_val_blocks, 'validation block')} of "
                f"{self.block_size} tokens for {world_size} processes; each process needs at "
                f"least one batch of {self.val_batch_size} ({self.val_batch_size * world_size} "
                f"blocks in all): {fix}, lower --data.val_batch_size or use fewer devices")

    # --- datasets ----------------------------------------------------------------------
    def _dataset(self, path: str, shuffle: bool):
        from litdata import StreamingDataset

        from .litdata_tokens import TokensLoader

        offline_litdata()
        return StreamingDataset(str(Path(path).resolve()),
                                item_loader=TokensLoader(block_size=self.block_size),
                                shuffle=shuffle, seed=self.seed)

    def setup(self, stage: str | None = None) -> None:
        """Build the streaming datasets (after distributed init: litdata reads the world size)
        and check that every process gets a batch (:meth:`check_world_size`)."""
        self.check_world_size(distributed_world_size(), stage)
        if self.train_ds is not None:
            return
        if self.val_info is not None:
            self.train_ds = self._dataset(self.path, self.shuffle)
            self.val_ds = self._dataset(self.val_path, False)
        elif self.val_fraction > 0:
            from litdata import train_test_split

            full = self._dataset(self.path, self.shuffle)
            self.train_ds, self.val_ds = train_test_split(
                full, [1.0 - self.val_fraction, self.val_fraction], seed=self.seed)
            self.val_ds.set_shuffle(False)
            for ds in (self.train_ds, self.val_ds):  # numpy ints -> int: checkpoints stay
                ds.region_of_interest = [(int(a), int(b))  # loadable with weights_only=True
                                         for a, b in ds.region_of_interest]
        else:
            self.train_ds = self._dataset(self.path, self.shuffle)

    def _loader(self, ds, batch_size: int):
        from litdata import StreamingDataLoader

        return StreamingDataLoader(ds, batch_size=batch_size, num_workers=self.num_workers,
                                   collate_fn=collate_blocks, pin_memory=torch.cuda.is_available(),
                                   persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        self.setup("fit")
        return self._loader(self.train_ds, self.batch_size)

    def val_dataloader(self):
        self.setup("validate")
        if self.val_ds is None:
            return []
        return self._loader(self.val_ds, self.val_batch_size)

    # --- resumable state ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What the saved loader position is valid for (saved in every checkpoint)."""
        return {"path": str(Path(self.path).resolve()), "block_size": self.block_size,
                "batch_size": self.batch_size, "seed": self.seed, "shuffle": self.shuffle,
                "val_fraction": self.val_fraction, "n_train_blocks": self.n_train_blocks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Refuse to resume a loader position on different data or batching."""
        mine = self.state_dict()
        for key in ("block_size", "batch_size", "seed", "shuffle", "val_fraction",
                    "n_train_blocks"):
            if key in state and state[key] != mine[key]:
                raise ConfigError(f"cannot resume: the checkpoint's data {key} was "
                                  f"{state[key]!r}, now {mine[key]!r} (resume with the same data "
                                  "settings, or start a new run from exported weights)")
        if "path" in state and state["path"] != mine["path"]:
            raise ConfigError(f"cannot resume: the checkpoint was trained on {state['path']}, not "
                              f"{mine['path']} (litdata's saved position is tied to the directory)")
