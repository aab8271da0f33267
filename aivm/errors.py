"""The one error type users see: a message, a hint, and a machine-readable reason.

Tests assert on `reason`, not on wording (the BuildStream way). The CLI prints
`error: <message>` and `hint: <hint>` and exits non-zero; tracebacks appear
only under `--debug`.
"""

from __future__ import annotations


class AivmError(Exception):
    """A failure the user can act on."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "", reason: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.reason = reason

    def __str__(self) -> str:
        return self.message


class GraphError(AivmError):
    """The graph itself is wrong: a cycle, a missing input, an unknown kind."""


class BuildError(AivmError):
    """A node failed to build."""


class StoreError(AivmError):
    """The store is unreadable, locked, or of another format version."""


class ConfigError(AivmError):
    """The declared configuration is invalid; carries file:line where known."""

    exit_code = 2


class CommandError(AivmError):
    """A subprocess failed; the message names the command and its stderr tail."""


class Aborted(AivmError):
    """The user declined a step; nothing after it ran."""

    exit_code = 3
