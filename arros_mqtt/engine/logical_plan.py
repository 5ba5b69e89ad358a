"""The one module that reads DataFusion logical plans: their nodes and expressions as small frozen values,
and the few shapes the engine looks for in them.

DataFusion's Python classes (`LogicalPlan.to_variant()`, `Expr.variant_name()`, `rex_call_*`) change
between releases; the rest of the engine matches `PlanNode` and `Expression` instead, so such a change
is a change here only. Only what the engine reads is converted, when it first reads it: Filter
predicates, Projection lists and Aggregate GROUP BY expressions, recursing into the expression kinds it
matches (columns, literals, binary operators, NOT, IS [NOT] NULL, aliases, scalar function calls); any
other expression stays an opaque `Expression` with its kind only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import pyarrow as pa
from datafusion import Expr, LogicalPlan

_WRAPPERS = ("Alias", "Not", "IsNull", "IsNotNull")  # one inner expression, as `.expr()`
_ABOVE_AGGREGATE = ("Projection", "Sort", "Filter", "Distinct")  # what may sit over a query's GROUP BY


@dataclass(frozen=True)
class Expression:
    kind: str  # DataFusion's variant name: Column, Literal, BinaryExpr, Alias, Not, ScalarFunction, ...
    name: str = ""  # Column: its name; ScalarFunction: the function; BinaryExpr: the operator as written
    operands: tuple[Expression, ...] = ()  # BinaryExpr: (left, right); wrappers: (inner,); calls: arguments
    source: Expr | None = field(default=None, compare=False, repr=False)  # Literal: read by `literal()`

    def literal(self) -> pa.Scalar:
        """A literal's value (read only when asked: not every literal type converts)."""
        return self.source.python_value()


@dataclass(frozen=True)
class PlanNode:
    kind: str  # Projection, Filter, Aggregate, TableScan, SubqueryAlias, Join, Window, Limit, ...
    inputs: tuple[PlanNode, ...] = ()
    table: str = ""  # TableScan: the table's unqualified name
    variant: object = field(default=None, compare=False, repr=False)  # DataFusion's node, read when asked

    @cached_property
    def predicate(self) -> Expression | None:
        """A Filter's predicate."""
        return read_expression(self.variant.predicate()) if self.kind == "Filter" else None

    @cached_property
    def projections(self) -> tuple[Expression, ...]:
        """A Projection's select list."""
        return tuple(read_expression(e) for e in self.variant.projections()) if self.kind == "Projection" else ()

    @cached_property
    def group_by(self) -> tuple[Expression, ...]:
        """An Aggregate's GROUP BY expressions."""
        return tuple(read_expression(e) for e in self.variant.group_by_exprs()) if self.kind == "Aggregate" else ()


def top_kind(logical_plan: LogicalPlan) -> str:
    """The kind of a plan's root alone (statements and DDL are refused before their inputs are read)."""
    return type(logical_plan.to_variant()).__name__


def read_plan(logical_plan: LogicalPlan) -> PlanNode:
    variant = logical_plan.to_variant()
    kind = type(variant).__name__
    inputs = tuple(read_plan(child) for child in logical_plan.inputs())
    table = variant.table_name().split(".")[-1] if kind == "TableScan" else ""
    return PlanNode(kind, inputs, table, variant)


def read_expression(expr: Expr) -> Expression:
    kind = expr.variant_name()
    if kind == "Column":
        return Expression(kind, expr.to_variant().name())
    if kind == "Literal":
        return Expression(kind, source=expr)
    if kind in _WRAPPERS:
        return Expression(kind, operands=(read_expression(expr.to_variant().expr()),))
    if kind == "BinaryExpr":
        binary = expr.to_variant()
        return Expression(kind, binary.op(), (read_expression(binary.left()), read_expression(binary.right())))
    if kind == "ScalarFunction":
        operands = tuple(read_expression(e) for e in expr.rex_call_operands())
        return Expression(kind, expr.rex_call_operator(), operands)
    return Expression(kind)


