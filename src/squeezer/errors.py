"""Exceptions raised by squeezer.

Every error a user can cause (a missing file, a damaged dataset, an unknown model name, a bad
option) is a :class:`SqueezerError`, so the command line can print it as one line. Each also
derives from the matching built-in type, so ``except FileNotFoundError`` keeps working.
"""

from __future__ import annotations


class SqueezerError(Exception):
    """Base class of the errors that squeezer raises on bad input."""


class ConfigError(SqueezerError, ValueError):
    """A configuration has an unknown key or an invalid value."""


class DatasetNotFoundError(SqueezerError, FileNotFoundError):
    """The files of a dataset are neither on disk nor downloadable."""


class DatasetFormatError(SqueezerError, ValueError):
    """A dataset file exists but is damaged or not in the expected format."""


class UnknownNameError(SqueezerError, LookupError):
    """A name (model, dataset, method) is not registered."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0]) if self.args else ""


class CheckpointError(SqueezerError, ValueError):
    """A checkpoint file is missing, damaged or not a squeezer checkpoint."""


class SqzFormatError(SqueezerError, ValueError):
    """A ``.sqz`` file is truncated, corrupted, forged or from an unknown format version."""


class SurgeryError(SqueezerError, RuntimeError):
    """A model cannot be traced or edited as asked, or a recorded edit does not fit it."""


class SpecError(SqueezerError, ValueError):
    """A module cannot be described as plain data, or a description cannot be built."""


class ModelError(SqueezerError, ValueError):
    """A model does not fit what was asked of it: wrong inputs, no layer to compress, or a
    file whose tensors do not fit the model it is loaded into."""


class ExportError(SqueezerError, RuntimeError):
    """A model cannot be exported (an operation with no ONNX form), or a file is not ONNX."""


class BackendError(SqueezerError, RuntimeError):
    """An execution backend is unknown, not installed, or cannot run the model."""
