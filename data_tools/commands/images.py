"""Turn a folder of images into litdata token shards (JPEG-LM training data).

Every image (recursive) is encoded with the profile's canonical JPEG codec (the fit
crop, plus --crops N seeded random crops), tokenized as [<s>] + tokens + [</s>] and
written to OUT as shards that litdata.StreamingDataset(OUT,
item_loader=TokensLoader(block_size=B)) reads; OUT also gets profile.json,
tokenizer.json, stats.json, skipped.jsonl and manifest.jsonl (each sample's file and
crop). Resumable: re-run the same command after an interruption.
"""

from . import shard_build


def add_arguments(parser) -> None:
    shard_build.add_arguments(parser, "image")


def run(args) -> int:
    return shard_build.run(args, "image")
