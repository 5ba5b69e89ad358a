"""Skip subscriptions a micro-batch cannot match: one scan of the batch for many equality predicates.

With thousands of subscriptions on one stream, each typically about one device or one line
(`... WHERE machine = 'm42' AND temp > 90`), running every query on every micro-batch costs ~0.3 ms of
fixed DataFusion overhead each, for results that are almost all empty. A subscription whose WHERE
(directly over the stream, before any join or aggregate) has a conjunct `column = literal` on a
string, integer or boolean stream column gets that pair as its route; per batch, the distinct values of
each routed column are computed once and only subscriptions whose literal occurs run. A subscription
that cannot match would have produced no rows (per-row) or folded no rows into its state (windows), so
skipping it changes nothing it outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from datafusion import Expr, LogicalPlan

if TYPE_CHECKING:
    from arros_mqtt.engine.subscription import Subscription

Route = tuple[str, object]  # (stream column, value a row must have)


@dataclass
class StreamReaders:
    """The subscriptions of one stream, indexed once (rebuilt when subscriptions change), so a micro-batch
    costs per subscription that can match it, not per subscription there is."""

    running: list[Subscription] = field(default_factory=list)  # not paused, in the order they were added
    unrouted: list[Subscription] = field(default_factory=list)
    routed: dict[str, dict[object, list[Subscription]]] = field(default_factory=dict)  # column -> value -> subs
    windowed: list[Subscription] = field(default_factory=list)  # paused ones too: their windows still close
    sharing: Counter = field(default_factory=Counter)  # shared partial key -> running subscriptions with it
    closing: Counter = field(default_factory=Counter)  # shared final key -> windowed subscriptions with it
    datafusion: bool = False  # some running subscription reads the micro-batch as a DataFusion table

    @classmethod
    def of(cls, subscriptions: Iterable[Subscription], paused: set[str] | dict) -> StreamReaders:
        readers = cls()
        for subscription in subscriptions:
            if subscription.aggregate is not None and subscription.aggregate.window is not None:
                readers.windowed.append(subscription)
                if subscription.shared is not None and subscription.shared.final is not None:
                    readers.closing[subscription.shared.final_key] += 1
            if subscription.name in paused:
                continue
            readers.running.append(subscription)
            if subscription.shared is not None:
                readers.sharing[subscription.shared.key] += 1
            if subscription.route is None:
                readers.unrouted.append(subscription)
            else:
                column, value = subscription.route
                readers.routed.setdefault(column, {}).setdefault(value, []).append(subscription)
        readers.datafusion = not all(readers.on_arrow(s) for s in readers.running)
        return readers

    def on_arrow(self, subscription: Subscription) -> bool:
        """Whether the subscription runs on pyarrow kernels alone (so the batch need not be registered)."""
        state, shared = subscription.aggregate, subscription.shared
        if state is None:
            return subscription.arrow is not None
        return state.arrow is not None and (shared is None or self.sharing[shared.key] < 2)

    def matching(self, batch: pa.Table) -> set[int] | None:
        """ids of the routed subscriptions whose value occurs in the batch; None when none is routed."""
        if not self.routed:
            return None
        found: set[int] = set()
        for column, values in present_values(batch, self.routed).items():
            by_value = self.routed[column]
            for value in values:
                found.update(id(s) for s in by_value.get(value, ()))
        return found


def equality_route(logical_plan: LogicalPlan, stream: str, schema: pa.Schema) -> Route | None:
    """The first `column = literal` conjunct of a Filter sitting right on the stream's scan, if any."""
    for predicate in _stream_filters(logical_plan, stream):
        for conjunct in _conjuncts(predicate):
            route = _column_equals_literal(conjunct, schema)
            if route is not None:
                return route
    return None


def present_values(batch: pa.Table, columns: Iterable[str]) -> dict[str, set]:
    """The distinct values of each routed column in the batch: one `unique` per column."""
    return {column: set(pc.unique(batch.column(column)).to_pylist()) for column in columns}


def _stream_filters(node: LogicalPlan, stream: str) -> list[Expr]:
    found = []
    variant = node.to_variant()
    if type(variant).__name__ == "Filter":
        inputs = node.inputs()
        child = inputs[0].to_variant() if len(inputs) == 1 else None
        if type(child).__name__ == "TableScan" and child.table_name().split(".")[-1] == stream:
            found.append(variant.predicate())
    for child in node.inputs():
        found += _stream_filters(child, stream)
    return found


def _conjuncts(expr: Expr) -> list[Expr]:
    if expr.variant_name() == "BinaryExpr":
        binary = expr.to_variant()
        if binary.op().upper() == "AND":
            return _conjuncts(binary.left()) + _conjuncts(binary.right())
    return [expr]


def _column_equals_literal(expr: Expr, schema: pa.Schema) -> Route | None:
    if expr.variant_name() != "BinaryExpr":
        return None
    binary = expr.to_variant()
    if binary.op() != "=":
        return None
    sides = [binary.left(), binary.right()]
    columns = [e for e in sides if e.variant_name() == "Column"]
    literals = [e for e in sides if e.variant_name() == "Literal"]
    if len(columns) != 1 or len(literals) != 1:
        return None
    name = columns[0].to_variant().name()
    if name not in schema.names:
        return None
    kind = schema.field(name).type
    value = literals[0].python_value().as_py()
    if value is None:
        return None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        matches = isinstance(value, str)
    elif pa.types.is_integer(kind):
        matches = isinstance(value, int) and not isinstance(value, bool)
    elif pa.types.is_boolean(kind):
        matches = isinstance(value, bool)
    else:
        matches = False
    return (name, value) if matches else None
