"""The engine: DataFusion over micro-batches. Knows nothing about MQTT or sinks.

Each micro-batch of a stream is registered as that stream's table and every subscription reading
the stream runs over it. Lookup tables stay registered (and are swapped when their file changes).
Planning per batch costs ~0.1 ms here and a DataFrame is bound to the data it was planned over, so
plans are not cached.

Per-row subscriptions yield rows per batch. Aggregate subscriptions fold each batch into their
incremental state (aggregate_state.py): running ones yield the groups a batch changed, windowed
ones yield a window's rows once the stream's watermark passes its end, in `process` or, for idle
streams, in `tick`.

A stream declared without a schema has one only after its first micro-batch: subscriptions that read
it wait in `pending` (`add_when_ready`) and are planned by `set_stream_schema`; those whose SQL
then fails are kept in `rejected` with the reason.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc
from datafusion import SessionConfig, SessionContext

from arros_mqtt.config import StreamConfig, SubscriptionConfig, TableConfig
from arros_mqtt.core.errors import SqlError
from arros_mqtt.core.topics import OutputTemplate
from arros_mqtt.engine.aggregate_state import AggregateState
from arros_mqtt.engine.arrow_select import compile_select
from arros_mqtt.engine.arrow_window import compile_window
from arros_mqtt.engine.incremental import RAW, WindowCall, rewrite
from arros_mqtt.engine.lookup import LookupTable, load_table
from arros_mqtt.engine.readonly_sql import PER_ROW, RUNNING, WINDOWED, QueryShape, analyze, plan
from arros_mqtt.engine.routing import StreamReaders, equality_route
from arros_mqtt.engine.shared_partial import ROUTE_COLUMN, SHARED_FINAL, SharedPartial, share, split_by_route
from arros_mqtt.engine.sql_text import Span, calls, tokenize
from arros_mqtt.engine.subscription import Subscription
from arros_mqtt.engine.watermark import Watermark
from arros_mqtt.engine.window_functions import (
    HOP,
    WINDOW_FUNCTIONS,
    WindowSpec,
    event_ms,
    interval_ms,
    register_window_functions,
)

log = logging.getLogger(__name__)
__all__ = ["Engine", "Result", "load_table"]


@dataclass(frozen=True)
class Result:
    subscription: Subscription
    table: pa.Table
    late: bool = False  # True: stream rows that arrived behind the watermark, for the `late_output` topic


class Engine:
    def __init__(self, streams: dict[str, StreamConfig], tables: dict[str, TableConfig] | None = None) -> None:
        self.streams = dict(streams)
        self.tables = dict(tables or {})
        self.subscriptions: dict[str, Subscription] = {}
        self.paused: dict[str, str] = {}  # name -> reason; paused subscriptions skip micro-batches
        self.pending: dict[str, SubscriptionConfig] = {}  # waiting for a stream's inferred schema
        self.rejected: dict[str, str] = {}  # pending ones whose SQL failed once the schema was known
        self._readers: dict[str, StreamReaders] = {}  # per stream; rebuilt after any change (`_changed`)
        self._next_close: dict[str, float] = {}  # per stream: no window of its subscriptions ends before this
        self._ctx = SessionContext(SessionConfig().with_target_partitions(1).with_information_schema(False))
        register_window_functions(self._ctx)
        self._aggregate_names = _aggregate_function_names(self._ctx)
        self.watermarks = {name: Watermark(round(s.watermark * 1000), s.idle_timeout) for name, s in streams.items()}
        for name, stream in self.streams.items():
            self._register(name, stream.full_schema().empty_table())
        self.lookups = {name: LookupTable.open(table) for name, table in self.tables.items()}
        for name, lookup in self.lookups.items():
            self._register(name, lookup.table)

    def add(self, config: SubscriptionConfig) -> Subscription:
        """Plan and check a subscription, then run it from the next micro-batch on."""
        return self.install(self.build(config))

    def build(self, config: SubscriptionConfig) -> Subscription:
        """Plan and check a subscription without running it; SqlError if it is not one we can run."""
        if waiting := self.awaited_streams(config.sql):
            raise SqlError(f"stream {waiting[0]!r} has no schema yet: it is inferred from the stream's first "
                           "micro-batch; create the subscription once data has arrived", code="schema_pending")
        shape = analyze(self._ctx, config.sql, set(self.streams), set(self.tables))
        _check_template(config.output, "output topic", "the query does not return", shape.output_schema)
        _check_template(config.late_output, "late_output topic", f"stream {shape.stream} does not have",
                        self.streams[shape.stream].full_schema())
        subscription = Subscription(config, shape)
        if shape.kind == PER_ROW:
            _refuse_stray_windows(config.sql)
        else:
            subscription.aggregate = self._aggregate_state(config, shape)
        stream_schema = self.streams[shape.stream].full_schema()
        logical_plan = plan(self._ctx, config.sql).logical_plan()
        if shape.kind in (PER_ROW, WINDOWED):  # a running aggregate without keys emits on every batch
            subscription.route = equality_route(logical_plan, shape.stream, stream_schema)
        if shape.kind == PER_ROW:
            subscription.arrow = compile_select(logical_plan, shape.stream, stream_schema, shape.output_schema)
        else:
            state = subscription.aggregate
            state.arrow = compile_window(state.query, state.window, state.event_column, logical_plan, shape.stream,
                                         stream_schema, state.schema, shape.output_schema)
        if subscription.route is not None and subscription.aggregate is not None:
            subscription.shared = self._shared_partial(subscription)
        return subscription

    def _shared_partial(self, subscription: Subscription) -> SharedPartial | None:
        """The shared form of a routed window's partial query, if it plans and gives the state's columns."""
        state = subscription.aggregate
        shared = share(state.query, subscription.route)
        if shared is None:
            return None
        try:
            names = plan(self._ctx, shared.sql).schema().names
        except SqlError:
            return None
        if not set(state.schema.names) | {ROUTE_COLUMN} <= set(names):
            return None
        route = pa.array([subscription.route[1]])
        self._register(SHARED_FINAL, state.schema.empty_table().append_column(ROUTE_COLUMN, route.slice(0, 0)))
        try:
            names = plan(self._ctx, shared.final).schema().names
        except SqlError:
            names = []
        if names != [*state.output_schema.names, ROUTE_COLUMN]:
            shared = replace(shared, final=None)
        return shared

    def install(self, subscription: Subscription, replace: bool = False) -> Subscription:
        """Run a built subscription; with `replace` it takes the place (and releases the state) of the
        one with its name in one step, so no micro-batch sees neither or both."""
        name = subscription.name
        if (name in self.subscriptions or name in self.pending) and not replace:
            raise SqlError(f"a subscription named {name!r} exists", code="exists")
        if name not in self.subscriptions and replace:
            raise KeyError(name)
        old = self.subscriptions.get(name)
        if old is not None and subscription.aggregate is None:
            self.release(old)
        self.subscriptions[name] = subscription
        self.paused.pop(name, None)
        self._changed()
        return subscription

    def add_when_ready(self, config: SubscriptionConfig) -> Subscription | None:
        """`add`, or None when it reads a stream whose schema is not inferred yet (then it waits in `pending`)."""
        if config.name not in self.subscriptions and config.name not in self.pending \
                and self.awaited_streams(config.sql):
            self.pending[config.name] = config
            return None
        return self.add(config)

    def awaited_streams(self, sql: str) -> list[str]:
        """Schema-less streams `sql` reads (or may read: it names them and does not plan without them)."""
        unknown = {name.lower(): name for name, stream in self.streams.items() if stream.infers_schema}
        named = [unknown[name] for name in sorted(_names_in(sql)) if name in unknown]
        if not named:
            return []
        try:
            shape = analyze(self._ctx, sql, set(self.streams), set(self.tables))
        except SqlError as exc:
            return named if exc.code in ("invalid_sql", "unknown_stream") else []
        return [shape.stream] if shape.stream in unknown.values() else []

    def set_stream_schema(self, name: str, stream: StreamConfig) -> dict[str, SqlError]:
        """A schema-less stream's inferred schema: plan what waited for it; the SQL errors, by subscription."""
        self.streams[name] = replace(stream, name=name)
        self._register(name, stream.full_schema().empty_table())
        failures: dict[str, SqlError] = {}
        for sub_name, config in list(self.pending.items()):
            if self.awaited_streams(config.sql):
                continue
            del self.pending[sub_name]
            try:
                self.add(config)
            except SqlError as exc:
                failures[sub_name] = exc
                self.rejected[sub_name] = str(exc)
        return failures

    def remove(self, name: str) -> Subscription:
        """Stop running `name` and release its state; KeyError if there is none."""
        subscription = self.subscriptions.pop(name)
        self.paused.pop(name, None)
        self._changed()
        self.release(subscription)
        return subscription

    def release(self, subscription: Subscription) -> None:
        """Deregister the state tables of an aggregate subscription (its state object goes with it)."""
        if subscription.aggregate is not None:
            for table in subscription.aggregate.table_names:
                if self._ctx.table_exist(table):
                    self._ctx.deregister_table(table)

    def pause(self, name: str, reason: str) -> None:
        """Skip micro-batches for `name` until `resume`; its state is kept. KeyError if there is none."""
        if name not in self.subscriptions:
            raise KeyError(name)
        self.paused[name] = reason
        self._changed()

    def resume(self, name: str) -> None:
        if name not in self.subscriptions:
            raise KeyError(name)
        self.paused.pop(name, None)
        self._changed()

    def explain(self, subscription: Subscription) -> dict[str, str]:
        """DataFusion's logical and physical plans for one micro-batch of the subscription's stream."""
        df = plan(self._ctx, subscription.config.sql)
        explained = {"runs_as": subscription.describe(),
                     "logical_plan": df.optimized_logical_plan().display_indent(),
                     "physical_plan": df.execution_plan().display_indent()}
        state = subscription.aggregate
        if state is not None:  # the SQL the engine really runs: per batch, to compact state, at close
            query = state.query
            explained["partial_sql"] = query.partial
            merge = query.merge("state")
            if merge is not None:
                explained["merge_sql"] = merge
            explained["final_sql"] = query.final("state")
            if state.arrow is not None:
                explained["kernels"] = state.arrow.describe()
        return explained

    def process(self, stream: str, batch: pa.Table) -> list[Result]:
        """Run every subscription of `stream` over one micro-batch; a failing one never stops the others."""
        readers = self._readers_of(stream)
        if not readers.running or batch.num_rows == 0:
            return []
        if readers.datafusion:
            self._register(stream, batch)
        watermark = self.watermarks[stream]
        before = watermark.value
        matching = readers.matching(batch)
        splits: dict = {}  # late/on-time split per window shape, shared by the subscriptions of this batch
        results = []
        rows = batch.num_rows
        for subscription in readers.running:
            stats = subscription.stats
            stats.batches += 1
            stats.rows_in += rows
            try:
                if subscription.route is not None and id(subscription) not in matching:  # no row can match
                    if subscription.aggregate is not None:
                        results += self._late(subscription, self._split(subscription, batch, before, splits)[1])
                    continue
                results += self._run(subscription, stream, batch, before, splits)
            except Exception as exc:  # a runtime SQL error (cast, overflow) in one batch
                self._failed(subscription, exc)
                if readers.datafusion:
                    self._register(stream, batch)
        watermark.observe(self._max_event_ms(stream, batch), _arrival(batch))
        results += self._close_windows(stream)
        if readers.datafusion:
            self._register(stream, self.streams[stream].full_schema().empty_table())  # release the batch
        return results

    def tick(self, now: float) -> list[Result]:
        """Time-driven work: reload changed lookup tables; close windows of streams idle for `idle_timeout`."""
        self._reload_lookups()
        results = []
        for stream, watermark in self.watermarks.items():
            if watermark.idle_advance(now):
                results += self._close_windows(stream)
        return results

    def advance(self, stream: str, value: int) -> list[Result]:
        """Raise `stream`'s watermark to `value` and close the windows it passes (a logged idle advance)."""
        if not self.watermarks[stream].advance_to(value):
            return []
        return self._close_windows(stream)

    def _run(self, subscription: Subscription, stream: str, batch: pa.Table, watermark: int | None,
             splits: dict) -> list[Result]:
        state, stats = subscription.aggregate, subscription.stats
        if state is None:
            table = subscription.run(self._ctx, batch)
            stats.rows_out += table.num_rows
            return [Result(subscription, table)] if table.num_rows else []
        if subscription.shape.kind == RUNNING:
            table = state.updated(self._ctx, state.ingest(self._ctx))
            stats.state_rows = state.rows
            stats.state_bytes = state.bytes
            stats.rows_out += table.num_rows
            return [Result(subscription, table)] if table.num_rows else []
        rows, late = self._split(subscription, batch, watermark, splits)
        results = self._late(subscription, late)
        if rows.num_rows:
            if self._readers_of(stream).on_arrow(subscription):
                state.ingest_rows(self._ctx, rows)
            else:
                if rows is not batch:
                    self._register(stream, rows)
                self._ingest(subscription, splits)
                if rows is not batch:
                    self._register(stream, batch)
            self._next_close[stream] = min(self._next_close.get(stream, -math.inf), state.earliest_window_end())
        stats.state_rows = state.rows
        stats.state_bytes = state.bytes
        return results

    def _ingest(self, subscription: Subscription, cache: dict) -> None:
        """Fold the registered rows into the subscription's state: by its own partial query, or by its
        slice of the partial query it shares with others (run once per batch, the first time it is needed)."""
        state, shared = subscription.aggregate, subscription.shared
        if not self._shares_partial(subscription):
            state.ingest(self._ctx)
            return
        parts = cache.get(shared.key)
        if parts is None:
            parts = cache[shared.key] = split_by_route(plan(self._ctx, shared.sql).to_arrow_table(), state.schema)
        part = parts.get(subscription.route[1])
        if part is not None:
            state.add_partial(self._ctx, part)

    def _shares_partial(self, subscription: Subscription) -> bool:
        shared = subscription.shared
        return shared is not None and self._readers_of(subscription.shape.stream).sharing[shared.key] >= 2

    @staticmethod
    def _split(subscription: Subscription, batch: pa.Table, watermark: int | None,
               splits: dict) -> tuple[pa.Table, pa.Table]:
        """(on-time rows, late rows) of the batch for the subscription's window, computed once per window
        shape and batch: the watermark is the stream's, so subscriptions with equal windows split alike."""
        state = subscription.aggregate
        key = (state.window, state.event_column)
        if key not in splits:
            splits[key] = state.split_late(batch, watermark)
        return splits[key]

    @staticmethod
    def _late(subscription: Subscription, late: pa.Table) -> list[Result]:
        if not late.num_rows:
            return []
        subscription.stats.late_rows += late.num_rows
        return [Result(subscription, late, late=True)] if subscription.config.late_output is not None else []

    def _close_windows(self, stream: str) -> list[Result]:
        watermark = self.watermarks[stream].value
        if watermark is None or watermark < self._next_close.get(stream, -math.inf):
            return []  # no window of any subscription of the stream can end yet
        results = []
        next_close = math.inf
        readers = self._readers_of(stream)
        groups: dict[str, dict[object, tuple[Subscription, pa.Table]]] = {}  # final key -> route value -> rows
        for subscription in readers.windowed:
            state, shared = subscription.aggregate, subscription.shared
            try:
                if shared is not None and shared.final is not None and readers.closing[shared.final_key] > 1:
                    table = None
                    closed = state.take_closed(watermark)
                    group = groups.setdefault(shared.final_key, {})
                    if closed is not None and subscription.route[1] in group:  # the same value twice: alone
                        table = state.finalize(self._ctx, closed)
                    elif closed is not None:
                        group[subscription.route[1]] = (subscription, closed)
                else:
                    table = state.close(self._ctx, watermark)
            except Exception as exc:
                self._failed(subscription, exc)
                next_close = -math.inf  # try again on the next batch
                continue
            subscription.stats.state_rows = state.rows
            subscription.stats.state_bytes = state.bytes
            next_close = min(next_close, state.earliest_window_end())
            if table is not None and table.num_rows:
                subscription.stats.rows_out += table.num_rows
                results.append(Result(subscription, table))
        self._next_close[stream] = next_close
        for group in groups.values():
            results += self._finalize_shared(list(group.values()))
        return results

    def _finalize_shared(self, members: list[tuple[Subscription, pa.Table]]) -> list[Result]:
        """Closed windows of subscriptions sharing their final query: one query for all, split by value."""
        if not members:
            return []
        first = members[0][0]
        rows = pa.concat_tables([closed.append_column(ROUTE_COLUMN, pa.array([s.route[1]] * closed.num_rows))
                                 for s, closed in members])
        self._register(SHARED_FINAL, rows)
        try:
            parts = split_by_route(plan(self._ctx, first.shared.final).to_arrow_table(),
                                   first.aggregate.output_schema)
        except Exception as exc:
            for subscription, _ in members:
                self._failed(subscription, exc)
            return []
        finally:
            self._register(SHARED_FINAL, rows.schema.empty_table())
        results = []
        for subscription, _ in members:
            table = parts.get(subscription.route[1])
            if table is not None and table.num_rows:
                subscription.stats.rows_out += table.num_rows
                results.append(Result(subscription, table))
        return results

    def _readers_of(self, stream: str) -> StreamReaders:
        readers = self._readers.get(stream)
        if readers is None:
            readers = self._readers[stream] = StreamReaders.of(
                (s for s in self.subscriptions.values() if s.shape.stream == stream), self.paused)
        return readers

    def _changed(self) -> None:
        """Subscriptions were added, removed, paused or resumed: rebuild indexes, close windows afresh."""
        self._readers.clear()
        self._next_close.clear()

    def _aggregate_state(self, config: SubscriptionConfig, shape: QueryShape) -> AggregateState:
        stream = self.streams[shape.stream]
        event_column = stream.event_time or "_received_at"
        if shape.kind == WINDOWED and shape.window_column != event_column:
            where = (f"streams.{stream.name}.event_time = {event_column!r}" if stream.event_time
                     else "arrival time: set event_time on the stream to window by a column")
            raise SqlError(f"{shape.window_function}() must be over the stream's event-time column "
                           f"{event_column!r} ({where}), not {shape.window_column or 'an expression'!r}")
        query = rewrite(config.sql, self._aggregate_names, shape.output_schema.names)
        if shape.kind == RUNNING and query.mode == RAW:
            raise SqlError(f"a running aggregate (GROUP BY without a window) can only use aggregates that merge "
                           f"incrementally (count, sum, avg, min, max, stddev/var, first/last_value ORDER BY ...); "
                           f"{', '.join(query.aggregates)} would keep every row forever: use a window")
        window = self._window_spec(query.window) if query.window else None
        try:
            return AggregateState(config.name, query, window, event_column, shape.output_schema, self._ctx,
                                  self._register)
        except SqlError as exc:
            raise SqlError(f"cannot run this query incrementally: {exc}") from None

    def _window_spec(self, call: WindowCall) -> WindowSpec:
        values = []
        for position, arg in enumerate(call.args):
            what = f"argument {position + 2} of {call.kind}()"
            try:
                value = plan(self._ctx, f"SELECT {arg} AS v").to_arrow_table().column(0)[0].as_py()
            except SqlError:
                raise SqlError(f"{what} must be an INTERVAL literal such as INTERVAL '10 seconds'") from None
            values.append(interval_ms(value, what))
        if call.kind == HOP:
            slide, size = values
            if size % slide:
                raise SqlError(f"hop(): the slide ({slide} ms) must divide the size ({size} ms)")
            return WindowSpec(HOP, size, slide)
        return WindowSpec(call.kind, values[0], values[0])

    def _max_event_ms(self, stream: str, batch: pa.Table) -> int | None:
        column = self.streams[stream].event_time or "_received_at"
        return pc.max(event_ms(batch.column(column))).as_py()

    def _reload_lookups(self) -> None:
        for name, lookup in self.lookups.items():
            table = lookup.changed_file()
            if table is None:
                continue
            self._register(name, table)
            broken = self._first_unplannable()
            if broken:
                self._register(name, lookup.table)
                lookup.failed(broken)
                continue
            lookup.table = table
            lookup.reloads += 1
            log.info("lookup table %s reloaded: %d rows", name, table.num_rows)

    def _first_unplannable(self) -> str | None:
        for subscription in self.subscriptions.values():
            sql = subscription.aggregate.query.partial if subscription.aggregate else subscription.config.sql
            try:
                plan(self._ctx, sql)
            except SqlError as exc:
                return f"subscription {subscription.name} would fail: {exc}"
        return None

    def _failed(self, subscription: Subscription, exc: Exception) -> None:
        stats = subscription.stats
        stats.errors += 1
        stats.last_error = str(exc).splitlines()[0][:300]
        log.warning("subscription %s failed on a batch of %s: %s", subscription.name, subscription.shape.stream,
                    stats.last_error)

    def _register(self, name: str, table: pa.Table) -> None:
        if self._ctx.table_exist(name):
            self._ctx.deregister_table(name)
        batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
        self._ctx.register_record_batches(name, [batches])


def _arrival(batch: pa.Table) -> float:
    """Processing time of a batch: when its newest row was received (the wall clock if unknown)."""
    if "_received_at" in batch.column_names:
        newest = pc.max(event_ms(batch.column("_received_at"))).as_py()
        if newest is not None:
            return newest / 1000
    return time.time()


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


def _aggregate_function_names(ctx: SessionContext) -> set[str]:
    """Every aggregate function DataFusion knows, by name (so the rewrite can find aggregate calls). The
    same names as information_schema.routines lists, without building that table (~30 MB RSS for good)."""
    return {name.lower() for name in ctx.udafs()}


def _names_in(sql: str) -> set[str]:
    """Identifiers as DataFusion resolves them (unquoted lower-cased), without planning the SQL."""
    try:
        tokens = tokenize(sql)
    except ValueError:
        return set()
    return {t.norm() if t.kind == "ident" else t.text[1:-1].replace('""', '"')
            for t in tokens if t.kind in ("ident", "qident")}
