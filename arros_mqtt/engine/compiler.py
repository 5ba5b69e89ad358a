"""Compile a subscription once into its plan: the SQL planned and checked, its kind, the route that lets
batches skip it, its incremental form and the kernel every step runs on.

This is the one place where DataFusion or pyarrow is chosen. By default a query runs on the pyarrow
kernels when they can run it (kernels/arrow_select.py, kernels/arrow_aggregate.py) and on DataFusion
otherwise; `kernel` forces one (tests run every query through each kernel that accepts it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TypeVar

import pyarrow as pa

from arros_mqtt.config import StreamConfig, SubscriptionConfig
from arros_mqtt.core.errors import SqlError
from arros_mqtt.core.topics import OutputTemplate
from arros_mqtt.engine.equality_skip import Route, equality_route
from arros_mqtt.engine.incremental import RAW, IncrementalQuery, WindowCall, rewrite
from arros_mqtt.engine.kernels import DATAFUSION, KERNELS, PYARROW, AggregateKernel, SelectKernel
from arros_mqtt.engine.kernels.arrow_aggregate import compile_aggregate
from arros_mqtt.engine.kernels.arrow_select import compile_select
from arros_mqtt.engine.kernels.datafusion import DataFusionAggregate, DataFusionSelect
from arros_mqtt.engine.logical_plan import PlanNode, read_plan
from arros_mqtt.engine.plan import AggregateSpec, SubscriptionPlan
from arros_mqtt.engine.readonly_sql import PER_ROW, RUNNING, WINDOWED, QueryShape, analyze, schema_of
from arros_mqtt.engine.shared_partial import ROUTE_COLUMN, SHARED_FINAL, SharedPartial, share
from arros_mqtt.engine.sql_session import SqlSession
from arros_mqtt.engine.sql_text import Span, calls, tokenize
from arros_mqtt.engine.window_functions import HOP, WINDOW_FUNCTIONS, WindowSpec, interval_ms

K = TypeVar("K", SelectKernel, AggregateKernel)


def compile_subscription(config: SubscriptionConfig, session: SqlSession, streams: Mapping[str, StreamConfig],
                         tables: Iterable[str], kernel: str | None = None) -> SubscriptionPlan:
    """The plan of a subscription; SqlError if it is not one we can run (or not on the kernel forced)."""
    if kernel is not None and kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, not {kernel!r}")
    shape = analyze(session.ctx, config.sql, set(streams), set(tables))
    stream_schema = streams[shape.stream].full_schema()
    _check_template(config.output, "output topic", "the query does not return", shape.output_schema)
    _check_template(config.late_output, "late_output topic", f"stream {shape.stream} does not have", stream_schema)
    if shape.kind == PER_ROW:
        return _per_row_plan(config, session, shape, stream_schema, kernel)
    return _aggregate_plan(config, session, shape, streams[shape.stream], kernel)


def _per_row_plan(config: SubscriptionConfig, session: SqlSession, shape: QueryShape, stream_schema: pa.Schema,
                  kernel: str | None) -> SubscriptionPlan:
    _refuse_stray_windows(config.sql)
    node = read_plan(session.plan(config.sql).logical_plan())
    return SubscriptionPlan(shape, equality_route(node, shape.stream, stream_schema),
                            _select_kernel(kernel, session, config.sql, node, shape, stream_schema))


def _aggregate_plan(config: SubscriptionConfig, session: SqlSession, shape: QueryShape, stream: StreamConfig,
                    kernel: str | None) -> SubscriptionPlan:
    stream_schema = stream.full_schema()
    query, window, event_column = _incremental(config, shape, stream, session)
    datafusion = _datafusion_aggregate(session, config.name, query, window, shape)
    state_schema = datafusion.state_schema
    node = read_plan(session.plan(config.sql).logical_plan())
    # a running aggregate without keys emits on every batch, so it is never skipped
    route = equality_route(node, shape.stream, stream_schema) if shape.kind == WINDOWED else None
    # None for running aggregates: which groups a batch changed is a join only DataFusion runs
    arrow = None if kernel == DATAFUSION else compile_aggregate(
        query, window, event_column, node, shape.stream, stream_schema, state_schema, shape.output_schema, datafusion)
    shared = _shared_partial(session, query, route, state_schema, shape.output_schema) if route else None
    spec = AggregateSpec(query, window, event_column, state_schema, shared, datafusion.tables)
    return SubscriptionPlan(shape, route, _chosen(kernel, arrow, datafusion), spec)


def _select_kernel(forced: str | None, session: SqlSession, sql: str, node: PlanNode, shape: QueryShape,
                   stream_schema: pa.Schema) -> SelectKernel:
    arrow = None if forced == DATAFUSION else compile_select(node, shape.stream, stream_schema, shape.output_schema)
    return _chosen(forced, arrow, DataFusionSelect(session, shape.stream, sql, shape.output_schema))


def _chosen(forced: str | None, arrow: K | None, datafusion: K) -> K:
    """The pyarrow kernel when there is one (it was not compiled when DataFusion is forced)."""
    if arrow is not None:
        return arrow
    if forced == PYARROW:
        raise SqlError("this query cannot run on the pyarrow kernels", code="kernel")
    return datafusion


def _incremental(config: SubscriptionConfig, shape: QueryShape, stream: StreamConfig,
                 session: SqlSession) -> tuple[IncrementalQuery, WindowSpec | None, str]:
    """The aggregate's incremental rewrite, its window in milliseconds and its event-time column."""
    event_column = stream.event_time or "_received_at"
    if shape.kind == WINDOWED and shape.window_column != event_column:
        where = (f"streams.{stream.name}.event_time = {event_column!r}" if stream.event_time
                 else "arrival time: set event_time on the stream to window by a column")
        raise SqlError(f"{shape.window_function}() must be over the stream's event-time column "
                       f"{event_column!r} ({where}), not {shape.window_column or 'an expression'!r}")
    query = rewrite(config.sql, session.aggregate_names, shape.output_schema.names)
    if shape.kind == RUNNING and query.mode == RAW:
        raise SqlError(f"a running aggregate (GROUP BY without a window) can only use aggregates that merge "
                       f"incrementally (count, sum, avg, min, max, stddev/var, first/last_value ORDER BY ...); "
                       f"{', '.join(query.aggregates)} would keep every row forever: use a window")
    window = _window_spec(query.window, session) if query.window else None
    return query, window, event_column


