"""Training: data module, metrics, the `train` / `export` verbs, recipes, bad input.

Everything runs in-process on the tiny preset with real shards from the fixtures
(conftest.py); the slow end-to-end checks (kill + resume, DDP) are in their own files.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from codeclm.data_module import CodecDataModule, batches_per_process
from codeclm.errors import ConfigError, TokenizerError
from codeclm.lightning_module import CodecLM, cosine_schedule, preview_pairs
from codeclm.tokenizer import ByteTokenizer

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"


def quiet(root: Path) -> list[str]:
    return ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", str(root)]


def jpeg_args(shards: Path, root: Path, steps: int = 4) -> list[str]:
    return ["--config", str(RECIPES / "jpeglm-tiny.yaml"), "--data.path", str(shards),
            "--data.context", "256", "--data.batch_size", "4", "--data.val_fraction", "0.1",
            "--model.warmup_steps", "2", "--trainer.max_steps", str(steps),
            "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "2",
            "--trainer.num_sanity_val_steps", "0", "--trainer.log_every_n_steps", "1",
            "--checkpoint.every_n_train_steps", "2", *quiet(root)]


def read_metrics(root: Path) -> list[dict]:
    versions = sorted((root / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    with open(versions[-1] / "metrics.csv") as f:
        return list(csv.DictReader(f))


def jpeglm(argv):
    from jpeglm.cli import main

    return main(argv)


def avclm(argv):
    from avclm.cli import main

    return main(argv)


# --- data ----------------------------------------------------------------------------------
def test_blocks_cover_the_shards_and_split_without_overlap(jpeg_shards):
    from data_tools.shards import read_samples

    dm = CodecDataModule(str(jpeg_shards), context=64, batch_size=4, val_fraction=0.2,
                         allow_partial_samples=True)
    dm.setup("fit")
    train = [tuple(b.tolist()) for batch in dm.train_dataloader() for b in batch]
    val = [tuple(b.tolist()) for batch in dm.val_dataloader() for b in batch]
    assert len(train) == dm.n_train_blocks and len(val) == dm.n_val_blocks > 0
    assert all(len(b) == 65 for b in train + val)
    # every block is a contiguous run of one chunk's concatenated samples
    stream = np.concatenate(list(read_samples(jpeg_shards))).tolist()
    text = ",".join(map(str, stream)) + ","
    for b in train[:5] + val[:5]:
        assert ",".join(map(str, b)) + "," in text
    # train and val are different blocks (positions), and none is served twice
    assert len(set(train) | set(val)) == len(train) + len(val)


def test_loader_state_resumes_at_the_next_batch(jpeg_shards):
    def loader():
        dm = CodecDataModule(str(jpeg_shards), context=64, batch_size=4, val_fraction=0.0,
                             allow_partial_samples=True, seed=7)
        dm.setup("fit")
        return dm.train_dataloader()

    a = loader()
    it = iter(a)
    seen = [next(it) for _ in range(3)]
    state = a.state_dict()
    fourth = next(it)
    b = loader()
    b.load_state_dict(state)
    resumed = next(iter(b))
    assert torch.equal(resumed, fourth)
    assert not any(torch.equal(resumed, s) for s in seen)


def test_batches_per_process_is_litdatas_split(jpeg_shards):
    """The count the multi-process check uses is what litdata's own shuffler gives each
    rank (its real cache over the real split, 3 chunks), for 1-4 processes and 1-2 workers."""
    from litdata.utilities.env import _DistributedEnv

    dm = CodecDataModule(str(jpeg_shards), context=64, batch_size=4, val_fraction=0.2,
                         allow_partial_samples=True)
    dm.setup("fit")
    for ds, n in ((dm.train_ds, dm.n_train_blocks), (dm.val_ds, dm.n_val_blocks)):
        assert sum(b - a for a, b in ds.region_of_interest) == n  # the split's exact size
        ds.get_len(1, 1)  # builds the dataset's shuffler and cache
        for world, workers, size in itertools.product((1, 2, 3, 4), (1, 2), (1, 3, 4, 7, 40)):
            # StreamingDataset forces drop_last with several processes
            shuffler = type(ds.shuffler)(ds.shuffler.cache, dm.seed, world > 1)
            per_rank = {math.ceil(shuffler.get_len(_DistributedEnv(world, r, 1), workers, size,
                                                   1) / size) for r in range(world)}
            assert per_rank == {batches_per_process(n, size, world)}, (n, world, workers, size)


def test_every_process_needs_a_batch(jpeg_shards):
    """check_world_size (run by setup on every rank) at the exact boundary: 2 processes
    need 2 whole batches of training and of validation blocks."""
    from lightning import Trainer

    dm = CodecDataModule(str(jpeg_shards), context=64, batch_size=4, val_fraction=0.2,
                         allow_partial_samples=True)
    n, n_val = dm.n_train_blocks, dm.n_val_blocks
    assert (n, n_val) == (129, 32)

    def check(world, stage="fit", limit=1.0, **sizes):
        dm = CodecDataModule(str(jpeg_shards), context=64, val_fraction=0.2,
                             allow_partial_samples=True, **sizes)
        dm.trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             limit_val_batches=limit)
        dm.check_world_size(world, stage)

    check(2, batch_size=64, val_batch_size=16)  # 2 x 64 <= 129, 2 x 16 <= 32
    check(9, batch_size=14, val_batch_size=1)   # 129 // 14 = 9 batches, one each
    with pytest.raises(ConfigError) as e:
        check(2, batch_size=65, val_batch_size=16)
    assert str(e.value) == (
        f"{jpeg_shards}: 129 training blocks of 65 tokens for 2 processes; each process "
        "needs at least one batch of 65 (130 blocks in all): add data, lower "
        "--data.batch_size or use fewer devices")
    with pytest.raises(ConfigError, match="for 10 processes"):
        check(10, batch_size=14, val_batch_size=1)
    with pytest.raises(ConfigError) as e:
        check(2, batch_size=4, val_batch_size=17)
    assert str(e.value) == (
        f"{jpeg_shards} (val_fraction 0.2): 32 validation blocks of 65 tokens for 2 "
        "processes; each process needs at least one batch of 17 (34 blocks in all): raise "
        "--data.val_fraction, lower --data.val_batch_size or use fewer devices")
    with pytest.raises(ConfigError, match="32 validation blocks"):
        check(2, stage="validate", batch_size=4, val_batch_size=17)
    check(2, stage="validate", batch_size=65, val_batch_size=16)  # validate needs no train batch
    check(2, batch_size=4, val_batch_size=17, limit=0)  # validation switched off
    check(1, batch_size=129, val_batch_size=32)  # one process: every block, partial batches


def test_many_training_blocks_left_out_per_epoch_warn(jpeg_shards):
    """Several processes get the same whole batches: 129 blocks in batches of 43 for 2
    processes leave 43 out each epoch (33%), which warns; 1 of 129 does not."""
    import warnings

    def check(batch_size):
        dm = CodecDataModule(str(jpeg_shards), context=64, val_fraction=0.2,
                             allow_partial_samples=True, batch_size=batch_size,
                             val_batch_size=16)
        dm.check_world_size(2, "fit")

    with pytest.warns(UserWarning) as got:
        check(43)
    assert [str(w.message) for w in got] == [(
        f"{jpeg_shards}: 43 of 129 training blocks (33%) are left out each epoch: with 2 "
        "processes each gets the same 1 whole batch of 43; lower --data.batch_size or add "
        "data")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(64)  # 2 x 64 of 129: 1 left out


def test_bits_per_byte_counts_exact_bytes(jpeg_shards):
    dm = CodecDataModule(str(jpeg_shards), context=256, batch_size=2, val_fraction=0.0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    lm = CodecLM(preset="tiny", context=256, tokenizer=dm.tokenizer, profile=dm.profile)
    lm.configure_model()
    with torch.no_grad():
        loss, _, tgt, nbytes = lm._step(batch)
    tok = dm.tokenizer
    expected = sum(len(tok.decode([t])) for t in tgt.flatten().tolist())  # specials decode to b""
    assert int(nbytes) == expected
    assert lm.token_nbytes[tok.bos_id] == 0 and lm.token_nbytes[tok.eos_id] == 0
    assert lm.token_nbytes[tok.byte_ids[65]] == 1
    # the untrained model is near uniform: loss ~ ln(vocab)
    assert abs(float(loss) - math.log(tok.vocab_size)) < 0.5


def test_cosine_schedule_shape():
    f = [cosine_schedule(s, 10, 110, 1e-3, 1e-4) for s in range(130)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(f[:10]))
    assert all(a >= b for a, b in itertools.pairwise(f[10:111]))
    assert f[60] == pytest.approx((1e-4 + 0.9e-3 * 0.5) / 1e-3)
    assert f[110] == pytest.approx(0.1) and f[129] == pytest.approx(0.1)


def test_preview_pairs_prefer_complete_samples():
    samples = [b"\x01\x02\x03", b"\x04\x05"]
    tok = ByteTokenizer.train(samples, 267, "jpeg")
    ids_a = tok.encode(b"\x10\x11\x12\x13")  # complete: <s> 4 bytes </s>
    row0 = [tok.byte_ids[9]] * 3 + ids_a + [tok.bos_id, tok.byte_ids[1]]
    row1 = [tok.byte_ids[9]] * 10 + [tok.bos_id]
    batch = torch.tensor([row0 + [tok.byte_ids[2]], row1 + [tok.byte_ids[3]]])
    preds = batch[:, 1:].clone()  # a perfect model
    pairs = preview_pairs(batch, preds, tok, 5)
    assert tok.decode(pairs[0][0]) == b"\x10\x11\x12\x13" and pairs[0][0] == pairs[0][1]
    assert len(pairs) == 2 and tok.decode(pairs[1][0]) == b"\x03"


# --- the train and export verbs --------------------------------------------------------------
def test_fit_logs_previews_checkpoints_and_exports(jpeg_shards, tmp_path):
    from PIL import Image
    from transformers import AutoModelForCausalLM

    from codeclm.export import load_checkpoint
    from codeclm.model_dir import load_model_dir

    root = tmp_path / "run"
    assert jpeglm(["train", "fit", *jpeg_args(jpeg_shards, root)]) == 0
    rows = read_metrics(root)
    train = [r for r in rows if r["train/loss"]]
    val = [r for r in rows if r["val/loss"]]
    assert len(train) == 4 and len(val) == 2
    for r in train:
        assert math.isfinite(float(r["train/loss"])) and float(r["train/bpb"]) > 0
    for r in val:
        # bits per byte is loss * tokens / bytes / ln 2: more than loss / ln 2 per token when a
        # token covers less than ... here just consistent and positive
        assert float(r["val/bpb"]) > 0 and math.isfinite(float(r["val/loss"]))
    assert any(r["train/tokens_per_sec"] for r in rows)

    log_dir = max((root / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    with open(log_dir / "samples.csv") as f:
        previews = list(csv.DictReader(f))
    assert len(previews) == 4  # 2 validation runs x log_samples 2
    for p in previews:
        im = Image.open(p["png"])
        assert im.size == (64, 2 * 64 + 2) and im.mode == "RGB"  # real row over predicted row
    assert list((log_dir / "tb").glob("events.out.tfevents.*"))

    ckpt = root / "checkpoints" / "last.ckpt"
    assert load_checkpoint(ckpt)["global_step"] == 4
    out = tmp_path / "model"
    assert jpeglm(["export", str(ckpt), "-o", str(out)]) == 0
    hf = AutoModelForCausalLM.from_pretrained(out)
    loaded = load_model_dir(out, modality="jpeg")
    original = ByteTokenizer.load(jpeg_shards)
    assert loaded.tokenizer.token_bytes == original.token_bytes
    probe = bytes(range(256)) * 2
    assert loaded.tokenizer.encode(probe) == original.encode(probe)
    assert loaded.profile.name == "tiny"
    # the shards' codec library versions travel through the checkpoint into the model
    from codeclm import versions

    assert versions.read(out) == versions.read(jpeg_shards) == versions.current("jpeg")

    state = load_checkpoint(ckpt)["state_dict"]
    lm = CodecLM(preset="tiny", context=256, tokenizer=loaded.tokenizer)
    lm.configure_model()
    lm.load_state_dict(state)
    x = torch.tensor([loaded.tokenizer.encode(b"\xff\xd8 any bytes")])
    with torch.no_grad():
        assert torch.equal(hf(x).logits, lm.eval()(x))
        assert torch.equal(loaded.model(x).logits, lm(x))


def test_avclm_fit_validate_export(h264_shards, tmp_path):
    root = tmp_path / "run"
    args = ["--config", str(RECIPES / "avclm-tiny.yaml"), "--data.path", str(h264_shards),
            "--data.context", "128", "--data.allow_partial_samples", "true",
            "--data.batch_size", "2", "--data.val_fraction", "0.2", "--model.log_samples", "1",
            "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0", *quiet(root)]
    assert avclm(["train", "fit", *args]) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    assert avclm(["train", "validate", *args, "--ckpt_path", str(ckpt)]) == 0
    assert avclm(["export", str(ckpt), "-o", str(tmp_path / "m"), "--dtype", "bfloat16"]) == 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["max_position_embeddings"] == 128 and cfg["dtype"] == "bfloat16"
    assert json.loads((tmp_path / "m" / "profile.json").read_text())["modality"] == "h264"


# --- bad input: one line, before training ----------------------------------------------------
def one_line_error(capsys, fn, argv, prog):
    rc = fn(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1, err
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), err
    return err[0]


@pytest.mark.parametrize(
    "override, message",
    [
        (["--data.path", "/nonexistent/shards"], "shard directory not found"),
        (["--model.vocab_size", "999"], "does not match the tokenizer"),
        (["--data.context", "8"], "too short"),
        (["--data.context", "64"], "shorter than the mean sample"),
        (
            ["--data.context", "100000", "--data.allow_partial_samples", "true"],
            "longer than every shard chunk",
        ),
        (["--data.batch_size", "1000"], "fewer than one batch"),
        (["--model.preset", "huge"], "unknown model preset"),
    ],
)
def test_bad_configs_fail_in_one_line(jpeg_shards, tmp_path, capsys, override, message):
    argv = ["train", "fit", *jpeg_args(jpeg_shards, tmp_path / "run"), *override]
    line = one_line_error(capsys, jpeglm, argv, "jpeglm")
    assert message in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_wrong_modality_shards(h264_shards, tmp_path, capsys):
    line = one_line_error(capsys, jpeglm, ["train", "fit", *jpeg_args(h264_shards, tmp_path)],
                          "jpeglm")
    assert "these are h264 shards" in line and "avclm train" in line


def test_shards_beyond_the_tokenizer(jpeg_shards, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(jpeg_shards, bad)
    ByteTokenizer.train([b"\x00\x01"], 300, "jpeg").save(bad / "tokenizer.json")
    line = one_line_error(capsys, jpeglm, ["train", "fit", *jpeg_args(bad, tmp_path)],
                          "jpeglm")
    assert "shards hold token id" in line
    with pytest.raises(TokenizerError):
        CodecDataModule(str(bad), context=256)
    with pytest.raises(ConfigError):
        CodecDataModule(None)


def test_export_rejects_other_files(tmp_path, capsys):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    assert "not a readable checkpoint" in one_line_error(
        capsys, jpeglm, ["export", str(junk), "-o", str(tmp_path / "m")], "jpeglm")
    assert "no such checkpoint" in one_line_error(
        capsys, avclm, ["export", str(tmp_path / "nope.ckpt"), "-o", str(tmp_path / "m")], "avclm")
    assert not (tmp_path / "m").exists()


# --- recipes -------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", sorted(p.stem for p in RECIPES.glob("*.yaml")))
def test_recipe_prints_its_config(recipe, capsys):
    from codeclm.train_cli import make_cli

    modality = "jpeg" if recipe.startswith("jpeglm") else "h264"
    with pytest.raises(SystemExit) as e:
        make_cli(["fit", "--config", str(RECIPES / f"{recipe}.yaml"), "--print_config"], modality)
    assert e.value.code == 0
    import yaml

    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["gradient_clip_val"] == 1.0
    assert cfg["data"]["modality"] == modality
    assert "context" not in cfg["model"]  # set from data.context
    assert cfg["data"]["context"] >= 512


@pytest.mark.parametrize("recipe, context", [("jpeglm-7b", 12288), ("avclm-7b", 32768)])
def test_7b_recipes_build_llama2_7b_on_meta(recipe, context, jpeg_shards):
    from codeclm.models import n_params
    from codeclm.train_cli import parse_config

    cfg = parse_config(["--config", str(RECIPES / f"{recipe}.yaml"), "--trainer.num_nodes", "4"])
    assert cfg.trainer.num_nodes == 4 and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.strategy.class_path == "lightning.pytorch.strategies.ModelParallelStrategy"
    assert cfg.trainer.strategy.init_args.data_parallel_size == 8  # FSDP2 over a node's GPUs
    assert cfg.trainer.strategy.init_args.tensor_parallel_size == 1
    assert cfg.trainer.strategy.init_args.save_distributed_checkpoint is False
    assert cfg.trainer.gradient_clip_val == 1.0
    assert cfg.model.preset == "llama2-7b" and cfg.model.lr == 3e-4
    assert cfg.data.context == cfg.model.context == context
    tok = ByteTokenizer.load(jpeg_shards)
    init = {k: v for k, v in vars(cfg.model).items() if k not in ("tokenizer", "profile")}
    init["attn_implementation"] = "sdpa"  # flash-attn is checked at build time, on GPU only
    lm = CodecLM(**init, tokenizer=tok)
    with torch.device("meta"):
        model = lm.build_model()
    count = sum(p.numel() for p in model.parameters())
    assert count == n_params("llama2-7b", tok.vocab_size)
    assert 6.4e9 < count < 6.6e9  # Llama-2 7B (6.74B) less the 32K-entry embeddings and head
    assert model.config.max_position_embeddings == context


def test_tiny_recipe_instantiates(jpeg_shards, tmp_path):
    from codeclm.train_cli import make_cli

    cli = make_cli(["--config", str(RECIPES / "jpeglm-tiny.yaml"), "--data.path", str(jpeg_shards),
                    "--data.val_fraction", "0.2", *quiet(tmp_path)], "jpeg", run=False)
    assert cli.model.tokenizer.vocab_size == 384 and cli.model.hparams.context == 512
    assert cli.datamodule.block_size == 513 and cli.trainer.max_steps == 2000
    assert cli.trainer.checkpoint_callback.dirpath == str(tmp_path / "checkpoints")


def test_gradient_checkpointing_gives_the_same_gradients(jpeg_shards):
    tok = ByteTokenizer.load(jpeg_shards)
    x = torch.tensor([tok.encode(bytes(range(100)))[:65]] * 2)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        lm = CodecLM(preset="tiny", context=64, tokenizer=tok, gradient_checkpointing=ckpt)
        lm.configure_model()
        lm.train()
        lm._step(x)[0].backward()
        grads.append(torch.cat([p.grad.flatten() for p in lm.parameters()]))
    assert lm.model.is_gradient_checkpointing
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_flash_attention_needs_a_gpu(jpeg_shards):
    lm = CodecLM(preset="tiny", context=64, tokenizer=ByteTokenizer.load(jpeg_shards),
                 attn_implementation="flash_attention_2")
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the guard does not apply")
    with pytest.raises(ConfigError, match="flash_attention_2 needs a CUDA GPU"):
        lm.configure_model()


def test_resume_on_other_tokenizer_is_refused(jpeg_shards, tmp_path, capsys):
    root = tmp_path / "run"
    assert jpeglm(["train", "fit", *jpeg_args(jpeg_shards, root, steps=1),
                   "--model.log_samples", "0"]) == 0
    other = tmp_path / "other"
    shutil.copytree(jpeg_shards, other)
    ByteTokenizer.train([bytes(range(256)) * 3, b"\x00\x01" * 50], 384, "jpeg").save(
        other / "tokenizer.json")
    line = one_line_error(capsys, jpeglm, ["train", "fit", *jpeg_args(other, root, steps=2),
                                           "--ckpt_path", "last"], "jpeglm")
    assert "different tokenizer" in line


def test_weight_decay_skips_norms_only(jpeg_shards):
    lm = CodecLM(preset="tiny", context=64, tokenizer=ByteTokenizer.load(jpeg_shards),
                 weight_decay=0.1, decay_steps=10)
    lm.configure_model()
    opt = lm.configure_optimizers()["optimizer"]
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"])
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert len(no_decay["params"]) == 2 * lm.llama_config.num_hidden_layers + 1  # RMSNorm gains
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(lm.parameters()))


def test_init_from_an_exported_model(jpeg_shards, tmp_path, capsys):
    """`--model.init_from DIR` starts from an exported model's weights (fine-tuning, or a
    further training leg); a model of another preset or tokenizer is a one-line error."""
    from codeclm.export import load_checkpoint

    first = tmp_path / "first"
    assert jpeglm(["train", "fit", *jpeg_args(jpeg_shards, first, steps=2),
                   "--model.log_samples", "0"]) == 0
    exported = tmp_path / "exported"
    assert jpeglm(["export", str(first / "checkpoints" / "last.ckpt"), "-o", str(exported)]) == 0
    tok = ByteTokenizer.load(jpeg_shards)
    from safetensors.torch import load_file

    want = load_file(str(exported / "model.safetensors"))
    lm = CodecLM(preset="tiny", context=256, tokenizer=tok, init_from=str(exported))
    lm.configure_model()
    got = lm.model.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    fresh = CodecLM(preset="tiny", context=256, tokenizer=tok)
    fresh.configure_model()
    assert not torch.equal(fresh.model.state_dict()["model.embed_tokens.weight"],
                           want["model.embed_tokens.weight"])

    # a second leg through the CLI starts where the export ended (its first loss is the
    # first run's level, not a fresh init's) and writes its own checkpoint
    second = tmp_path / "second"
    assert jpeglm(["train", "fit", *jpeg_args(jpeg_shards, second, steps=1),
                   "--model.log_samples", "0", "--model.init_from", str(exported)]) == 0
    assert load_checkpoint(second / "checkpoints" / "last.ckpt")["global_step"] == 1
    x = torch.tensor([tok.encode(b"\xff\xd8 probe bytes" * 4)])
    with torch.no_grad():
        ce = lambda m: torch.nn.functional.cross_entropy(m(x)[0, :-1], x[0, 1:]).item()
        assert ce(lm.eval()) < ce(fresh.eval())

    other = tmp_path / "other"
    shutil.copytree(jpeg_shards, other)
    ByteTokenizer.train([bytes(range(256)) * 3, b"\x00\x01" * 50], 384, "jpeg").save(
        other / "tokenizer.json")
    for shards, extra, message in [
        (jpeg_shards, ["--model.preset", "mini"], "weights do not fit preset 'mini'"),
        (other, [], "its tokenizer differs from the data's"),
        (jpeg_shards, ["--model.init_from", str(tmp_path)], "not an exported model directory"),
    ]:
        argv = ["train", "fit", *jpeg_args(shards, tmp_path / "bad", steps=1),
                "--model.init_from", str(exported), *extra]
        assert message in one_line_error(capsys, jpeglm, argv, "jpeglm")


def test_fit_prints_no_lightning_noise(jpeg_shards, tmp_path, capfd, recwarn):
    """A step-bounded run with small epochs and the progress bar on: no LeafSpec,
    IterableDataset `__len__`, `log_every_n_steps` or litlogger messages, and the bar
    says "Epoch N", not "Epoch N/-2"."""
    from codeclm.train_noise import NOISE

    root = tmp_path / "run"
    argv = [*jpeg_args(jpeg_shards, root, steps=6), "--trainer.enable_progress_bar", "true",
            "--trainer.log_every_n_steps", "50"]
    assert jpeglm(["train", "fit", *argv]) == 0
    out, err = capfd.readouterr()
    shown = [str(w.message) for w in recwarn] + (out + err).splitlines()
    for pattern, _ in NOISE:
        assert not any(re.search(pattern, s) for s in shown), pattern
    assert "litlogger" not in out + err
    assert "Epoch 0" in out and not re.search(r"Epoch \d+/", out + err)
