"""Connector kinds by name, from the `arros.connectors` entry-point group (built-ins declared there too)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arros_mqtt.connectors.base import Connector

GROUP = "arros.connectors"


class OptionError(ValueError):
    """A connector option is wrong; `key` is its path inside `[connectors.NAME]`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def kinds() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_kind(kind: str) -> type[Connector]:
    """The connector class registered as `kind`; LookupError naming the known kinds otherwise."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == kind]
    if not found:
        raise LookupError(f"unknown connector kind {kind!r} (installed: {', '.join(kinds()) or 'none'})")
    return found[0].load()
