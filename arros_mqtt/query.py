"""`arros query SQL`: read-only DataFusion SQL over the Parquet archives.

Every archive folder with at least one complete file is a table: `streams.NAME` and
`subscriptions.NAME`, and plain `NAME` when no stream and subscription share it. Each is a listing
table over the Hive-partitioned folder, so `date` (DATE) and `hour` (INT) are columns too, and a
WHERE on them skips the other partitions' files unread (`EXPLAIN` shows which files are scanned).
Files with different schemas are read by column name; a column missing from a file reads as null.
Queries are planned with the same read-only options as subscriptions: no DDL, DML (`COPY`),
`SET`, or reading arbitrary files.
"""

from __future__ import annotations

import base64
import decimal
import io
import os
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from datafusion import SessionConfig, SessionContext
from datafusion.catalog import Schema

from arros_mqtt.core.errors import UserError
from arros_mqtt.egress.archive_layout import KINDS, PARTITION_COLUMNS, archive_folders, has_files
from arros_mqtt.egress.encode import json_ready
from arros_mqtt.engine.readonly_sql import read_only_options


def archive_context(root: Path) -> tuple[SessionContext, list[str]]:
    """A DataFusion context with every archive under `root` registered; the table names it has."""
    if not root.is_dir():
        raise UserError(f"archive folder {str(root)!r} does not exist (set [archive] dir with -c, or --dir)")
    ctx = SessionContext(SessionConfig().with_information_schema(True))
    folders = archive_folders(root)
    found = {kind: {name: path for name, path in folders[kind].items() if has_files(path)} for kind in KINDS}
    plain = [name for kind in KINDS for name in found[kind]]
    names = []
    for kind in KINDS:
        ctx.catalog().register_schema(kind, Schema.memory_schema())
        for name, path in found[kind].items():
            qualified = f"{kind}.{name}"
            _register(ctx, qualified, path)
            names.append(qualified)
            if plain.count(name) == 1:
                _register(ctx, name, path)
                names.append(name)
    return ctx, names


def run_query(root: Path, sql: str) -> pa.Table:
    """The result of `sql` over the archives under `root`; UserError with a one-line reason."""
    ctx, names = archive_context(root)
    try:
        table = ctx.sql_with_options(sql, read_only_options()).to_arrow_table()
    except Exception as exc:  # DataFusion raises plain exceptions with the reason as text
        raise UserError(_message(str(exc), names)) from None
    return _plain_types(table)


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


def _register(ctx: SessionContext, name: str, folder: Path) -> None:
    """A listing table with `date`/`hour` partition columns, or without when the data has such columns."""
    ctx.register_listing_table(name, str(folder), table_partition_cols=list(PARTITION_COLUMNS),
                               file_extension=".parquet")
    try:
        ctx.sql(f"SELECT * FROM {name} LIMIT 0").collect()
    except Exception:  # a data column named `date` or `hour`: that column wins, without pruning
        ctx.deregister_table(name)
        ctx.register_listing_table(name, str(folder), file_extension=".parquet")


def _plain_types(table: pa.Table) -> pa.Table:
    """String/binary views (DataFusion reads Parquet strings as views) as plain types for every writer."""
    views = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}
    if not any(f.type in views for f in table.schema):
        return table
    return table.cast(pa.schema([f.with_type(views.get(f.type, f.type)) for f in table.schema]))


def _message(text: str, names: list[str]) -> str:
    first = " ".join(text.split())
    for prefix in ("DataFusion error: ", "Error during planning: ", "Schema error: ", "SQL error: ",
                   "Arrow error: ", "This feature is not implemented: ", "Execution error: "):
        first = first.replace(prefix, "")
    if "table 'datafusion.public." in first and "not found" in first:
        missing = first.split("table 'datafusion.public.", 1)[1].split("' not found", 1)[0]
        known = ", ".join(names) or "none: no archive has files yet"
        return f"unknown table {missing!r} (archived tables: {known})"
    for kind in ("DML", "DDL", "Statement"):
        first = first.replace(f"{kind} not supported:", f"{kind} is not allowed (queries are read-only):")
    return first[:500]


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

