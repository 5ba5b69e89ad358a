"""The common window query on pyarrow kernels: no DataFusion query per micro-batch or per closing window.

    SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, count(*) AS n, avg(temp) AS avg_temp
    FROM telemetry [WHERE <simple predicate>] GROUP BY window, machine

(tumble or hop; count, sum, avg, min, max of plain columns; plain key columns; a WHERE that
`arrow_select` compiles) is what most telemetry windows look like. DataFusion runs each query with
~1-5 ms of fixed cost (planning, registering tables, a Python UDF call for the window), which at
10,000-row micro-batches costs more than the aggregation itself. Here, per micro-batch, the pane is
numpy arithmetic on the event time and the partial aggregate one `Table.group_by(...).aggregate(...)`;
compacting the state and finishing closed windows are group-bys over state rows too.

The state keeps exactly the columns and types of the DataFusion partial query (incremental.py), so
checkpoints, `arros explain`, shared partials and the DataFusion steps still apply to it: a query
whose select list is more than the window, keys and bare aggregates (or that has HAVING, ORDER BY,
DISTINCT) takes only the partial and the compaction from here and its final query from DataFusion.
SQL semantics kept: NULL keys form a group; count(col), sum, min, max and avg skip NULL values; sum,
min, max and avg of only NULLs are NULL; avg is sum / count as DOUBLE; sums widen as DataFusion's do
(the input is cast to the state column's type first).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from datafusion import LogicalPlan

from arros_mqtt.engine.arrow_select import Evaluate, compile_predicate
from arros_mqtt.engine.incremental import PARTIAL, WINDOW_END, WINDOW_START, IncrementalQuery
from arros_mqtt.engine.sql_text import Span
from arros_mqtt.engine.window_functions import HOP, TIMESTAMP, TUMBLE, WINDOW_TYPE, WindowSpec, event_ms, floor_to

_MERGE = {"count": "sum", "count_all": "sum", "sum": "sum", "min": "min", "max": "max"}
_ONLY_VALID = pc.CountOptions(mode="only_valid")
_ALL = pc.CountOptions(mode="all")


@dataclass(frozen=True)
class PartialColumn:
    """One state column: `function` of stream column `source` per (pane, keys); partials combine by `merge`."""

    name: str
    function: str  # pyarrow hash aggregate: count, count_all, sum, min, max
    source: str | None  # None for count(*)

    @property
    def merge(self) -> str:
        return _MERGE[self.function]


@dataclass(frozen=True)
class OutputColumn:
    kind: str  # window, key, count, sum, min, max, avg
    state: tuple[str, ...]  # the state columns it reads (avg: sum, count)


class ArrowWindow:
    """Partial, compaction and final of one window subscription over pyarrow tables in the state's schema."""

    def __init__(self, event_column: str, slide_ms: int, keys: tuple[str, ...], predicate: Evaluate | None,
                 partials: tuple[PartialColumn, ...], outputs: tuple[OutputColumn, ...] | None,
                 state_schema: pa.Schema, output_schema: pa.Schema) -> None:
        self.event_column = event_column
        self.slide_ms = slide_ms
        self.keys = keys  # stream columns, state columns __k0, __k1, ...
        self.predicate = predicate
        self.partials = partials
        self.outputs = outputs  # None: the final query runs in DataFusion
        self.state_schema = state_schema
        self.output_schema = output_schema
        self._group = [WINDOW_START, *(f"__k{i}" for i in range(len(keys)))]

    def describe(self) -> str:
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
        grouped, merged = self._merged(closed)
        if grouped.num_rows == 0:
            return self.output_schema.empty_table()
        by_name = dict(zip([p.name for p in self.partials], merged, strict=True))
        columns = []
        for output in self.outputs or ():
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
        aggregations = [(p.name, p.merge) for p in self.partials]
        grouped = state.group_by(group, use_threads=False).aggregate(aggregations)
        return grouped, [grouped.column(f"{p.name}_{p.merge}") for p in self.partials]

    def _state(self, starts: pa.ChunkedArray, ends: pa.ChunkedArray, grouped: pa.Table,
               values: list[pa.ChunkedArray]) -> pa.Table:
        keys = [grouped.column(name) for name in self._group[1:]]
        return _conform([starts, ends, *keys, *values], self.state_schema)


