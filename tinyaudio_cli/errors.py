"""The one exception type the CLI turns into a single clear error line (defined in model/errors.py, which an
exported model carries verbatim; importing it from here is the same class)."""

from .model.errors import TinyAudioError, UsageError

__all__ = ["TinyAudioError", "UsageError"]
