"""The simplest per-row subscriptions on pyarrow kernels, without a DataFusion query per batch.

`SELECT col [AS name], ... FROM stream [WHERE predicate]`, the predicate in arrow_predicate.py's subset,
is what most device alerts and routing rules look like. DataFusion spends ~0.3-1 ms of fixed cost per
query on a micro-batch; `Table.filter` with the same predicate as pyarrow compute kernels costs tens of
microseconds, which is what lets thousands of such subscriptions, or small low-latency batches, run on
one engine thread. Anything else (expressions in the SELECT list, functions, casts, joins, other types)
is planned and run by DataFusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from arros_mqtt.engine.kernels import PYARROW
from arros_mqtt.engine.kernels.arrow_predicate import Evaluate, compile_predicate
from arros_mqtt.engine.logical_plan import PlanNode, stream_read, unaliased


@dataclass(frozen=True)
class ArrowSelect:
    columns: tuple[str, ...]  # stream columns, in output order
    schema: pa.Schema  # the subscription's output schema (names as the query gives them)
    predicate: Evaluate | None  # -> a boolean array (compute kernels on the columns; no Acero plan per call)
    name = PYARROW

    def select(self, rows: pa.Table) -> pa.Table:
        if self.predicate is not None:
            rows = rows.filter(self.predicate(rows))
        return pa.Table.from_arrays([rows.column(c) for c in self.columns], schema=self.schema)


def compile_select(plan: PlanNode, stream: str, stream_schema: pa.Schema,
                   output_schema: pa.Schema) -> ArrowSelect | None:
    """An `ArrowSelect` doing what the plan does, or None when the query is not that simple."""
    read = stream_read(plan.inputs[0], stream) if plan.kind == "Projection" else None
    if read is None:
        return None
    predicate = None
    if read.predicate is not None:
        predicate = compile_predicate(read.predicate, stream_schema)
        if predicate is None:
            return None
    columns = [unaliased(e) for e in plan.projections]
    if any(e.kind != "Column" for e in columns) or len(columns) != len(output_schema) or any(
            e.name not in stream_schema.names or stream_schema.field(e.name).type != field.type
            for e, field in zip(columns, output_schema, strict=True)):
        return None
    compiled = ArrowSelect(tuple(e.name for e in columns), output_schema, predicate)
    try:
        compiled.select(stream_schema.empty_table())  # kernels exist for these types (a cheap proof)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    return compiled
