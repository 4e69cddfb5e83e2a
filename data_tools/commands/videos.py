"""Turn a folder of videos into litdata token shards (AVC-LM training data).

Every video (recursive) is encoded with the profile's canonical H.264 codec, tokenized
as [<s>] + tokens + [</s>] and written to OUT as shards that
litdata.StreamingDataset(OUT, item_loader=TokensLoader(block_size=B)) reads; OUT also
gets profile.json, tokenizer.json, stats.json and skipped.jsonl. Resumable: re-run the
same command after an interruption.
"""

from . import _build


def add_arguments(parser) -> None:
    _build.add_arguments(parser, "video")


def run(args) -> int:
    return _build.run(args, "video")
