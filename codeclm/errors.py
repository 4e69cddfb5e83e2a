"""Typed errors. Library code raises these; only CLIs turn them into one-line messages."""


class CodecLMError(Exception):
    """Base class of every error this toolkit raises on purpose."""


class InputError(CodecLMError):
    """An input file is missing, empty, unreadable, not media, or too large."""


class EncodeError(CodecLMError):
    """Media could not be turned into canonical codec bytes."""


class DecodeError(CodecLMError):
    """Codec bytes could not be decoded (strict mode: any corruption)."""


class OutputError(CodecLMError):
    """An output cannot be written (unwritable directory, disk full, closed pipe)."""


class ProfileError(CodecLMError):
    """An unknown profile name, or a profile that does not match what it is used with."""


class TokenizerError(CodecLMError):
    """A tokenizer is missing, malformed, or does not match a model or profile."""


class ModelError(CodecLMError):
    """A model directory is missing, malformed, or of the wrong modality."""


class ConfigError(CodecLMError):
    """A training / generation configuration cannot work (e.g. context too short)."""
