"""One root error class; subclasses say whose fault it is and whether retrying can help.

User errors (config, SQL, payloads) carry a message the user can act on; the CLI prints it as one
line. External errors (broker unreachable) may succeed on retry. Anything else is our bug.
"""

from __future__ import annotations


class ArrosError(Exception):
    """Root of every error Arros raises on purpose."""

    retryable = False


class UserError(ArrosError):
    """The user's input is wrong: fix it and try again."""


class ConfigError(UserError):
    """A config file problem, naming the file and the key."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + message)


class SqlError(UserError):
    """A subscription's SQL is invalid, refused (not read-only) or of an unsupported shape."""

    def __init__(self, message: str, code: str = "invalid_sql") -> None:
        self.code = code
        super().__init__(message)


class DecodeError(UserError):
    """A payload could not be decoded or a value could not be cast to the stream's schema."""


class ExternalError(ArrosError):
    """Something outside Arros failed (broker, file system); retrying may help."""

    retryable = True


class DependencyError(ArrosError):
    """An installed library is not a version Arros was tested with, or lacks a private name Arros relies on
    (transport/paho_internals.py, transport/amqtt_internals.py): installing a tested version fixes it."""
