"""Text -> timestamps, per column: what text formats (csv) need and Arrow's cast does not do alone.

A column may hold epoch integers in the column's unit (`1714557600000` for `timestamp[ms]`) or ISO 8601 /
RFC 3339 strings (`2024-05-01T10:00:00Z`, `2024-05-01T12:00:00+02:00`; without a zone they are UTC).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

_EPOCH = r"^\s*-?\d+\s*$"


def parse_timestamps(strings: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """Strings -> `target` (a timestamp type); pa.ArrowInvalid names the value that is neither form."""
    if strings.null_count == len(strings):
        return pa.nulls(len(strings), target) if isinstance(strings, pa.Array) else strings.cast(target)
    is_epoch = pc.match_substring_regex(strings, _EPOCH)
    if pc.all(is_epoch).as_py():
        return pc.cast(pc.cast(pc.utf8_trim_whitespace(strings), pa.int64()), target)
    if not pc.any(is_epoch).as_py():
        return _from_iso(strings, target)
    epochs = pc.cast(pc.cast(pc.utf8_trim_whitespace(pc.if_else(is_epoch, strings, None)), pa.int64()), target)
    return pc.coalesce(epochs, _from_iso(pc.if_else(is_epoch, None, strings), target))


def _from_iso(strings: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array | pa.ChunkedArray:
    try:
        parsed = pc.cast(strings, pa.timestamp(target.unit, tz="UTC"))
    except pa.ArrowInvalid:  # no zone given: the values are UTC
        parsed = pc.cast(pc.cast(strings, pa.timestamp(target.unit)), pa.timestamp(target.unit, tz="UTC"))
    return pc.cast(parsed, target)
