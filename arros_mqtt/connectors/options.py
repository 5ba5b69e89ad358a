"""Strict reading of a connector's options (a TOML table as a dict): errors name the key."""

from __future__ import annotations

from typing import Any

from arros_mqtt.core.connector_kinds import OptionError


class Options:
    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, dict):
            raise OptionError(path or "options", f"expected a table, got {type(data).__name__}")
        self.data, self.path = data, path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> OptionError:
        return OptionError(self.key(name), message)

    def only(self, *allowed: str) -> None:
        for name in self.data:
            if name not in allowed:
                raise self.error(name, f"unknown key (known keys: {', '.join(allowed)})")

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if name not in self.data:
            if required:
                raise self.error(name, "is required")
            return default
        value = self.data[name]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(name, f"expected {_names(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.error(name, f"expected {_names(kind)}, got {type(value).__name__}")
        return value

    def integer(self, name: str, default: int | None = None, minimum: int = 0, maximum: int | None = None,
                required: bool = False) -> int:
        value = self.get(name, int, default, required)
        if value is not None and (value < minimum or (maximum is not None and value > maximum)):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise self.error(name, f"must be {bounds}, got {value}")
        return value

    def number(self, name: str, default: float | None = None) -> float | None:
        value = self.get(name, (int, float), default)
        return None if value is None else float(value)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise self.error(name, f"unknown value {value!r} (choose one of: {', '.join(choices)})")
        return value

    def items(self, name: str) -> list[Options]:
        """A required, non-empty array of tables, each with its own path (`registers[2]`)."""
        values = self.get(name, list, required=True)
        if not values:
            raise self.error(name, "is empty")
        return [Options(item, f"{self.key(name)}[{i}]") for i, item in enumerate(values)]


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", int: "an integer", float: "a number", list: "an array", dict: "a table",
                        bool: "a boolean"}.get(k, k.__name__) for k in kinds)
