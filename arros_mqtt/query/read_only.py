"""Planning a query read-only, as subscriptions are: the same DataFusion options, a first-keyword check,
and DataFusion's reason as a one-line message naming the tables there are."""

from __future__ import annotations

import re

import pyarrow as pa
from datafusion import DataFrame, SessionContext

from arros_mqtt.core.errors import UserError
from arros_mqtt.engine.readonly_sql import read_only_options

# EXPLAIN stays allowed: it shows which archive files a query reads
_WRITE_KEYWORDS = {"COPY", "CREATE", "DROP", "INSERT", "UPDATE", "DELETE", "SET", "PREPARE", "EXECUTE", "ALTER",
                   "TRUNCATE", "DEALLOCATE", "RESET", "MERGE"}
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_VIEWS = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}


def plan_read_only(ctx: SessionContext, sql: str, names: list[str], what: str = "archived tables") -> DataFrame:
    """`sql` planned read-only over `ctx`; UserError with a one-line reason (`names`: its `what`)."""
    words = _COMMENTS.sub(" ", sql).split()
    first = words[0].upper().rstrip(";(") if words else ""
    refused = f"{first} is not allowed (queries are read-only)"
    try:
        df = ctx.sql_with_options(sql, read_only_options())
    except Exception as exc:  # DataFusion raises plain exceptions with the reason as text
        reason = message(str(exc), names, what)
        # a write that fails planning for another reason (a wrong column count) is refused as a write
        raise UserError(refused if first in _WRITE_KEYWORDS and "not allowed" not in reason else reason) from None
    if first in _WRITE_KEYWORDS:  # what the options let through is still refused by its first word
        raise UserError(refused)
    return df


def message(text: str, names: list[str], what: str = "archived tables") -> str:
    """DataFusion's error text without its type prefixes, on one line; an unknown table lists the known ones."""
    first = " ".join(text.split())
    for prefix in ("DataFusion error: ", "Error during planning: ", "Schema error: ", "SQL error: ",
                   "Arrow error: ", "This feature is not implemented: ", "Execution error: "):
        first = first.replace(prefix, "")
    if "table 'datafusion." in first and "not found" in first:
        missing = first.split("table 'datafusion.", 1)[1].split("' not found", 1)[0].removeprefix("public.")
        known = ", ".join(names) or "none: no archive has files yet"
        return f"unknown table {missing!r} ({what}: {known})"
    for kind in ("DML", "DDL", "Statement"):
        first = first.replace(f"{kind} not supported:", f"{kind} is not allowed (queries are read-only):")
    return first[:500]


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """String/binary views as plain types, which every writer and Flight SQL client reads."""
    if not any(f.type in _VIEWS for f in schema):
        return schema
    return pa.schema([f.with_type(_VIEWS.get(f.type, f.type)) for f in schema], metadata=schema.metadata)


def plain_types(table: pa.Table) -> pa.Table:
    schema = plain_schema(table.schema)
    return table if schema is table.schema else table.cast(schema)
