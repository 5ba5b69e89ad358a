"""The window functions `tumble`, `hop` and `session`: SQL names DataFusion can plan, and their arithmetic.

DataFusion has no streaming windows, so each is registered as a scalar UDF returning the struct
`{start, end}` (timestamp[ms, UTC]); that makes the user's query plan, and lets `analyze()` find
the window among the GROUP BY expressions. The incremental rewrite then uses them per row:
`tumble(ts, size)` is the row's window (aligned to the Unix epoch, as `date_bin` and Flink do),
`hop(ts, slide, size)` is computed over panes of `slide` (a row belongs to size/slide windows),
`session(ts, gap)` is the row's own one-row session `[ts, ts + gap)` that merging grows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datafusion import SessionContext, udf

from arros_mqtt.core.errors import SqlError

TIMESTAMP = pa.timestamp("ms", tz="UTC")
WINDOW_TYPE = pa.struct([("start", TIMESTAMP), ("end", TIMESTAMP)])
INTERVAL = pa.month_day_nano_interval()
WINDOW_FUNCTIONS = ("tumble", "hop", "session")
TUMBLE, HOP, SESSION = WINDOW_FUNCTIONS


@dataclass(frozen=True)
class WindowSpec:
    """One window function call as the query wrote it, in milliseconds."""

    kind: str
    size_ms: int  # tumble/hop: window length; session: the gap
    slide_ms: int  # hop: the slide; tumble: = size; session: = gap

    @property
    def panes_per_window(self) -> int:
        return self.size_ms // self.slide_ms

    def describe(self) -> str:
        if self.kind == HOP:
            return f"hop slide {_human(self.slide_ms)} size {_human(self.size_ms)}"
        return f"{self.kind} {'gap ' if self.kind == SESSION else ''}{_human(self.size_ms)}"


def event_ms(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Event times as int64 epoch milliseconds (nulls stay null)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type) and column.type.unit == "ms":
        return column.view(pa.int64())  # the same buffers: no cast (this runs several times per micro-batch)
    return pc.cast(pc.cast(column, TIMESTAMP, safe=False), pa.int64())


def floor_to(ms: np.ndarray, step: int) -> np.ndarray:
    """Start of the epoch-aligned bucket of length `step` holding each instant (floor, also before 1970)."""
    return ms - np.mod(ms, step)


def register_window_functions(ctx: SessionContext) -> None:
    ctx.register_udf(udf(_tumble, [TIMESTAMP, INTERVAL], WINDOW_TYPE, "immutable", name=TUMBLE))
    ctx.register_udf(udf(_hop, [TIMESTAMP, INTERVAL, INTERVAL], WINDOW_TYPE, "immutable", name=HOP))
    ctx.register_udf(udf(_session, [TIMESTAMP, INTERVAL], WINDOW_TYPE, "immutable", name=SESSION))


def interval_ms(value: object, what: str) -> int:
    """A MonthDayNano interval as whole milliseconds; SqlError for months, zero or sub-millisecond parts."""
    months, days, nanos = (getattr(value, "months", None), getattr(value, "days", None),
                           getattr(value, "nanoseconds", None))
    if months is None or days is None or nanos is None:
        raise SqlError(f"{what} must be an INTERVAL literal such as INTERVAL '10 seconds'")
    if months:
        raise SqlError(f"{what} cannot be in months or years (their length varies); use days or less")
    total = days * 86_400_000_000_000 + nanos
    if total <= 0 or total % 1_000_000:
        raise SqlError(f"{what} must be a positive whole number of milliseconds")
    return total // 1_000_000


def _window(start: np.ndarray, end: np.ndarray, valid: pa.Array) -> pa.StructArray:
    mask = pc.invert(valid).to_numpy(zero_copy_only=False)
    starts = pa.array(start, pa.int64(), mask=mask).cast(TIMESTAMP)
    ends = pa.array(end, pa.int64(), mask=mask).cast(TIMESTAMP)
    return pa.StructArray.from_arrays([starts, ends], fields=list(WINDOW_TYPE), mask=pa.array(mask))


def _arg_ms(interval: pa.Array, what: str) -> int:
    return interval_ms(interval[0].as_py(), what)


def _ms(ts: pa.Array) -> tuple[np.ndarray, pa.Array]:
    ms = event_ms(ts)
    return ms.fill_null(0).to_numpy(), pc.is_valid(ms)


def _tumble(ts: pa.Array, size: pa.Array) -> pa.StructArray:
    step = _arg_ms(size, "the tumble size")
    ms, valid = _ms(ts)
    start = floor_to(ms, step)
    return _window(start, start + step, valid)


def _hop(ts: pa.Array, slide: pa.Array, size: pa.Array) -> pa.StructArray:
    """The latest window holding each row (used only when a query selects hop(...) outside GROUP BY)."""
    step, length = _arg_ms(slide, "the hop slide"), _arg_ms(size, "the hop size")
    ms, valid = _ms(ts)
    start = floor_to(ms, step)
    return _window(start, start + length, valid)


def _session(ts: pa.Array, gap: pa.Array) -> pa.StructArray:
    step = _arg_ms(gap, "the session gap")
    ms, valid = _ms(ts)
    return _window(ms, ms + step, valid)


def _human(ms: int) -> str:
    for unit, length in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % length == 0:
            return f"{ms // length}{unit}"
    return f"{ms}ms"
