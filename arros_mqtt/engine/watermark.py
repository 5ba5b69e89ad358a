"""A stream's event-time watermark: how far its event time has surely progressed.

watermark = max event time seen - the stream's `watermark` delay (bounded out-of-orderness); it
never moves back. A stream that receives nothing for `idle_timeout` (processing time) would hold
its windows open forever, so while it is idle its watermark advances with the wall clock: after
`idle` seconds without rows it is `max event time - delay + idle`.

Rows beyond the stream's `max_future` never reach it (event_bounds.py); a checkpointed watermark an
older version let run ahead is clamped on restore to `now + max_future`, so it recovers by itself.
"""

from __future__ import annotations

import time


class Watermark:
    def __init__(self, delay_ms: int, idle_timeout: float, max_future_ms: int = 0) -> None:
        self.delay_ms = delay_ms
        self.idle_timeout = idle_timeout
        self.max_future_ms = max_future_ms  # 0: no bound
        self.value: int | None = None  # epoch ms; None until the first row
        self.max_event_ms: int | None = None
        self.last_arrival: float | None = None  # processing time (epoch seconds) of the last rows

    def observe(self, max_event_ms: int | None, arrival: float) -> bool:
        """Rows arrived: move forward; True when the watermark moved."""
        self.last_arrival = arrival if self.last_arrival is None else max(self.last_arrival, arrival)
        if max_event_ms is None:
            return False
        self.max_event_ms = max_event_ms if self.max_event_ms is None else max(self.max_event_ms, max_event_ms)
        return self._raise_to(self.max_event_ms - self.delay_ms)

    def idle_advance(self, now: float) -> bool:
        """On a tick: if the stream has been idle for `idle_timeout`, advance by processing time."""
        target = self.idle_target(now)
        return target is not None and self._raise_to(target)

    def idle_target(self, now: float) -> int | None:
        """Where `idle_advance(now)` would move the watermark, None if it would not move it."""
        if not self.idle_timeout or self.last_arrival is None or self.max_event_ms is None:
            return None
        idle = now - self.last_arrival
        if idle < self.idle_timeout:
            return None
        target = self.max_event_ms - self.delay_ms + int(idle * 1000)
        return target if self.value is None or target > self.value else None

    def advance_to(self, value: int) -> bool:
        """Raise the watermark to `value` (a logged idle advance, replayed after a restart), never past
        the wall clock + `max_future`: an advance logged from a poisoned watermark does not poison it again."""
        return self._raise_to(self._clamped(value, time.time()))

    def touch(self, now: float) -> None:
        """Count the stream as active at `now`: while Arros was down or cut off from the broker, rows
        were not missing, only not delivered; the idle clock restarts."""
        if self.last_arrival is not None:
            self.last_arrival = max(self.last_arrival, now)

    def snapshot(self) -> dict[str, int | None]:
        return {"value": self.value, "max_event_ms": self.max_event_ms}

    def restore(self, snapshot: dict[str, int | None], now: float) -> None:
        """From a checkpoint; values past `now + max_future` (a poisoned watermark) are clamped to it."""
        self.value = self._clamped(snapshot["value"], now)
        self.max_event_ms = self._clamped(snapshot["max_event_ms"], now)
        self.last_arrival = now if self.max_event_ms is not None else None

    def _clamped(self, value: int | None, now: float) -> int | None:
        if value is None or not self.max_future_ms:
            return value
        return min(value, round(now * 1000) + self.max_future_ms)

    def _raise_to(self, candidate: int) -> bool:
        if self.value is None or candidate > self.value:
            self.value = candidate
            return True
        return False
