"""Event-time bounds: rows whose event time is implausible next to their arrival never reach a window.

One row stamped in the year 2100 would move its stream's watermark a century ahead: every window of
every device would close at once and every later row be late, across restarts (the watermark is
checkpointed). So before any sink or subscription sees a micro-batch, rows whose event time is more
than the stream's `max_future` ahead of their `_received_at` (default 1 min), more than `max_past`
behind it (off by default: replaying a device's backlog is legitimate, and late rows have their own
path), or at or before the epoch (0 or negative: a device without a clock) are set apart with the
reason, to be dead-lettered. Rows without an event time pass (they are late rows, as before).
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.config import StreamConfig
from arros_mqtt.engine.window_functions import event_ms

Rejected = tuple[pa.Table, str]  # rows and the reason
Check = Callable[[pa.Array, pa.Array], pa.Array]  # (event ms, arrival ms) -> True where out of bounds
EPOCH_REASON = "event time at or before 1970-01-01T00:00:00Z (0 or negative): a device without a set clock?"


def admit(stream: StreamConfig, table: pa.Table) -> tuple[pa.Table, list[Rejected]]:
    """(rows within the stream's event-time bounds, [(rows out of them, reason)])."""
    if stream.event_time is None or table.num_rows == 0 or "_received_at" not in table.column_names:
        return table, []  # windows run on arrival time: always within bounds
    ms = event_ms(table.column(stream.event_time))
    arrival = event_ms(table.column("_received_at"))
    future, past = round(stream.max_future * 1000), round(stream.max_past * 1000)
    checks: list[tuple[Check, str]] = [(lambda t, a: pc.less_equal(t, 0), EPOCH_REASON)]
    if future:
        checks.append((lambda t, a: pc.greater(t, pc.add(a, future)),
                       f"event time more than {stream.max_future:g} s (max_future) ahead of its arrival"))
    if past:
        checks.append((lambda t, a: pc.less(t, pc.subtract(a, past)),
                       f"event time more than {stream.max_past:g} s (max_past) behind its arrival"))
    rejected = []
    for check, reason in checks:
        mask = pc.fill_null(check(ms, arrival), False)
        if not pc.any(mask).as_py():
            continue
        rejected.append((table.filter(mask), reason))
        keep = pc.invert(mask)
        table, ms, arrival = table.filter(keep), ms.filter(keep), arrival.filter(keep)
    return table, rejected


def max_event_bound(stream: StreamConfig, arrival_ms: int | None) -> int | None:
    """The largest event time a batch that arrived by `arrival_ms` may move the watermark to (None: no
    bound): a second guard, for rows that reached the engine without `admit`."""
    if not stream.max_future or arrival_ms is None:
        return None
    return arrival_ms + round(stream.max_future * 1000)
