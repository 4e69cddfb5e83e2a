"""Export a training checkpoint as a model directory (HF config + safetensors + tokenizer +
profile).

Usage: avclm export DIR/checkpoints/last.ckpt -o MODEL_DIR [--dtype bfloat16]
"""

from codeclm import export


def add_arguments(parser) -> None:
    export.add_arguments(parser)


def run(args) -> int:
    return export.run(args, modality="h264")
