"""JPEG-LM: images as canonical JPEG bytes for a Llama language model."""
