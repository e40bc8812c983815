"""The one exception type the CLI turns into a single clear error line."""

from __future__ import annotations


class TinyAudioError(Exception):
    """An error meant for the user: a message and, optionally, a hint on what to do next."""

    exit_code = 1  # failed work

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(TinyAudioError):
    """The command line itself is wrong (a bad option value or combination): exit code 2, as for click's own."""

    exit_code = 2
