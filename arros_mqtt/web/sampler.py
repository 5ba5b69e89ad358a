"""Once a second: the service's counters turned into rates, and the process's CPU and RSS, kept for the
last few minutes so every chart has its history when a page opens. Reads counters that exist anyway."""

from __future__ import annotations

import os
import resource
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from arros_mqtt.web.sources import WebSources

HISTORY = 300  # samples (seconds) kept per series
INTERVAL = 1.0


@dataclass
class Series:
    """Per-second rates of named counters, time-aligned with the sampler's clock."""

    rates: dict[str, deque[float | None]] = field(default_factory=dict)
    _last: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, total: float, seconds: float, length: int) -> None:
        column = self.rates.get(name)
        if column is None:  # a stream or subscription that appeared: no history before now
            column = self.rates[name] = deque([None] * max(0, length - 1), maxlen=HISTORY)
        last = self._last.get(name)
        column.append(None if last is None or seconds <= 0 else round(max(0.0, total - last) / seconds, 2))
        self._last[name] = total

    def keep_only(self, seen: set[str]) -> None:
        """A counter gone (a dropped subscription) is forgotten."""
        for name in list(self.rates):
            if name not in seen:
                del self.rates[name]
                self._last.pop(name, None)


class ProcessUsage:
    """CPU (percent of one core) and resident memory of this process: /proc/self when there is one."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._last_cpu = self._cpu_seconds()
        self._last_at = time.monotonic()

    def sample(self) -> tuple[float, int]:
        cpu, now = self._cpu_seconds(), time.monotonic()
        percent = 100.0 * (cpu - self._last_cpu) / max(1e-6, now - self._last_at)
        self._last_cpu, self._last_at = cpu, now
        return round(percent, 1), self.rss()

    def rss(self) -> int:
        try:
            with open("/proc/self/statm", "rb") as handle:
                return int(handle.read().split()[1]) * self._page
        except OSError:  # no /proc: the peak, which is what getrusage has
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    @staticmethod
    def _cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime


class Sampler:
    """A daemon thread; `snapshot()` is safe from any thread."""

    def __init__(self, sources: WebSources) -> None:
        self.sources = sources
        self.times: deque[float] = deque(maxlen=HISTORY)
        self.totals = Series()  # "in" (messages), "out" (result messages), "deadletters"
        self.streams = Series()  # messages per stream
        self.rows_in = Series()  # per subscription
        self.rows_out = Series()
        self.cpu: deque[float] = deque(maxlen=HISTORY)
        self.rss: deque[int] = deque(maxlen=HISTORY)
        self.usage = ProcessUsage()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arros-web-sampler", daemon=True)
        self._last_at: float | None = None

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            try:
                self.sample()
            except Exception:  # a counter read mid-change: skip this second
                continue

    def sample(self) -> None:
        now = time.time()
        seconds = 0.0 if self._last_at is None else now - self._last_at
        self._last_at = now
        streams = dict(self.sources.streams())
        subscriptions = list(self.sources.engine.subscriptions.values())
        cpu, rss = self.usage.sample()
        with self._lock:
            self.times.append(round(now, 3))
            length = len(self.times)
            self.totals.add("in", sum(s.messages for s in streams.values()), seconds, length)
            self.totals.add("out", sum(s.stats.messages_out for s in subscriptions), seconds, length)
            self.totals.add("deadletters", sum(s.deadletters for s in streams.values()), seconds, length)
            for name, stats in streams.items():
                self.streams.add(name, stats.messages, seconds, length)
            names = {s.name for s in subscriptions}
            for subscription in subscriptions:
                self.rows_in.add(subscription.name, subscription.stats.rows_in, seconds, length)
                self.rows_out.add(subscription.name, subscription.stats.rows_out, seconds, length)
            self.rows_in.keep_only(names)
            self.rows_out.keep_only(names)
            self.cpu.append(cpu if seconds else 0.0)
            self.rss.append(rss)

    def overview(self) -> dict[str, Any]:
        with self._lock:
            return {"t": list(self.times), "in": list(self.totals.rates["in"]), "out": list(self.totals.rates["out"]),
                    "cpu": list(self.cpu), "rss": [round(r / 2**20, 1) for r in self.rss]}

    def stream(self, name: str) -> dict[str, Any]:
        with self._lock:
            return {"t": list(self.times), "messages": list(self.streams.rates.get(name, []))}

    def subscription(self, name: str) -> dict[str, Any]:
        with self._lock:
            return {"t": list(self.times), "rows_in": list(self.rows_in.rates.get(name, [])),
                    "rows_out": list(self.rows_out.rates.get(name, []))}

    def latest(self) -> tuple[float | None, float | None]:
        """CPU percent and RSS bytes of the last sample."""
        with self._lock:
            return (self.cpu[-1] if self.cpu else None), (self.rss[-1] if self.rss else None)
