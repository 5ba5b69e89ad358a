"""The engine: subscriptions over the micro-batches of their streams. Knows nothing about MQTT or sinks.

Each subscription is compiled once (compiler.py) into an immutable plan (plan.py) and an operator that
holds its state (operators/); the kernel the plan chose (kernels/: DataFusion or pyarrow) computes
every step. Per micro-batch the engine runs the operators of the stream's subscriptions that can match
it (stream_index.py, equality_skip.py): per-row ones yield rows, running aggregates the groups a batch
changed, windows a window's rows once the stream's watermark passes its end, in `process` or, for
idle streams, in `tick`. DataFusion steps read the micro-batch as the stream's table; lookup tables
stay registered (and are swapped when their file changes). Planning per batch costs ~0.1 ms here and
a DataFrame is bound to the data it was planned over, so DataFusion plans are not cached.

A stream declared without a schema has one only after its first micro-batch: subscriptions that read
it wait in `pending` (`add_when_ready`) and are planned by `set_stream_schema`; those whose SQL
then fails are kept in `rejected` with the reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc
from datafusion import SessionContext

from arros_mqtt.config import StreamConfig, SubscriptionConfig, TableConfig
from arros_mqtt.core.errors import SqlError
from arros_mqtt.engine.compiler import compile_subscription
from arros_mqtt.engine.event_bounds import Rejected, admit, max_event_bound
from arros_mqtt.engine.fault_isolation import final_isolating, partial_isolating, select_isolating
from arros_mqtt.engine.lookup import LookupTable
from arros_mqtt.engine.micro_batch import MicroBatch
from arros_mqtt.engine.output_loops import output_loop
from arros_mqtt.engine.readonly_sql import RUNNING, WINDOWED, analyze
from arros_mqtt.engine.run_bounds import OverBound, RunBounds
from arros_mqtt.engine.sql_session import SqlSession
from arros_mqtt.engine.sql_text import tokenize
from arros_mqtt.engine.stream_index import StreamReaders
from arros_mqtt.engine.subscription import Result, Subscription
from arros_mqtt.engine.watermark import Watermark
from arros_mqtt.engine.window_closing import close_windows
from arros_mqtt.engine.window_functions import event_ms

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, streams: dict[str, StreamConfig], tables: dict[str, TableConfig] | None = None,
                 kernel: str | None = None, bounds: RunBounds | None = None) -> None:
        """`kernel` ("datafusion" or "pyarrow") forces every subscription onto that kernel (tests compare
        them); None: each runs on pyarrow kernels where they can run it, else on DataFusion. `bounds`:
        what one subscription may cost per micro-batch (run_bounds.py); over them it is paused."""
        self.kernel = kernel
        self.streams = dict(streams)
        self.tables = dict(tables or {})
        self.subscriptions: dict[str, Subscription] = {}
        self.paused: dict[str, str] = {}  # name -> reason; paused subscriptions skip micro-batches
        self.on_bound_pause: Callable[[str, str], None] | None = None  # (name, reason): store the pause
        self.pending: dict[str, SubscriptionConfig] = {}  # waiting for a stream's inferred schema
        self.rejected: dict[str, str] = {}  # pending ones whose SQL failed once the schema was known
        self._rejected_configs: dict[str, SubscriptionConfig] = {}  # tried again when the schema changes
        self._paused_while_replanned: dict[str, str] = {}  # paused ones waiting for a stream's new schema
        self._readers: dict[str, StreamReaders] = {}  # per stream; rebuilt after any change (`_changed`)
        self._next_close: dict[str, float] = {}  # per stream: no window of its subscriptions ends before this
        self._session = SqlSession(bounds)
        self._empty: dict[str, pa.Table] = {}  # per stream: what its table holds between micro-batches
        self.watermarks = {name: Watermark(round(s.watermark * 1000), s.idle_timeout, round(s.max_future * 1000))
                           for name, s in streams.items()}
        for name, stream in self.streams.items():
            self._empty_stream(name, stream)
        self.lookups = {name: LookupTable.open(table) for name, table in self.tables.items()}
        for name, lookup in self.lookups.items():
            self._session.register(name, lookup.table)

    @property
    def _ctx(self) -> SessionContext:
        """The DataFusion context (tests plan SQL in it directly)."""
        return self._session.ctx

    def add(self, config: SubscriptionConfig) -> Subscription:
        """Plan and check a subscription, then run it from the next micro-batch on."""
        return self.install(self.build(config))

    def build(self, config: SubscriptionConfig) -> Subscription:
        """Compile a subscription without running it; SqlError if it is not one we can run."""
        if waiting := self.awaited_streams(config.sql):
            raise SqlError(f"stream {waiting[0]!r} has no schema yet: it is inferred from the stream's first "
                           "micro-batch; create the subscription once data has arrived", code="schema_pending")
        plan = compile_subscription(config, self._session, self.streams, self.tables, self.kernel)
        loop = output_loop(config, plan.shape.stream, self.streams,
                           ((s.config, s.shape.stream) for s in self.subscriptions.values()))
        if loop is not None:
            if config.name not in self.subscriptions:  # else the running one holds the tables compiling registered
                for table in plan.tables:
                    self._session.drop(table)
            raise SqlError(loop, code="output_loop")
        return Subscription.start(config, plan)

    def install(self, subscription: Subscription, replace: bool = False) -> Subscription:
        """Run a built subscription; with `replace` it takes the place (and releases the state) of the
        one with its name in one step, so no micro-batch sees neither or both."""
        name = subscription.name
        if (name in self.subscriptions or name in self.pending) and not replace:
            raise SqlError(f"a subscription named {name!r} exists", code="exists")
        if name not in self.subscriptions and replace:
            raise KeyError(name)
        old = self.subscriptions.get(name)
        if old is not None and subscription.plan.aggregate is None:  # else the new one holds the same tables
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
            shape = analyze(self._session.ctx, sql, set(self.streams), set(self.tables))
        except SqlError as exc:
            return named if exc.code in ("invalid_sql", "unknown_stream") else []
        return [shape.stream] if shape.stream in unknown.values() else []

    def set_stream_schema(self, name: str, stream: StreamConfig) -> dict[str, SqlError]:
        """A schema-less stream's inferred schema: plan what waited for it; the SQL errors, by subscription.

        Inferred again (its first messages disagreed) or reset: the subscriptions that read it are planned
        afresh on the new schema, their state (of the old columns) dropped, and those rejected before
        get another try."""
        self.streams[name] = replace(stream, name=name)
        self._empty_stream(name, stream)
        self._replan(name)
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
                self._rejected_configs[sub_name] = config
                continue
            if sub_name in self._paused_while_replanned:
                self.paused[sub_name] = self._paused_while_replanned.pop(sub_name)
        return failures

    def forget_stream_schema(self, name: str, stream: StreamConfig) -> None:
        """A schema-less stream's inferred schema is reset (`stream` as declared, without one): its
        subscriptions wait in `pending` until the next micro-batch infers it again."""
        self.streams[name] = replace(stream, name=name)
        self._empty_stream(name, stream)
        self._replan(name)

    def _replan(self, stream: str) -> None:
        """The subscriptions reading `stream` out (their state released) and back into `pending`, with
        those rejected before (they may plan on its new schema)."""
        for sub_name in list(self.rejected):
            config = self._rejected_configs.pop(sub_name, None)
            del self.rejected[sub_name]
            if config is not None:
                self.pending[sub_name] = config
        for sub_name, subscription in list(self.subscriptions.items()):
            if subscription.shape.stream == stream:
                if sub_name in self.paused:
                    self._paused_while_replanned[sub_name] = self.paused[sub_name]
                self.remove(sub_name)
                self.pending[sub_name] = subscription.config

    def remove(self, name: str) -> Subscription:
        """Stop running `name` and release its state; KeyError if there is none."""
        subscription = self.subscriptions.pop(name)
        self.paused.pop(name, None)
        self._changed()
        self.release(subscription)
        return subscription

    def release(self, subscription: Subscription) -> None:
        """Deregister the state tables of an aggregate subscription (its state object goes with it)."""
        for table in subscription.plan.tables:
            self._session.drop(table)

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
        """DataFusion's logical and physical plans for one micro-batch of the subscription's stream, and
        for aggregates the SQL of each step and what runs on pyarrow kernels instead."""
        df = self._session.plan(subscription.config.sql)
        return {"runs_as": subscription.describe(),
                "logical_plan": df.optimized_logical_plan().display_indent(),
                "physical_plan": df.execution_plan().display_indent(),
                **subscription.plan.steps()}

    def admit(self, stream: str, batch: pa.Table) -> tuple[pa.Table, list[Rejected]]:
        """The rows of a batch within the stream's event-time bounds, and those outside with the reason
        (event_bounds.py): callers dead-letter them and `process` only the rest."""
        return admit(self.streams[stream], batch)

    def process(self, stream: str, batch: pa.Table) -> list[Result]:
        """Run every subscription of `stream` over one micro-batch (`admit`ted); a failing one never stops
        the others."""
        readers = self._readers_of(stream)
        if not readers.running or batch.num_rows == 0:
            return []
        watermark = self.watermarks[stream]
        current = MicroBatch(batch, watermark.value)
        matching = readers.matching(batch)
        results = []
        rows = batch.num_rows
        for subscription in readers.running:
            stats = subscription.stats
            stats.batches += 1
            stats.rows_in += rows
            try:
                if subscription.plan.route is not None and id(subscription) not in matching:  # no row can match
                    if subscription.plan.aggregate is not None:  # a window still reports the batch's late rows
                        results += self._late(subscription, current.split(subscription.operator)[1])
                    continue
                started = time.monotonic()
                out = self._run(subscription, current, readers)
                self._session.bounds.check(sum(r.table.num_rows for r in out),
                                           sum(r.table.get_total_buffer_size() for r in out), started)
                results += out
            except Exception as exc:  # a runtime SQL error (cast, overflow) in one batch, or a bound
                self._failed(subscription, exc)
        arrival = _arrival(batch)
        watermark.observe(self._max_event_ms(stream, batch, arrival), arrival)
        results += self._close_windows(stream)
        self._session.bind(stream, self._empty[stream])  # release the batch, if a DataFusion step read it
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

    def _run(self, subscription: Subscription, current: MicroBatch, readers: StreamReaders) -> list[Result]:
        """The subscription over one batch; rows (or groups) a run-time error is isolated to come back as
        dead-letter results (`Result.error`), the others go on (fault_isolation.py)."""
        kind, stats = subscription.plan.shape.kind, subscription.stats
        if kind == WINDOWED:
            return self._window(subscription, current, readers)
        if kind == RUNNING:
            table, failed = self._running(subscription, current.batch)
            stats.state_rows = subscription.operator.rows
            stats.state_bytes = subscription.operator.bytes
        else:
            table, failed = select_isolating(subscription, current.batch)
        if table is None or not table.num_rows:
            return failed
        stats.rows_out += table.num_rows
        return [*failed, Result(subscription, table)]

    @staticmethod
    def _running(subscription: Subscription, rows: pa.Table) -> tuple[pa.Table | None, list[Result]]:
        """The batch folded in (without the rows its partial fails on); results of the groups it touched."""
        operator = subscription.operator
        partial, failed = partial_isolating(subscription, rows)
        if partial is None:
            return None, failed
        operator.add_partial(partial)
        table, poisoned = final_isolating(subscription, operator.kernel.touched(operator.table, partial))
        return table, failed + poisoned

    def _window(self, subscription: Subscription, current: MicroBatch, readers: StreamReaders) -> list[Result]:
        """Late rows out, on-time rows into the state (without those its partial fails on)."""
        window, stats = subscription.operator, subscription.stats
        rows, late = current.split(window)
        results = self._late(subscription, late)
        if rows.num_rows:
            partial = None
            if readers.shares_partial(subscription):
                try:
                    partial = current.shared_partial(subscription.plan, rows, self._session)
                except Exception:
                    partial, failed = partial_isolating(subscription, rows)
                    results += failed
            else:
                partial, failed = partial_isolating(subscription, rows)
                results += failed
            if partial is not None:
                window.add_partial(partial)
            stream = subscription.plan.shape.stream
            self._next_close[stream] = min(self._next_close.get(stream, -math.inf), window.earliest_window_end())
        stats.state_rows = window.rows
        stats.state_bytes = window.bytes
        return results

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
        results, self._next_close[stream] = close_windows(self._readers_of(stream), watermark, self._session,
                                                          self._failed)
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

    def _max_event_ms(self, stream: str, batch: pa.Table, arrival: float) -> int | None:
        """The batch's largest event time, never past the stream's `max_future` bound (even for rows that
        were not `admit`ted: one row must not poison the watermark)."""
        config = self.streams[stream]
        largest = pc.max(event_ms(batch.column(config.event_time or "_received_at"))).as_py()
        bound = max_event_bound(config, round(arrival * 1000))
        return largest if largest is None or bound is None else min(largest, bound)

    def _reload_lookups(self) -> None:
        for name, lookup in self.lookups.items():
            table = lookup.changed_file()
            if table is None:
                continue
            self._session.register(name, table)
            broken = self._first_unplannable()
            if broken:
                self._session.register(name, lookup.table)
                lookup.failed(broken)
                continue
            lookup.table = table
            lookup.reloads += 1
            log.info("lookup table %s reloaded: %d rows", name, table.num_rows)

    def _first_unplannable(self) -> str | None:
        for subscription in self.subscriptions.values():
            spec = subscription.plan.aggregate
            sql = spec.query.partial if spec is not None else subscription.config.sql
            try:
                self._session.plan(sql)
            except SqlError as exc:
                return f"subscription {subscription.name} would fail: {exc}"
        return None

    def _failed(self, subscription: Subscription, exc: Exception) -> None:
        """Counted; over a `RunBounds` limit the subscription is also paused (its results of the batch
        are not published) with the reason, so it cannot take the memory or the time of every stream."""
        stats = subscription.stats
        stats.errors += 1
        stats.last_error = str(exc).splitlines()[0][:300]
        if isinstance(exc, OverBound):
            self.pause(subscription.name, stats.last_error)
            if self.on_bound_pause is not None:
                self.on_bound_pause(subscription.name, stats.last_error)
            else:
                log.warning("subscription %s paused: %s", subscription.name, stats.last_error)
            return
        log.warning("subscription %s failed on a batch of %s: %s", subscription.name, subscription.shape.stream,
                    stats.last_error)

    def _empty_stream(self, name: str, stream: StreamConfig) -> None:
        """The stream's table between micro-batches: empty, of the stream's schema (queries plan on it)."""
        self._empty[name] = stream.full_schema().empty_table()
        self._session.bind(name, self._empty[name])


def _arrival(batch: pa.Table) -> float:
    """Processing time of a batch: when its newest row was received (the wall clock if unknown)."""
    if "_received_at" in batch.column_names:
        newest = pc.max(event_ms(batch.column("_received_at"))).as_py()
        if newest is not None:
            return newest / 1000
    return time.time()


def _names_in(sql: str) -> set[str]:
    """Identifiers as DataFusion resolves them (unquoted lower-cased), without planning the SQL."""
    try:
        tokens = tokenize(sql)
    except ValueError:
        return set()
    return {t.norm() if t.kind == "ident" else t.text[1:-1].replace('""', '"')
            for t in tokens if t.kind in ("ident", "qident")}