def unaliased(expr: Expression) -> Expression:
    return expr.operands[0] if expr.kind == "Alias" else expr


def conjuncts(expr: Expression) -> list[Expression]:
    """The parts of a predicate joined by AND at its top."""
    if expr.kind == "BinaryExpr" and expr.name.upper() == "AND":
        return conjuncts(expr.operands[0]) + conjuncts(expr.operands[1])
    return [expr]


@dataclass(frozen=True)
class StreamRead:
    """A node that reads the stream directly: `[Filter ->] [SubqueryAlias ->] TableScan(stream)`."""

    predicate: Expression | None  # its WHERE, if it has one


def stream_read(node: PlanNode, stream: str) -> StreamRead | None:
    predicate = None
    if node.kind == "Filter":
        predicate, node = node.predicate, node.inputs[0]
    if node.kind == "SubqueryAlias":
        node = node.inputs[0]
    return StreamRead(predicate) if node.kind == "TableScan" and node.table == stream else None


def aggregate_input(node: PlanNode) -> PlanNode | None:
    """The input of the query's one GROUP BY, under its select list, HAVING, ORDER BY, DISTINCT; None when
    the top of the plan is anything else."""
    while node.kind in _ABOVE_AGGREGATE and node.inputs:
        if node.kind == "Filter" and node.inputs[0].kind != "Aggregate":
            break
        node = node.inputs[0]
    return node.inputs[0] if node.kind == "Aggregate" else None


def scan_filters(node: PlanNode, stream: str) -> list[Expression]:
    """The predicates of every Filter sitting right on a scan of the stream, anywhere in the plan."""
    found = []
    if node.kind == "Filter" and len(node.inputs) == 1:
        child = node.inputs[0]
        if child.kind == "TableScan" and child.table == stream:
            found.append(node.predicate)
    for child in node.inputs:
        found += scan_filters(child, stream)
    return found


@dataclass
class PlanFacts:
    """What a plan reads and which operators sit above a stream scan (`facts_of`)."""

    streams: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    stream_scans: int = 0
    aggregates: bool = False  # an Aggregate or Distinct over a stream
    window_functions: bool = False  # OVER (...) over a stream
    limit: bool = False
    aggregate_nodes: int = 0
    window_calls: list[tuple[str, str | None]] = field(default_factory=list)  # (function, column) in GROUP BY

    def merge(self, other: PlanFacts) -> None:
        self.streams |= other.streams
        self.tables |= other.tables
        self.stream_scans = max(self.stream_scans, other.stream_scans)
        self.aggregates |= other.aggregates
        self.window_functions |= other.window_functions
        self.limit |= other.limit


def facts_of(node: PlanNode, streams: Iterable[str], window_functions: Iterable[str]) -> PlanFacts:
    facts = PlanFacts()
    _visit(node, facts, set(streams), set(window_functions))
    return facts


def _visit(node: PlanNode, facts: PlanFacts, streams: set[str], window_functions: set[str]) -> bool:
    """True when a stream is scanned at or below `node`."""
    over_stream = False
    for child in node.inputs:
        over_stream |= _visit(child, facts, streams, window_functions)
    if node.kind == "TableScan":
        facts.tables.add(node.table)
        if node.table in streams:
            facts.streams.add(node.table)
            facts.stream_scans += 1
            return True
    if over_stream:
        facts.aggregates |= node.kind in ("Aggregate", "Distinct")
        facts.window_functions |= node.kind in ("Window", "WindowExpr")
        facts.limit |= node.kind == "Limit"
        if node.kind == "Aggregate":
            facts.aggregate_nodes += 1
            facts.window_calls += [_window_call(e) for e in node.group_by
                                   if e.kind == "ScalarFunction" and e.name in window_functions]
    return over_stream


def _window_call(call: Expression) -> tuple[str, str | None]:
    """(window function, the column its first argument names, if it is a column)."""
    first = call.operands[0] if call.operands else None
    return call.name, first.name if first is not None and first.kind == "Column" else None
