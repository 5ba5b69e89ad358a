"""The common window query on pyarrow kernels: no DataFusion query per micro-batch or per closing window.

    SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, count(*) AS n, avg(temp) AS avg_temp
    FROM telemetry [WHERE <simple predicate>] GROUP BY window, machine

(tumble or hop; count, sum, avg, min, max of plain columns; plain key columns; a WHERE that
arrow_predicate.py compiles) is what most telemetry windows look like. DataFusion runs each query with
~1-5 ms of fixed cost (planning, registering tables, a Python UDF call for the window), which at
10,000-row micro-batches costs more than the aggregation itself. Here, per micro-batch, the pane is
numpy arithmetic on the event time and the partial aggregate one `Table.group_by(...).aggregate(...)`;
compacting the state and finishing closed windows are group-bys over state rows too.

The state keeps exactly the columns and types of the DataFusion partial query (incremental.py), so
checkpoints, `arros explain`, shared partials and the DataFusion steps still apply to it: a query
whose select list is more than the window, keys and bare aggregates (or that has HAVING, ORDER BY,
DISTINCT) takes only the partial and the compaction from here and its final from the DataFusion
kernel it is given.
SQL semantics kept: NULL keys form a group; count(col), sum, min, max and avg skip NULL values; sum,
min, max and avg of only NULLs are NULL; avg is sum / count as DOUBLE; sums widen as DataFusion's do
(the input is cast to the state column's type first).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.engine.aggregates import PartialColumn
from arros_mqtt.engine.incremental import PARTIAL, WINDOW_END, WINDOW_START, IncrementalQuery
from arros_mqtt.engine.kernels import PYARROW, AggregateKernel
from arros_mqtt.engine.kernels.arrow_predicate import Evaluate, compile_predicate, evaluates
from arros_mqtt.engine.logical_plan import PlanNode, aggregate_input, stream_read
from arros_mqtt.engine.sql_text import Span, identifier
from arros_mqtt.engine.window_functions import HOP, TIMESTAMP, TUMBLE, WINDOW_TYPE, WindowSpec, event_ms, floor_to

_ONLY_VALID = pc.CountOptions(mode="only_valid")
_ALL = pc.CountOptions(mode="all")


@dataclass(frozen=True)
class OutputColumn:
    kind: str  # window, key, count, sum, min, max, avg
    state: tuple[str, ...]  # the state columns it reads (avg: sum, count)


class ArrowAggregate:
    """Partial, compaction and final of one window subscription over pyarrow tables in the state's schema."""

    name = PYARROW

    def __init__(self, event_column: str, slide_ms: int, keys: tuple[str, ...], predicate: Evaluate | None,
                 partials: tuple[PartialColumn, ...], outputs: tuple[OutputColumn, ...] | None,
                 state_schema: pa.Schema, output_schema: pa.Schema, fallback: AggregateKernel | None) -> None:
        self.event_column = event_column
        self.slide_ms = slide_ms
        self.keys = keys  # stream columns, state columns __k0, __k1, ...
        self.predicate = predicate
        self.partials = partials
        self.outputs = outputs  # None: `fallback` (the DataFusion kernel) runs the final
        self.state_schema = state_schema
        self.output_schema = output_schema
        self.fallback = fallback
        self._group = [WINDOW_START, *(f"__k{i}" for i in range(len(keys)))]

    def describe(self) -> str | None:
        """What runs on pyarrow kernels, for `arros explain`."""
        if self.outputs is None:
            return "pyarrow: partial aggregates and compaction; the final query in DataFusion"
        return "pyarrow: partial aggregates, compaction and final"

    def partial(self, rows: pa.Table) -> pa.Table:
        """The partial aggregates of rows with an event time, per pane and keys, as state rows."""
        if self.predicate is not None:
            rows = rows.filter(self.predicate(rows))
        ms = event_ms(rows.column(self.event_column)).to_numpy(zero_copy_only=False)
        columns: dict[str, pa.Array | pa.ChunkedArray] = {WINDOW_START: pa.array(floor_to(ms, self.slide_ms))}
        for i, key in enumerate(self.keys):
            columns[f"__k{i}"] = rows.column(key)
        aggregations = []
        for i, part in enumerate(self.partials):
            if part.source is None:  # count(*): every row of the never-NULL pane column (named per call)
                columns[f"__v{i}"] = columns[WINDOW_START]
                aggregations.append((f"__v{i}", "count", _ALL))
                continue
            value = rows.column(part.source)
            wide = self.state_schema.field(part.name).type
            if part.function == "sum" and value.type != wide:
                value = value.cast(wide)
            columns[f"__v{i}"] = value
            aggregations.append((f"__v{i}", part.function, _ONLY_VALID) if part.function == "count"
                                else (f"__v{i}", part.function))
        grouped = pa.table(columns).group_by(self._group, use_threads=False).aggregate(aggregations)
        starts = grouped.column(WINDOW_START)
        names = [f"__v{i}_{'count' if p.source is None else p.function}" for i, p in enumerate(self.partials)]
        return self._state(starts.cast(TIMESTAMP), pc.add(starts, self.slide_ms).cast(TIMESTAMP), grouped,
                           [grouped.column(n) for n in names])

    def merge(self, state: pa.Table) -> pa.Table:
        """State rows compacted to one per (window unit, keys)."""
        grouped, merged = self._merged(state)
        return self._state(grouped.column(WINDOW_START), grouped.column(WINDOW_END), grouped, merged)

    def final(self, closed: pa.Table) -> pa.Table:
        """The query's result rows for closed windows' state rows (labelled with their window)."""
        if self.outputs is None:
            return self.fallback.final(closed)
        grouped, merged = self._merged(closed)
        if grouped.num_rows == 0:
            return self.output_schema.empty_table()
        by_name = dict(zip([p.name for p in self.partials], merged, strict=True))
        columns = []
        for output in self.outputs:
            if output.kind == "window":
                bounds = [grouped.column(WINDOW_START).combine_chunks(), grouped.column(WINDOW_END).combine_chunks()]
                columns.append(pa.StructArray.from_arrays(bounds, fields=list(WINDOW_TYPE)))
            elif output.kind == "key":
                columns.append(grouped.column(output.state[0]))
            elif output.kind == "avg":
                total, count = (by_name[name] for name in output.state)
                divisor = pc.if_else(pc.equal(count, 0), pa.scalar(None, pa.float64()), count.cast(pa.float64()))
                columns.append(pc.divide(total.cast(pa.float64()), divisor))
            else:
                columns.append(by_name[output.state[0]])
        return _conform(columns, self.output_schema)

    def _merged(self, state: pa.Table) -> tuple[pa.Table, list[pa.ChunkedArray]]:
        group = [WINDOW_START, WINDOW_END, *self._group[1:]]
        aggregations = [(p.name, p.arrow_merge) for p in self.partials]
        grouped = state.group_by(group, use_threads=False).aggregate(aggregations)
        return grouped, [grouped.column(f"{p.name}_{p.arrow_merge}") for p in self.partials]

    def _state(self, starts: pa.ChunkedArray, ends: pa.ChunkedArray, grouped: pa.Table,
               values: list[pa.ChunkedArray]) -> pa.Table:
        keys = [grouped.column(name) for name in self._group[1:]]
        return _conform([starts, ends, *keys, *values], self.state_schema)


