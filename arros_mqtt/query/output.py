"""A query's result written as `arros query --format` says: an aligned text table, CSV, JSON Lines or Parquet."""

from __future__ import annotations

import base64
import decimal
import io
import os
import sys

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from arros_mqtt.core.errors import UserError
from arros_mqtt.egress.encode import json_ready


def write_result(table: pa.Table, fmt: str, output: str | None) -> None:
    """Print `table` (or write it to `output`) as an aligned text table, CSV, JSON Lines or Parquet."""
    if fmt == "parquet" and output is None:
        raise UserError("--format parquet needs --output FILE")
    try:
        if fmt == "parquet":
            pq.write_table(table, output, compression="zstd")
            return
        data = {"table": _text_table, "csv": _csv, "json": _json_lines}[fmt](table)
        if output is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        with open(output, "wb") as handle:
            handle.write(data)
    except BrokenPipeError:  # `arros query ... | head`: the reader has what it wanted (Python docs' recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:
        raise UserError(f"cannot write {output!r}: {exc.strerror or exc}") from None


def _text_table(table: pa.Table) -> bytes:
    """Aligned columns; a value with line breaks (an EXPLAIN plan) spans several lines of its row."""
    header = table.column_names
    rows = [[cell.split("\n") for cell in row] for row in zip(*(_cells(c) for c in table.columns), strict=True)]
    widths = [max([len(h), *(len(line) for row in rows for line in row[i])]) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    for row in rows:
        for k in range(max(len(cell) for cell in row)):
            lines.append(" | ".join((cell[k] if k < len(cell) else "").ljust(w)
                                    for cell, w in zip(row, widths, strict=True)))
    lines.append(f"({table.num_rows} row{'' if table.num_rows == 1 else 's'})")
    return ("\n".join(line.rstrip() for line in lines) + "\n").encode()


def _cells(column: pa.ChunkedArray) -> list[str]:
    try:
        text = pc.cast(column, pa.string()).to_pylist()
    except pa.ArrowNotImplementedError:  # nested types: Python's rendering, per value
        text = [None if v is None else str(v) for v in column.to_pylist()]
    return ["NULL" if v is None else v.rstrip("\n") for v in text]


def _csv(table: pa.Table) -> bytes:
    flat = table.flatten()  # struct fields (e.g. a window's start and end) become columns
    sink = io.BytesIO()
    try:
        pa_csv.write_csv(flat, sink)
    except pa.ArrowNotImplementedError as exc:
        raise UserError(f"CSV cannot hold this result ({exc}); use --format json or parquet") from None
    return sink.getvalue()


def _json_lines(table: pa.Table) -> bytes:
    option = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE
    return b"".join(orjson.dumps(row, default=_json_default, option=option) for row in json_ready(table).to_pylist())


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")

