"""Arrow type names as pyarrow spells them, parsed into `pa.DataType`s for stream schemas.

Accepts the aliases pyarrow knows (`int64`, `float64`, `string`, `bool`, `date32`, `timestamp[ms]`),
timestamps with a time zone (`timestamp[us, tz=UTC]`), `decimal128(p, s)`, `list<T>` and
`struct<name: T, ...>`, nested as deep as needed.
"""

from __future__ import annotations

import re

import pyarrow as pa

_TIMESTAMP = re.compile(r"^timestamp\[\s*(s|ms|us|ns)\s*(?:,\s*tz\s*=\s*([^\]]+?)\s*)?\]$")
_DECIMAL = re.compile(r"^decimal(128|256)?\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


def parse_arrow_type(text: str) -> pa.DataType:
    """The Arrow type named by `text`; ValueError naming what was not understood."""
    if not isinstance(text, str):
        raise ValueError(f"expected an Arrow type name like \"float64\", got {text!r}")
    name = text.strip()
    if match := _TIMESTAMP.match(name):
        return pa.timestamp(match.group(1), tz=match.group(2))
    if match := _DECIMAL.match(name):
        factory = pa.decimal256 if match.group(1) == "256" else pa.decimal128
        return factory(int(match.group(2)), int(match.group(3)))
    if name.startswith("list<") and name.endswith(">"):
        inner = name[5:-1]
        if ":" in inner.split("<")[0]:  # "list<item: int64>" as pyarrow prints it
            inner = inner.split(":", 1)[1]
        return pa.list_(parse_arrow_type(inner))
    if name.startswith("struct<") and name.endswith(">"):
        return pa.struct([_parse_field(part) for part in _split_top_level(name[7:-1])])
    try:
        return pa.type_for_alias(name)
    except (ValueError, KeyError):
        raise ValueError(
            f"unknown Arrow type {text!r} (use e.g. int64, float64, string, bool, timestamp[ms], "
            "timestamp[ms, tz=UTC], list<float64>, struct<x: float64, y: float64>)"
        ) from None


def _parse_field(part: str) -> pa.Field:
    if ":" not in part:
        raise ValueError(f"struct field {part.strip()!r} needs a type, as in \"x: float64\"")
    name, type_name = part.split(":", 1)
    return pa.field(name.strip(), parse_arrow_type(type_name))


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside <...>, [...] or (...)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "<[(":
            depth += 1
        elif char in ">])":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]
