"""The incremental state of one aggregate subscription, as an Arrow table merged by DataFusion SQL (or,
for the common window shape, by pyarrow kernels: arrow_window.py, same state columns).

State rows are keyed by (window unit, group keys): the window itself for tumble, a pane of one
slide for hop, a session for session windows; none for running aggregates. In partial mode a row
holds partial aggregates, so state grows with keys x open windows; in raw mode (an aggregate that
cannot be merged) it holds projected input rows until their window closes.

Per micro-batch: split off late rows, run the partial query over the on-time rows, append the
result to the state (sessions: merge overlapping sessions of a key at once; others: compact by key
when the state doubled). When the watermark passes window ends, the closed windows' rows run
through the final query and leave the state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datafusion import SessionContext

from arros_mqtt.engine.arrow_window import ArrowWindow
from arros_mqtt.engine.incremental import PARTIAL, WINDOW_END, WINDOW_START, IncrementalQuery
from arros_mqtt.engine.readonly_sql import plan
from arros_mqtt.engine.window_functions import SESSION, TIMESTAMP, WindowSpec, event_ms, floor_to

Register = Callable[[str, pa.Table], None]
MIN_COMPACT_ROWS = 4096
MAX_STATE_CHUNKS = 64  # past this many chunks the state is made one: each kernel call pays per chunk


class AggregateState:
    def __init__(self, name: str, query: IncrementalQuery, window: WindowSpec | None, event_column: str,
                 output_schema: pa.Schema, ctx: SessionContext, register: Register) -> None:
        self.query = query
        self.window = window
        self.event_column = event_column
        self.output_schema = output_schema
        self._register = register
        self._state_name = f"__state_{name}"
        self._final_name = f"__final_{name}"
        self._changed_name = f"__changed_{name}"
        self.schema = _schema(plan(ctx, query.partial))
        self.table = self.schema.empty_table()
        self.emitted_until: int | None = None  # the watermark windows were last closed at
        self.arrow: ArrowWindow | None = None  # set by the engine when pyarrow kernels can run the steps
        self._compacted_rows = 0
        for table in (self._state_name, self._final_name, self._changed_name):
            register(table, self.table)
        plan(ctx, query.final(self._final_name))  # the rewrite must plan before any row flows
        if query.mode == PARTIAL:
            plan(ctx, query.merge(self._state_name))
        if window is not None and window.kind == SESSION:
            plan(ctx, self._session_sql())

    @property
    def table(self) -> pa.Table:
        return self._table

    @table.setter
    def table(self, table: pa.Table) -> None:
        self._table = table
        self._earliest_end: float | None = None  # recomputed on the next close

    @property
    def rows(self) -> int:
        return self.table.num_rows

    @property
    def bytes(self) -> int:
        """Memory the state's buffers take (each counted once). Not `Table.nbytes`: that walks every
        chunk's slice and took ~1.5 ms for a state of 300 small chunks, on every micro-batch."""
        return self.table.get_total_buffer_size()

    @property
    def table_names(self) -> tuple[str, ...]:
        """The DataFusion tables this state registers, to deregister when the subscription goes."""
        return (self._state_name, self._final_name, self._changed_name)

    def snapshot(self) -> tuple[pa.Table, dict[str, int | None]]:
        """The state table and the counters a checkpoint needs to restore it."""
        return self.table, {"emitted_until": self.emitted_until, "compacted_rows": self._compacted_rows}

    def restore(self, table: pa.Table, counters: dict[str, int | None]) -> None:
        """ValueError if `table` does not have this state's schema (the query changed)."""
        if not table.schema.equals(self.schema):
            raise ValueError("the checkpointed state has another schema")
        self.table = table
        self.emitted_until = counters["emitted_until"]
        self._compacted_rows = counters["compacted_rows"] or 0

    def split_late(self, batch: pa.Table, watermark: int | None) -> tuple[pa.Table, pa.Table]:
        """(rows to aggregate, late rows): late = behind the watermark for a window already emitted.

        A hop row whose first window closed but whose later windows are open is both: counted late
        and still aggregated into the open windows.
        """
        window = self.window
        ms_array = event_ms(batch.column(self.event_column))
        if ms_array.null_count == 0 and (watermark is None or _earliest_unit_end(ms_array, window) > watermark):
            return batch, batch.schema.empty_table()  # the usual batch: no row is late (one min, no mask)
        missing = pc.is_null(ms_array).to_numpy(zero_copy_only=False)
        ms = ms_array.fill_null(0).to_numpy()
        limit = watermark if watermark is not None else np.iinfo(np.int64).min
        if window.kind == SESSION:
            late = missing | (ms + window.size_ms <= limit)
            keep = ~late
        else:
            pane = floor_to(ms, window.slide_ms)
            late = missing | (pane + window.slide_ms <= limit)
            keep = ~missing & (pane + window.size_ms > limit)
        if not late.any():
            return batch, batch.schema.empty_table()
        return batch.filter(pa.array(keep)), batch.filter(pa.array(late))

    def ingest(self, ctx: SessionContext) -> pa.Table:
        """Fold the rows registered as the stream's table (by the caller) into the state; the partial."""
        return self.add_partial(ctx, _collect(ctx, self.query.partial, self.schema))

    def ingest_rows(self, ctx: SessionContext, rows: pa.Table) -> pa.Table:
        """`ingest` with the partial aggregate on pyarrow kernels (needs `arrow`): rows given, not registered."""
        return self.add_partial(ctx, self.arrow.partial(rows))

    def add_partial(self, ctx: SessionContext, partial: pa.Table) -> pa.Table:
        """Fold partial rows (the result of the partial query, e.g. a shared one's slice) into the state."""
        self.table = pa.concat_tables([self.table, partial]) if self.table.num_rows else partial
        if self.window is not None and self.window.kind == SESSION:
            self.table = self._run(ctx, self._session_sql(), self.table)
        elif self.query.mode == PARTIAL and (self.window is None or self.rows > max(MIN_COMPACT_ROWS,
                                                                                   2 * self._compacted_rows)):
            self._compact(ctx)
        if self.table.num_columns and self.table.column(0).num_chunks > MAX_STATE_CHUNKS:
            # small micro-batches add a chunk of a row or two each; thousands of them before the next
            # compaction made every kernel call on the state (and the engine) slow: ~1 ms per batch
            self.table = self.table.combine_chunks()
        return partial

    def updated(self, ctx: SessionContext, partial: pa.Table) -> pa.Table:
        """Running aggregates: the current result rows of the groups `partial` touched."""
        keys = self.query.keys
        if keys:
            self._register(self._changed_name, partial)
            on = " AND ".join(f"s.{k} IS NOT DISTINCT FROM c.{k}" for k in keys)
            changed = (f"SELECT s.* FROM {self._state_name} s JOIN (SELECT DISTINCT {', '.join(keys)} FROM "
                       f"{self._changed_name}) c ON {on}")
            rows = self._run(ctx, changed, self.table)
            self._register(self._changed_name, self.schema.empty_table())
        else:
            rows = self.table
        return self.finalize(ctx, rows)

    def close(self, ctx: SessionContext, watermark: int | None) -> pa.Table | None:
        """Result rows of every window whose end the watermark passed since the last close."""
        closed = self.take_closed(watermark)
        return None if closed is None else self.finalize(ctx, closed)

    def take_closed(self, watermark: int | None) -> pa.Table | None:
        """State rows of the windows whose end the watermark passed since the last close (now out of the
        state), labelled with their window; None when none. `close` without the final query."""
        if watermark is None or (self.emitted_until is not None and watermark <= self.emitted_until):
            return None
        if self.earliest_window_end() > watermark:  # nothing to close: O(1) until the state changes
            self.emitted_until = watermark
            return None
        if self.window.kind == SESSION:
            ends = self.table.column(WINDOW_END)
            done = pc.less_equal(ends, pa.scalar(watermark, pa.int64()).cast(TIMESTAMP))
            closed = self.table.filter(done)
            self.table = self.table.filter(pc.invert(done))
        else:
            pane = self.table.column(WINDOW_START).cast(pa.int64()).to_numpy()
            closed = self._closing_windows(pane, self.emitted_until, watermark)
            self.table = self.table.filter(pa.array(pane + self.window.size_ms > watermark))
        self.emitted_until = watermark
        self._compacted_rows = min(self._compacted_rows, self.rows)
        return closed if closed.num_rows else None

    def earliest_window_end(self) -> float:
        """The earliest end (epoch ms) of any window a state row belongs to; infinite without rows.

        A tumble/hop pane starting at p is in windows ending at p + slide at the earliest. Cached: with
        thousands of window subscriptions on one stream, most states do not change in a micro-batch
        while the watermark moves on every one.
        """
        if self._earliest_end is None:
            if self.table.num_rows == 0:
                self._earliest_end = math.inf
            elif self.window.kind == SESSION:
                self._earliest_end = pc.min(self.table.column(WINDOW_END).cast(pa.int64())).as_py()
            else:
                earliest = pc.min(self.table.column(WINDOW_START).cast(pa.int64())).as_py()
                self._earliest_end = earliest + self.window.slide_ms
        return self._earliest_end

    def _closing_windows(self, pane: np.ndarray, after: int | None, until: int) -> pa.Table:
        """State rows (starting at `pane`) relabelled with each window they belong to that ends in
        (after, until]; tumble rows are their window already."""
        window = self.window
        lower = np.iinfo(np.int64).min if after is None else after
        parts = []
        for k in range(window.panes_per_window):
            start = pane - k * window.slide_ms
            end = start + window.size_ms
            mask = (end > lower) & (end <= until)
            if mask.any() and window.panes_per_window == 1:
                parts.append(self.table.filter(pa.array(mask)))
            elif mask.any():
                part = self.table.filter(pa.array(mask))
                part = part.set_column(part.schema.get_field_index(WINDOW_START), WINDOW_START,
                                       pa.array(start[mask]).cast(TIMESTAMP))
                part = part.set_column(part.schema.get_field_index(WINDOW_END), WINDOW_END,
                                       pa.array(end[mask]).cast(TIMESTAMP))
                parts.append(part)
        return pa.concat_tables(parts) if parts else self.schema.empty_table()

    def _compact(self, ctx: SessionContext) -> None:
        if self.arrow is not None:
            self.table = self.arrow.merge(self.table)
        else:
            self.table = self._run(ctx, self.query.merge(self._state_name), self.table)
        self._compacted_rows = self.rows

    def finalize(self, ctx: SessionContext, rows: pa.Table) -> pa.Table:
        """The user's select list over state rows (closed windows, changed groups)."""
        if self.arrow is not None and self.arrow.outputs is not None:
            return self.arrow.final(rows)
        self._register(self._final_name, rows)
        try:
            result = plan(ctx, self.query.final(self._final_name)).to_arrow_table()
        finally:
            self._register(self._final_name, self.schema.empty_table())
        if result.num_rows == 0:
            return self.output_schema.empty_table()
        try:
            return result.cast(self.output_schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            return result

    def _run(self, ctx: SessionContext, sql: str, state: pa.Table) -> pa.Table:
        """`sql` over `state` registered as the state table; the result cast to the state schema."""
        self._register(self._state_name, state)
        try:
            return _collect(ctx, sql, self.schema)
        finally:
            self._register(self._state_name, self.schema.empty_table())

    def _session_sql(self) -> str:
        """Merge overlapping sessions of each key: a row opens a new session unless it starts before the
        furthest end seen so far in its key (ordered by start)."""
        keys = [k for k in self.query.keys if k not in (WINDOW_START, WINDOW_END)]
        by_key = f"PARTITION BY {', '.join(keys)} " if keys else ""
        numbered = (f"SELECT *, row_number() OVER ({by_key}ORDER BY {WINDOW_START}, {WINDOW_END}) AS __rn "
                    f"FROM {self._state_name}")
        previous = (f"SELECT *, max({WINDOW_END}) OVER ({by_key}ORDER BY __rn ROWS BETWEEN UNBOUNDED PRECEDING "
                    "AND 1 PRECEDING) AS __prev FROM numbered")
        grouped = (f"SELECT *, sum(CASE WHEN __prev IS NOT NULL AND {WINDOW_START} < __prev THEN 0 ELSE 1 END) "
                   f"OVER ({by_key}ORDER BY __rn ROWS UNBOUNDED PRECEDING) AS __sid FROM previous")
        head = f"WITH numbered AS ({numbered}), previous AS ({previous}), sessions AS ({grouped}) "
        others = [f for f in self.schema.names if f not in (WINDOW_START, WINDOW_END, *keys)]
        session = ", ".join([*keys, "__sid"])
        if self.query.mode != PARTIAL:  # raw rows: relabel each with its session's bounds
            return (head + f"SELECT min({WINDOW_START}) OVER (PARTITION BY {session}) AS {WINDOW_START}, "
                    f"max({WINDOW_END}) OVER (PARTITION BY {session}) AS {WINDOW_END}, "
                    + ", ".join([*keys, *others]) + " FROM sessions")
        select = [f"min({WINDOW_START}) AS {WINDOW_START}", f"max({WINDOW_END}) AS {WINDOW_END}", *keys,
                  *self.query.merge_exprs]
        return head + "SELECT " + ", ".join(select) + f" FROM sessions GROUP BY {session}"


def _earliest_unit_end(ms: pa.Array, window: WindowSpec) -> int:
    """The end of the earliest pane (tumble/hop) or one-row session of non-null event times: a row is late
    when its unit ends at or before the watermark, and ends grow with the event time."""
    earliest = pc.min(ms).as_py()
    if earliest is None:
        return np.iinfo(np.int64).max
    if window.kind == SESSION:
        return earliest + window.size_ms
    return earliest - earliest % window.slide_ms + window.slide_ms  # Python's % floors, as floor_to does


def _collect(ctx: SessionContext, sql: str, schema: pa.Schema) -> pa.Table:
    table = plan(ctx, sql).to_arrow_table()
    return table.select(schema.names).cast(schema)


def _schema(df) -> pa.Schema:
    schema = df.schema()
    return schema if isinstance(schema, pa.Schema) else pa.schema(schema)