def _datafusion_aggregate(session: SqlSession, name: str, query: IncrementalQuery, window: WindowSpec | None,
                          shape: QueryShape) -> DataFusionAggregate:
    """The DataFusion kernel, every step planned once; its state schema is what the partial query gives."""
    try:
        state_schema = schema_of(session.plan(query.partial))
        return DataFusionAggregate(session, shape.stream, name, query, window, state_schema, shape.output_schema)
    except SqlError as exc:
        raise SqlError(f"cannot run this query incrementally: {exc}") from None


def _window_spec(call: WindowCall, session: SqlSession) -> WindowSpec:
    values = []
    for position, arg in enumerate(call.args):
        what = f"argument {position + 2} of {call.kind}()"
        try:
            value = session.plan(f"SELECT {arg} AS v").to_arrow_table().column(0)[0].as_py()
        except SqlError:
            raise SqlError(f"{what} must be an INTERVAL literal such as INTERVAL '10 seconds'") from None
        values.append(interval_ms(value, what))
    if call.kind == HOP:
        slide, size = values
        if size % slide:
            raise SqlError(f"hop(): the slide ({slide} ms) must divide the size ({size} ms)")
        return WindowSpec(HOP, size, slide)
    return WindowSpec(call.kind, values[0], values[0])


def _shared_partial(session: SqlSession, query: IncrementalQuery, route: Route, state_schema: pa.Schema,
                    output_schema: pa.Schema) -> SharedPartial | None:
    """The shared form of a routed window's partial query, if it plans and gives the state's columns."""
    shared = share(query, route)
    if shared is None:
        return None
    try:
        names = session.plan(shared.sql).schema().names
    except SqlError:
        return None
    if not set(state_schema.names) | {ROUTE_COLUMN} <= set(names):
        return None
    values = pa.array([route[1]])
    session.register(SHARED_FINAL, state_schema.empty_table().append_column(ROUTE_COLUMN, values.slice(0, 0)))
    try:
        names = session.plan(shared.final).schema().names
    except SqlError:
        names = []
    if names != [*output_schema.names, ROUTE_COLUMN]:
        shared = replace(shared, final=None)
    return shared


def _check_template(template: OutputTemplate | None, what: str, lacks: str, schema: pa.Schema) -> None:
    """Late rows are stream rows, so `late_output` fills its levels from the stream's columns."""
    missing = [c for c in (template.columns if template else []) if c not in schema.names]
    if missing:
        raise SqlError(f"{what} {template.text!r} uses {{{missing[0]}}}, which {lacks} "
                       f"(it has: {', '.join(schema.names)})")


def _refuse_stray_windows(sql: str) -> None:
    found = calls(Span(tuple(tokenize(sql)), sql), set(WINDOW_FUNCTIONS))
    if found:
        raise SqlError(f"{found[0][2]}() is a window: use it in GROUP BY (with aggregates), e.g. SELECT "
                       f"{found[0][2]}(ts, ...) AS window, count(*) FROM stream GROUP BY window")