def _conform(columns: list, schema: pa.Schema) -> pa.Table:
    """The columns as a table of `schema`, casting only those of another type (a Table.cast is ~10 kernel calls)."""
    cast = [c if c.type == f.type else c.cast(f.type) for c, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(cast, schema=schema)


def compile_aggregate(query: IncrementalQuery, window: WindowSpec | None, event_column: str, plan: PlanNode,
                      stream: str, stream_schema: pa.Schema, state_schema: pa.Schema, output_schema: pa.Schema,
                      fallback: AggregateKernel) -> ArrowAggregate | None:
    """An `ArrowAggregate` doing what the DataFusion steps do, or None when the query is not that simple;
    `fallback` runs its final when the select list is more than the window, keys and bare aggregates."""
    if query.mode != PARTIAL or window is None or window.kind not in (TUMBLE, HOP):
        return None
    predicate = _input_predicate(plan, stream, stream_schema)
    keys = tuple(_column(span, stream_schema) for span in query.key_exprs)
    partials = tuple(c for m in query.mergeables for c in m.columns)
    if predicate is False or None in keys or not _on_arrow(query, partials, stream_schema) \
            or [p.name for p in partials] != state_schema.names[2 + len(keys):]:
        return None
    outputs = _outputs(query)
    partial_runs, final_runs = _proven(event_column, window.slide_ms, keys, partials, outputs, stream_schema,
                                       state_schema, output_schema)
    if not partial_runs or (predicate is not None and not evaluates(predicate, stream_schema)):
        return None
    return ArrowAggregate(event_column, window.slide_ms, keys, predicate, partials,
                          outputs if final_runs else None, state_schema, output_schema, fallback)


def _on_arrow(query: IncrementalQuery, partials: tuple[PartialColumn, ...], stream_schema: pa.Schema) -> bool:
    """Every aggregate has a pyarrow form, over stream columns (numeric ones for sum and avg)."""
    if len(query.mergeables) != len(query.calls) or any(m.kind is None for m in query.mergeables):
        return False
    for part in partials:
        if part.source is None:
            continue
        if part.source not in stream_schema.names:
            return False
        if part.function == "sum" and not _numeric(stream_schema.field(part.source).type):
            return False
    return True


def _outputs(query: IncrementalQuery) -> tuple[OutputColumn, ...] | None:
    """What each select item is, when all are the window, a key or one aggregate as written."""
    if query.select_refs is None:
        return None
    outputs = []
    for kind, index in query.select_refs:
        if kind == "window":
            outputs.append(OutputColumn("window", ()))
        elif kind == "key":
            outputs.append(OutputColumn("key", (f"__k{index}",)))
        else:
            mergeable = query.mergeables[index]
            outputs.append(OutputColumn(mergeable.kind, tuple(c.name for c in mergeable.columns)))
    return tuple(outputs)


@functools.lru_cache(maxsize=1024)
def _proven(event_column: str, slide_ms: int, keys: tuple[str, ...], partials: tuple[PartialColumn, ...],
            outputs: tuple[OutputColumn, ...] | None, stream_schema: pa.Schema, state_schema: pa.Schema,
            output_schema: pa.Schema) -> tuple[bool, bool]:
    """(partial and compaction run, final runs) in a trial over one row: the kernels exist for these types
    and give the state's schema. Cached: subscriptions that differ only in a literal have the same types."""
    one = pa.table({f.name: pa.nulls(1, f.type) for f in stream_schema})
    one = one.set_column(stream_schema.get_field_index(event_column), event_column,
                         pa.array([0]).cast(stream_schema.field(event_column).type))
    trial = ArrowAggregate(event_column, slide_ms, keys, None, partials, outputs, state_schema, output_schema, None)
    try:  # any failure of the trial means: leave this query (or its final) to DataFusion
        state = trial.merge(trial.partial(one))
    except Exception:
        return False, False
    if not state.schema.equals(state_schema):
        return False, False
    try:
        return True, outputs is not None and trial.final(state).num_rows == 1
    except Exception:
        return True, False


def _input_predicate(plan: PlanNode, stream: str, schema: pa.Schema) -> Evaluate | bool | None:
    """The WHERE of an aggregate that reads the stream directly: None without one, False when the plan
    has any other shape (joins, subqueries, a WHERE pyarrow cannot evaluate)."""
    below = aggregate_input(plan)
    read = stream_read(below, stream) if below is not None else None
    if read is None:
        return False
    if read.predicate is None:
        return None
    predicate = compile_predicate(read.predicate, schema)
    return False if predicate is None else predicate


def _column(span: Span, schema: pa.Schema) -> str | None:
    """The stream column a one-identifier expression names (as DataFusion resolves it), else None."""
    if len(span.tokens) != 1 or span.tokens[0].kind not in ("ident", "qident"):
        return None
    name = identifier(span.tokens[0])
    return name if name in schema.names else None


def _numeric(data_type: pa.DataType) -> bool:
    return pa.types.is_integer(data_type) or pa.types.is_floating(data_type)
