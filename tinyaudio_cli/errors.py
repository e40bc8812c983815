"""The one exception type the CLI turns into a single clear error line."""

from __future__ import annotations


class TinyAudioError(Exception):
    """An error meant for the user: a message and, optionally, a hint on what to do next."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(TinyAudioError):
    """A bad option or argument: the command line, not the work, is wrong (exit code 2)."""
