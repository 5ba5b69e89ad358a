"""A WHERE clause as pyarrow compute kernels, for the pyarrow kernels' simple subset of SQL.

Comparisons of a column with a column or a literal (=, <>, <, <=, >, >=, with numbers, strings or
booleans on both sides), AND, OR, NOT, IS [NOT] NULL: what most device alerts and routing rules look
like. SQL's three-valued logic is kept: AND/OR are Kleene, and the caller drops rows where the predicate
is NULL, as WHERE does (`Table.filter` does). Anything else is left to DataFusion (None).
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.engine.logical_plan import Expression

Evaluate = Callable[[pa.Table], pa.ChunkedArray | pa.Scalar]  # a predicate's part over one batch
_COMPARISONS = {"=": pc.equal, "!=": pc.not_equal, "<>": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
                ">": pc.greater, ">=": pc.greater_equal}


def compile_predicate(expr: Expression, schema: pa.Schema) -> Evaluate | None:
    """The predicate as a function of the batch (-> a boolean array); None outside the simple subset."""
    compiled = _operand(expr, schema)
    return compiled[0] if compiled is not None and compiled[1] == "bool" else None


def evaluates(predicate: Evaluate, schema: pa.Schema) -> bool:
    """The compiled predicate runs on a micro-batch of these types (kernels exist for them)."""
    try:
        predicate(schema.empty_table())
    except Exception:
        return False
    return True


def _kind(data_type: pa.DataType) -> str | None:
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return "number"
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "string"
    if pa.types.is_boolean(data_type):
        return "bool"
    return None


def _operand(expr: Expression, schema: pa.Schema) -> tuple[Evaluate, str] | None:
    """(evaluator, kind of its values) for columns, literals and boolean combinations."""
    if expr.kind == "Column":
        return _column(expr.name, schema)
    if expr.kind == "Literal":
        value = expr.literal()
        kind = _kind(value.type) if value.is_valid else None
        return (lambda _table: value, kind) if kind else None
    if expr.kind in ("IsNull", "IsNotNull"):
        inner = _operand(expr.operands[0], schema)
        if inner is None:
            return None
        test, value = pc.is_null if expr.kind == "IsNull" else pc.is_valid, inner[0]
        return (lambda table: test(value(table))), "bool"
    if expr.kind == "Not":
        inner = _operand(expr.operands[0], schema)
        if inner is None or inner[1] != "bool":
            return None
        value = inner[0]
        return (lambda table: pc.invert(value(table))), "bool"
    return _binary(expr, schema) if expr.kind == "BinaryExpr" else None


def _column(name: str, schema: pa.Schema) -> tuple[Evaluate, str] | None:
    if name not in schema.names:
        return None
    kind = _kind(schema.field(name).type)
    return (lambda table: table.column(name), kind) if kind else None


def _binary(expr: Expression, schema: pa.Schema) -> tuple[Evaluate, str] | None:
    op = expr.name.upper()
    left, right = (_operand(side, schema) for side in expr.operands)
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