def _conform(columns: list, schema: pa.Schema) -> pa.Table:
    """The columns as a table of `schema`, casting only those of another type (a Table.cast is ~10 kernel calls)."""
    cast = [c if c.type == f.type else c.cast(f.type) for c, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(cast, schema=schema)


def compile_window(query: IncrementalQuery, window: WindowSpec | None, event_column: str,
                   logical_plan: LogicalPlan, stream: str, stream_schema: pa.Schema, state_schema: pa.Schema,
                   output_schema: pa.Schema) -> ArrowWindow | None:
    """An `ArrowWindow` doing what the DataFusion steps do, or None when the query is not that simple."""
    if query.mode != PARTIAL or window is None or window.kind not in (TUMBLE, HOP):
        return None
    predicate = _input_predicate(logical_plan, stream, stream_schema)
    if predicate is False:
        return None
    keys = [_column(span, stream_schema) for span in query.key_exprs]
    partials: list[PartialColumn] = []
    kinds: list[tuple[str, tuple[str, ...]]] = []  # per aggregate call: (kind, its state columns)
    for j, call in enumerate(query.calls):
        if call.distinct or call.filter or call.order_by or call.within_group or len(call.args) != 1:
            return None
        name = "avg" if call.name == "mean" else call.name
        arg = call.args[0]
        counts_rows = name == "count" and (arg.text == "*" or (len(arg.tokens) == 1 and arg.tokens[0].kind == "num"))
        source = None if counts_rows else _column(arg, stream_schema)
        if name not in ("count", "sum", "avg", "min", "max") or (source is None and not counts_rows):
            return None
        if name in ("sum", "avg") and not _numeric(stream_schema.field(source).type):
            return None
        if name == "avg":
            partials += [PartialColumn(f"__a{j}_sum", "sum", source), PartialColumn(f"__a{j}_n", "count", source)]
            kinds.append(("avg", (f"__a{j}_sum", f"__a{j}_n")))
        else:
            partials.append(PartialColumn(f"__a{j}", "count_all" if counts_rows else name, source))
            kinds.append((name, (f"__a{j}",)))
    if None in keys or [p.name for p in partials] != state_schema.names[2 + len(keys):]:
        return None
    outputs = None
    if query.select_refs is not None:
        outputs = tuple(OutputColumn("window", ()) if kind == "window" else
                        OutputColumn("key", (f"__k{index}",)) if kind == "key" else OutputColumn(*kinds[index])
                        for kind, index in query.select_refs)
    partial_runs, final_runs = _proven(event_column, window.slide_ms, tuple(keys), tuple(partials), outputs,
                                       stream_schema, state_schema, output_schema)
    if not partial_runs or (predicate is not None and not _evaluates(predicate, stream_schema)):
        return None
    return ArrowWindow(event_column, window.slide_ms, tuple(keys), predicate, tuple(partials),
                       outputs if final_runs else None, state_schema, output_schema)


@functools.lru_cache(maxsize=1024)
def _proven(event_column: str, slide_ms: int, keys: tuple[str, ...], partials: tuple[PartialColumn, ...],
            outputs: tuple[OutputColumn, ...] | None, stream_schema: pa.Schema, state_schema: pa.Schema,
            output_schema: pa.Schema) -> tuple[bool, bool]:
    """(partial and compaction run, final runs) in a trial over one row: the kernels exist for these types
    and give the state's schema. Cached: subscriptions that differ only in a literal have the same types."""
    one = pa.table({f.name: pa.nulls(1, f.type) for f in stream_schema})
    one = one.set_column(stream_schema.get_field_index(event_column), event_column,
                         pa.array([0]).cast(stream_schema.field(event_column).type))
    trial = ArrowWindow(event_column, slide_ms, keys, None, partials, outputs, state_schema, output_schema)
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


def _evaluates(predicate: Evaluate, stream_schema: pa.Schema) -> bool:
    """The compiled WHERE runs on a micro-batch of the stream's types (kernels exist for them)."""
    try:
        predicate(stream_schema.empty_table())
    except Exception:
        return False
    return True


def _input_predicate(logical_plan: LogicalPlan, stream: str, schema: pa.Schema) -> Evaluate | bool | None:
    """The WHERE of an aggregate that reads the stream directly: None without one, False when the plan
    has any other shape (joins, subqueries, a WHERE pyarrow cannot evaluate)."""
    node = logical_plan
    while type(node.to_variant()).__name__ in ("Projection", "Sort", "Filter", "Distinct") and node.inputs():
        if type(node.to_variant()).__name__ == "Filter" and type(node.inputs()[0].to_variant()).__name__ != "Aggregate":
            break
        node = node.inputs()[0]
    if type(node.to_variant()).__name__ != "Aggregate":
        return False
    node = node.inputs()[0]
    predicate = None
    if type(node.to_variant()).__name__ == "Filter":
        predicate = compile_predicate(node.to_variant().predicate(), schema)
        if predicate is None:
            return False
        node = node.inputs()[0]
    if type(node.to_variant()).__name__ == "SubqueryAlias":
        node = node.inputs()[0]
    scan = node.to_variant()
    if type(scan).__name__ != "TableScan" or scan.table_name().split(".")[-1] != stream:
        return False
    return predicate


def _column(span: Span, schema: pa.Schema) -> str | None:
    """The stream column a one-identifier expression names (as DataFusion resolves it), else None."""
    if len(span.tokens) != 1 or span.tokens[0].kind not in ("ident", "qident"):
        return None
    token = span.tokens[0]
    name = token.text[1:-1].replace('""', '"') if token.kind == "qident" else token.text.lower()
    return name if name in schema.names else None


def _numeric(data_type: pa.DataType) -> bool:
    return pa.types.is_integer(data_type) or pa.types.is_floating(data_type)
