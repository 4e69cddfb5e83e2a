"""AVC-LM: videos as canonical H.264 (Annex-B) bytes for a Llama language model."""
