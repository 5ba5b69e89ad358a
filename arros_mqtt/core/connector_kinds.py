"""Connector kinds by name, from the `arros.connectors` entry-point group (built-ins declared there too)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol

from arros_mqtt.core.errors import UserError

GROUP = "arros.connectors"


class ConnectorKind(Protocol):
    """What the config and `arros check` ask of a connector class before any instance exists
    (`arros_mqtt.connectors.base.Connector` is the base every kind derives from)."""

    requires: ClassVar[str]

    @classmethod
    def parse_options(cls, options: dict[str, Any]) -> Any: ...

    @classmethod
    def columns(cls, options: Any) -> list[str]: ...

    @classmethod
    def describe(cls, options: Any) -> str: ...


class OptionError(UserError, ValueError):
    """A connector option is wrong; `key` is its path inside `[connectors.NAME]`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def kinds() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_kind(kind: str) -> type[ConnectorKind]:
    """The connector class registered as `kind`; LookupError naming the known kinds otherwise."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == kind]
    if not found:
        raise LookupError(f"unknown connector kind {kind!r} (installed: {', '.join(kinds()) or 'none'})")
    return found[0].load()
