"""A stream's event-time watermark: how far its event time has surely progressed.

watermark = max event time seen - the stream's `watermark` delay (bounded out-of-orderness); it
never moves back. A stream that receives nothing for `idle_timeout` (processing time) would hold
its windows open forever, so while it is idle its watermark advances with the wall clock: after
`idle` seconds without rows it is `max event time - delay + idle`.
"""

from __future__ import annotations


class Watermark:
    def __init__(self, delay_ms: int, idle_timeout: float) -> None:
        self.delay_ms = delay_ms
        self.idle_timeout = idle_timeout
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
        if not self.idle_timeout or self.last_arrival is None or self.max_event_ms is None:
            return False
        idle = now - self.last_arrival
        if idle < self.idle_timeout:
            return False
        return self._raise_to(self.max_event_ms - self.delay_ms + int(idle * 1000))

    def _raise_to(self, candidate: int) -> bool:
        if self.value is None or candidate > self.value:
            self.value = candidate
            return True
        return False
