"""Turn a folder of videos into litdata token shards (AVC-LM training data).

Every clip of every video (recursive; --clips all|N, --stride SECONDS) is encoded with
the profile's canonical H.264 codec, tokenized as [<s>] + tokens + [</s>] and written
to OUT as shards that litdata.StreamingDataset(OUT, item_loader=TokensLoader(block_size=B))
reads; OUT also gets profile.json, tokenizer.json, stats.json, skipped.jsonl (per file
or clip) and manifest.jsonl (each sample's file and clip start). Resumable per clip:
re-run the same command after an interruption.
"""

from . import shard_build


def add_arguments(parser) -> None:
    shard_build.add_arguments(parser, "video")


def run(args) -> int:
    return shard_build.run(args, "video")
