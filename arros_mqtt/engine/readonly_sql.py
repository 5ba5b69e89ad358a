"""Read-only SQL: the options every subscription is planned with, and what a query's plan says.

DataFusion refuses DDL (CREATE [EXTERNAL] TABLE/VIEW, DROP), DML (INSERT, COPY ... TO) and
statements (SET, PREPARE) under these options; URL tables (`SELECT * FROM '/etc/passwd'`) stay off
because we never enable them. On top of that a subscription must be one query that reads exactly one
stream; its plan tells which kind of subscription it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
from datafusion import DataFrame, SessionContext, SQLOptions

from arros_mqtt.core.errors import SqlError
from arros_mqtt.engine.logical_plan import facts_of, read_plan, top_kind
from arros_mqtt.engine.run_bounds import check_literal_sizes, python_error
from arros_mqtt.engine.window_functions import WINDOW_FUNCTIONS

PER_ROW = "per_row"
WINDOWED = "windowed"
RUNNING = "running"
_WRITE_KEYWORDS = {"COPY", "CREATE", "DROP", "INSERT", "UPDATE", "DELETE", "SET", "PREPARE", "EXECUTE", "ALTER",
                   "TRUNCATE", "DESCRIBE", "SHOW", "EXPLAIN", "DEALLOCATE", "RESET", "MERGE"}
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_NOT_A_QUERY = {"Explain", "Analyze", "DescribeTable", "Statement", "Copy", "Dml", "Ddl", "Extension"}


def read_only_options() -> SQLOptions:
    """Fresh options each time: the `with_*` methods mutate the object in place."""
    return SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)


@dataclass(frozen=True)
class QueryShape:
    """What planning a subscription's SQL found out, before any row flows."""

    kind: str
    stream: str
    tables: tuple[str, ...]
    output_schema: pa.Schema
    window_function: str | None = None  # tumble, hop or session in the GROUP BY
    window_column: str | None = None  # the column the window function reads, None if not a column


def plan(ctx: SessionContext, sql: str) -> DataFrame:
    """Plan `sql` read-only; SqlError with DataFusion's reason otherwise."""
    words = _COMMENTS.sub(" ", sql).split()
    first = words[0].upper().rstrip(";(") if words else ""
    if first in _WRITE_KEYWORDS:
        raise SqlError(f"{first} is not allowed: a subscription is one read-only SELECT query", code="forbidden")
    check_literal_sizes(sql)
    try:
        return ctx.sql_with_options(sql, read_only_options())
    except Exception as exc:  # DataFusion raises ValueError/Exception with the reason as text
        raise SqlError(_clean(str(exc)), code=_code_for(str(exc))) from None


def analyze(ctx: SessionContext, sql: str, streams: set[str], tables: set[str]) -> QueryShape:
    """Plan `sql` and classify it; SqlError for anything a continuous subscription cannot run."""
    df = plan(ctx, sql)
    top = top_kind(df.logical_plan())
    if top in _NOT_A_QUERY:
        raise SqlError(f"a subscription must be a SELECT query, not {top.upper()}", code="forbidden")
    found = facts_of(read_plan(df.logical_plan()), streams, WINDOW_FUNCTIONS)
    # subqueries in expressions appear as joins only in the optimized plan
    try:
        optimized = df.optimized_logical_plan()
    except Exception as exc:  # a type error only the optimizer finds (bool > int): the SQL's, not ours
        raise SqlError(_clean(str(exc)), code=_code_for(str(exc))) from None
    found.merge(facts_of(read_plan(optimized), streams, WINDOW_FUNCTIONS))
    read_streams = sorted(found.streams)
    if not read_streams:
        known = ", ".join(sorted(streams)) or "(none declared)"
        raise SqlError(f"the query reads no stream; it must read one of: {known}", code="unknown_stream")
    if found.stream_scans > 1:
        raise SqlError(f"the query reads streams more than once ({', '.join(read_streams)}): stream-to-stream "
                       "joins are not supported; join a stream with lookup tables instead")
    if found.window_functions:
        raise SqlError("window functions with OVER (...) are not supported on streams; "
                       "use GROUP BY tumble/hop/session for windows")
    if found.limit:
        raise SqlError("LIMIT is not supported in a continuous subscription (it would apply per micro-batch)")
    if found.aggregate_nodes > 1:
        raise SqlError("aggregates over the stream must all be in the outermost SELECT (one GROUP BY); "
                       "nested aggregate queries are not supported")
    if len(found.window_calls) > 1:
        raise SqlError("a query can GROUP BY only one window function (tumble, hop or session); found "
                       + ", ".join(name for name, _ in found.window_calls))
    kind = WINDOWED if found.window_calls else RUNNING if found.aggregates else PER_ROW
    window_function, window_column = found.window_calls[0] if found.window_calls else (None, None)
    return QueryShape(kind=kind, stream=read_streams[0], tables=tuple(sorted(found.tables & tables)),
                      output_schema=schema_of(df), window_function=window_function, window_column=window_column)


def schema_of(df: DataFrame) -> pa.Schema:
    """A planned query's result schema (older DataFusion releases gave it as another type)."""
    schema = df.schema()
    return schema if isinstance(schema, pa.Schema) else pa.schema(schema)


def _code_for(message: str) -> str:
    return "forbidden" if "not supported:" in message and ("DDL" in message or "DML" in message
                                                           or "Statement" in message) else "invalid_sql"


def _clean(message: str) -> str:
    """DataFusion's message without its error-type prefixes, first lines only."""
    message = python_error(message)
    for prefix in ("DataFusion error: ", "Error during planning: ", "Schema error: ", "SQL error: ",
                   "This feature is not implemented: "):
        message = message.replace(prefix, "")
    message = message.replace("DML not supported: COPY", "COPY is not allowed: subscriptions are read-only")
    message = message.replace("DDL not supported:", "DDL is not allowed (subscriptions are read-only):")
    message = message.replace("DML not supported:", "DML is not allowed (subscriptions are read-only):")
    message = message.replace("Statement not supported:", "statements are not allowed:")
    message = message.replace("Recursive CTEs are not enabled", "recursive CTEs (WITH RECURSIVE) are not supported "
                              "in a continuous subscription")
    if "table 'datafusion.public." in message:
        message = message.replace("table 'datafusion.public.", "unknown stream or table '").replace("' not found", "'")
    return " ".join(message.split())[:500]
