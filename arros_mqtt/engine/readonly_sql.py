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
from datafusion import DataFrame, Expr, LogicalPlan, SessionContext, SQLOptions

from arros_mqtt.core.errors import SqlError
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
    try:
        return ctx.sql_with_options(sql, read_only_options())
    except Exception as exc:  # DataFusion raises ValueError/Exception with the reason as text
        raise SqlError(_clean(str(exc)), code=_code_for(str(exc))) from None


def analyze(ctx: SessionContext, sql: str, streams: set[str], tables: set[str]) -> QueryShape:
    """Plan `sql` and classify it; SqlError for anything a continuous subscription cannot run."""
    df = plan(ctx, sql)
    top = type(df.logical_plan().to_variant()).__name__
    if top in _NOT_A_QUERY:
        raise SqlError(f"a subscription must be a SELECT query, not {top.upper()}", code="forbidden")
    found = _Walk(streams)
    found.visit(df.logical_plan())
    optimized = _Walk(streams)
    optimized.visit(df.optimized_logical_plan())  # subqueries in expressions appear as joins only here
    found.merge(optimized)
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
                      output_schema=_schema_of(df), window_function=window_function, window_column=window_column)


class _Walk:
    """Collects what the plan reads and which operators sit above a stream scan."""

    def __init__(self, streams: set[str]) -> None:
        self.stream_names = streams
        self.streams: set[str] = set()
        self.tables: set[str] = set()
        self.stream_scans = 0
        self.aggregates = self.window_functions = self.limit = False
        self.aggregate_nodes = 0
        self.window_calls: list[tuple[str, str | None]] = []  # (function, column it reads) in GROUP BY

    def merge(self, other: _Walk) -> None:
        self.streams |= other.streams
        self.tables |= other.tables
        self.stream_scans = max(self.stream_scans, other.stream_scans)
        self.aggregates |= other.aggregates
        self.window_functions |= other.window_functions
        self.limit |= other.limit

    def visit(self, node: LogicalPlan) -> bool:
        """True when a stream is scanned at or below `node`."""
        variant = node.to_variant()
        name = type(variant).__name__
        over_stream = False
        for child in node.inputs():
            over_stream |= self.visit(child)
        if name == "TableScan":
            table = variant.table_name().split(".")[-1]
            self.tables.add(table)
            if table in self.stream_names:
                self.streams.add(table)
                self.stream_scans += 1
                return True
        if over_stream:
            self.aggregates |= name in ("Aggregate", "Distinct")
            self.window_functions |= name in ("Window", "WindowExpr")
            self.limit |= name == "Limit"
            if name == "Aggregate":
                self.aggregate_nodes += 1
                self.window_calls += [c for e in variant.group_by_exprs() if (c := _window_call(e))]
        return over_stream


def _window_call(expr: Expr) -> tuple[str, str | None] | None:
    """(window function, column name of its first argument) when `expr` is a window function call."""
    if expr.variant_name() != "ScalarFunction" or expr.rex_call_operator() not in WINDOW_FUNCTIONS:
        return None
    operands = expr.rex_call_operands()
    first = operands[0] if operands else None
    column = first.to_variant().name() if first is not None and first.variant_name() == "Column" else None
    return expr.rex_call_operator(), column


def _schema_of(df: DataFrame) -> pa.Schema:
    schema = df.schema()
    return schema if isinstance(schema, pa.Schema) else pa.schema(schema)


def _code_for(message: str) -> str:
    return "forbidden" if "not supported:" in message and ("DDL" in message or "DML" in message
                                                           or "Statement" in message) else "invalid_sql"


def _clean(message: str) -> str:
    """DataFusion's message without its error-type prefixes, first lines only."""
    for prefix in ("DataFusion error: ", "Error during planning: ", "Schema error: ", "SQL error: ",
                   "This feature is not implemented: "):
        message = message.replace(prefix, "")
    message = message.replace("DML not supported: COPY", "COPY is not allowed: subscriptions are read-only")
    message = message.replace("DDL not supported:", "DDL is not allowed (subscriptions are read-only):")
    message = message.replace("DML not supported:", "DML is not allowed (subscriptions are read-only):")
    message = message.replace("Statement not supported:", "statements are not allowed:")
    if "table 'datafusion.public." in message:
        message = message.replace("table 'datafusion.public.", "unknown stream or table '").replace("' not found", "'")
    return " ".join(message.split())[:500]
