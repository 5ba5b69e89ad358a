"""The window operator: partial aggregates (or raw rows) per window unit and group, emitted once when the
watermark passes a window's end (append mode).

Per micro-batch: split off late rows, fold the on-time rows' partial into the state (sessions: merge
overlapping sessions of a key at once; others: compact by key when the state doubled). When the
watermark passes window ends, the closed windows' rows leave the state and run through the final.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.engine.incremental import PARTIAL, WINDOW_END, WINDOW_START, IncrementalQuery
from arros_mqtt.engine.kernels import AggregateKernel
from arros_mqtt.engine.operators.state import AggregateState
from arros_mqtt.engine.window_functions import SESSION, TIMESTAMP, WindowSpec, event_ms, floor_to

MIN_COMPACT_ROWS = 4096


class WindowAggregate(AggregateState):
    def __init__(self, query: IncrementalQuery, kernel: AggregateKernel, schema: pa.Schema, window: WindowSpec,
                 event_column: str) -> None:
        self.window = window
        self.event_column = event_column
        super().__init__(query, kernel, schema)

    def _changed(self) -> None:
        self._earliest_end: float | None = None  # recomputed on the next close

    def _combine(self) -> None:
        if self.window.kind == SESSION:
            self.table = self.kernel.merge(self.table)  # overlapping sessions of a key become one at once
        elif self.query.mode == PARTIAL and self.rows > max(MIN_COMPACT_ROWS, 2 * self._compacted_rows):
            self._compact()

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

    def close(self, watermark: int | None) -> pa.Table | None:
        """Result rows of every window whose end the watermark passed since the last close. The state
        changes only once the final succeeded: if it raises, the same windows close on the next try."""
        closing = self.closing(watermark)
        if closing is None:
            return None
        result = None if closing.rows is None else self.kernel.final(closing.rows)
        closing.commit()
        return result

    def take_closed(self, watermark: int | None) -> pa.Table | None:
        """State rows of the windows whose end the watermark passed since the last close (now out of the
        state), labelled with their window; None when none. `close` without the final."""
        closing = self.closing(watermark)
        if closing is None:
            return None
        closing.commit()
        return closing.rows

    def closing(self, watermark: int | None) -> Closing | None:
        """The windows the watermark closes, without taking them out of the state yet: `commit()` does,
        once their results are out (closing is atomic: a failing final loses no window). None: nothing
        to do at this watermark."""
        if watermark is None or (self.emitted_until is not None and watermark <= self.emitted_until):
            return None
        if self.earliest_window_end() > watermark:  # nothing to close: O(1) until the state changes
            return Closing(self, watermark, None, None)
        if self.window.kind == SESSION:
            ends = self.table.column(WINDOW_END)
            done = pc.less_equal(ends, pa.scalar(watermark, pa.int64()).cast(TIMESTAMP))
            closed = self.table.filter(done)
            remaining = self.table.filter(pc.invert(done))
        else:
            pane = self.table.column(WINDOW_START).cast(pa.int64()).to_numpy()
            closed = self._closing_windows(pane, self.emitted_until, watermark)
            remaining = self.table.filter(pa.array(pane + self.window.size_ms > watermark))
        return Closing(self, watermark, closed if closed.num_rows else None, remaining)

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


class Closing:
    """Windows a watermark closes: their state rows (`rows`, None when none) and what `commit` leaves."""

    def __init__(self, state: WindowAggregate, watermark: int, rows: pa.Table | None,
                 remaining: pa.Table | None) -> None:
        self.state, self.watermark, self.rows, self._remaining = state, watermark, rows, remaining

    def commit(self) -> None:
        """Take the closed windows out of the state; the watermark they closed at is emitted."""
        state = self.state
        if self._remaining is not None:
            state.table = self._remaining
            state._compacted_rows = min(state._compacted_rows, state.rows)
        state.emitted_until = self.watermark


def _earliest_unit_end(ms: pa.Array, window: WindowSpec) -> int:
    """The end of the earliest pane (tumble/hop) or one-row session of non-null event times: a row is late
    when its unit ends at or before the watermark, and ends grow with the event time."""
    earliest = pc.min(ms).as_py()
    if earliest is None:
        return np.iinfo(np.int64).max
    if window.kind == SESSION:
        return earliest + window.size_ms
    return earliest - earliest % window.slide_ms + window.slide_ms  # Python's % floors, as floor_to does
