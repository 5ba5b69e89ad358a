"""The simplest per-row subscriptions run by pyarrow directly, without a DataFusion query per batch.

`SELECT col [AS name], ... FROM stream [WHERE predicate]`, where the predicate combines comparisons of a
column with a column or a literal (=, <>, <, <=, >, >=, with numbers, strings or booleans on both
sides), AND, OR, NOT, IS [NOT] NULL, is what most device alerts and routing rules look like. DataFusion
spends ~0.3-1 ms of fixed cost per query on a micro-batch; `Table.filter` with the same predicate as a
pyarrow expression costs tens of microseconds, which is what lets thousands of such subscriptions, or
small low-latency batches, run on one engine thread. SQL's three-valued logic is kept: AND/OR are
Kleene, and rows where the predicate is NULL are dropped, as by WHERE. Anything else (expressions in
the SELECT list, functions, casts, joins, other types) is planned and run by DataFusion as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from datafusion import Expr, LogicalPlan

Evaluate = Callable[[pa.Table], pa.ChunkedArray | pa.Scalar]  # a predicate's part over one batch
_COMPARISONS = {"=": pc.equal, "!=": pc.not_equal, "<>": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
                ">": pc.greater, ">=": pc.greater_equal}


@dataclass(frozen=True)
class ArrowSelect:
    columns: tuple[str, ...]  # stream columns, in output order
    schema: pa.Schema  # the subscription's output schema (names as the query gives them)
    predicate: Evaluate | None  # -> a boolean array (compute kernels on the columns; no Acero plan per call)

    def run(self, batch: pa.Table) -> pa.Table:
        rows = batch if self.predicate is None else batch.filter(self.predicate(batch))
        return pa.Table.from_arrays([rows.column(c) for c in self.columns], schema=self.schema)


def compile_select(logical_plan: LogicalPlan, stream: str, stream_schema: pa.Schema,
                   output_schema: pa.Schema) -> ArrowSelect | None:
    """An `ArrowSelect` doing what the plan does, or None when the query is not that simple."""
    top = logical_plan.to_variant()
    if type(top).__name__ != "Projection":
        return None
    child = logical_plan.inputs()[0]
    predicate = None
    if type(child.to_variant()).__name__ == "Filter":
        predicate = compile_predicate(child.to_variant().predicate(), stream_schema)
        if predicate is None:
            return None
        child = child.inputs()[0]
    if type(child.to_variant()).__name__ == "SubqueryAlias":
        child = child.inputs()[0]
    scan = child.to_variant()
    if type(scan).__name__ != "TableScan" or scan.table_name().split(".")[-1] != stream:
        return None
    columns = []
    for expr in top.projections():
        if expr.variant_name() == "Alias":
            expr = expr.to_variant().expr()
        if expr.variant_name() != "Column":
            return None
        columns.append(expr.to_variant().name())
    if len(columns) != len(output_schema) or any(
            name not in stream_schema.names or stream_schema.field(name).type != field.type
            for name, field in zip(columns, output_schema, strict=True)):
        return None
    compiled = ArrowSelect(tuple(columns), output_schema, predicate)
    try:
        compiled.run(stream_schema.empty_table())  # kernels exist for these types (a cheap proof)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    return compiled


def _kind(data_type: pa.DataType) -> str | None:
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return "number"
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "string"
    if pa.types.is_boolean(data_type):
        return "bool"
    return None


def compile_predicate(expr: Expr, schema: pa.Schema) -> Evaluate | None:
    """The predicate as a function of the batch; None for anything outside the simple subset."""
    compiled = _operand(expr, schema)
    return compiled[0] if compiled is not None and compiled[1] == "bool" else None


def _operand(expr: Expr, schema: pa.Schema) -> tuple[Evaluate, str] | None:
    """(evaluator, kind of its values) for columns, literals and boolean combinations."""
    variant = expr.variant_name()
    if variant == "Column":
        name = expr.to_variant().name()
        if name not in schema.names:
            return None
        kind = _kind(schema.field(name).type)
        return (lambda table: table.column(name), kind) if kind else None
    if variant == "Literal":
        value = expr.python_value()
        kind = _kind(value.type) if value.is_valid else None
        return (lambda _table: value, kind) if kind else None
    if variant in ("IsNull", "IsNotNull"):
        inner = _operand(expr.to_variant().expr(), schema)
        if inner is None:
            return None
        test, value = pc.is_null if variant == "IsNull" else pc.is_valid, inner[0]
        return (lambda table: test(value(table))), "bool"
    if variant == "Not":
        inner = _operand(expr.to_variant().expr(), schema)
        if inner is None or inner[1] != "bool":
            return None
        value = inner[0]
        return (lambda table: pc.invert(value(table))), "bool"
    if variant != "BinaryExpr":
        return None
    binary = expr.to_variant()
    op = binary.op().upper()
    left, right = _operand(binary.left(), schema), _operand(binary.right(), schema)
    if left is None or right is None:
        return None
    if op in ("AND", "OR"):
        if left[1] != "bool" or right[1] != "bool":
            return None
        return _call(pc.and_kleene if op == "AND" else pc.or_kleene, left[0], right[0]), "bool"
    if op in _COMPARISONS and left[1] == right[1]:
        return _call(_COMPARISONS[op], left[0], right[0]), "bool"
    return None


def _call(function: Callable, left: Evaluate, right: Evaluate) -> Evaluate:
    return lambda table: function(left(table), right(table))
