"""Durations as users write them in config and SQL-adjacent settings: "20ms", "5s", "10m", "1h", "1d"."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(text: str) -> float:
    """Seconds for a duration string; ValueError with the accepted forms otherwise.

    >>> parse_duration("20ms")
    0.02
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like \"5s\", got {text!r}")
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r} (use e.g. \"20ms\", \"5s\", \"10m\", \"1h\", \"1d\")")
    return float(match.group(1)) * _UNITS[match.group(2)]
