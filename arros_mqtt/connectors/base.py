"""The connector contract and the loop every connector shares.

A connector runs in a thread of its own with its own asyncio loop (pymodbus and asyncua are asyncio
libraries). Its `session()` connects, then reads until stopped, handing each reading to `emit` as
`{column: value}`; when the connection fails it raises, and the loop reconnects with jittered
exponential backoff (0.5 s doubling to 30 s). Failures are logged (once per outage, and on recovery)
and counted in `stats`; they never stop Arros.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from arros_mqtt.connectors.options import Options

log = logging.getLogger("arros.connectors")
Emit = Callable[[dict[str, Any], int], None]  # (values by column, read time in epoch ms)
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0


@dataclass
class ConnectorStats:
    connected: bool = False
    connects: int = 0
    connection_failures: int = 0  # failed connects and lost connections
    reads: int = 0  # successful polls / data-change notifications turned into rows
    errors: int = 0  # reads that failed without losing the connection (e.g. Modbus exception responses)
    last_error: str | None = None


class Connector(ABC):
    """One PLC connection. Subclasses: `option_keys`, `read_options`, `columns`, `describe`, `session`."""

    kind: ClassVar[str]
    requires: ClassVar[str]  # the module it needs, e.g. "pymodbus" (an optional dependency)
    option_keys: ClassVar[tuple[str, ...]]  # the kind's own keys in `[connectors.NAME]`

    def __init__(self, name: str, options: Any, interval: float, emit: Emit) -> None:
        self.name = name
        self.options = options
        self.interval = interval
        self.stats = ConnectorStats()
        self._emit = emit
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._attempt = 0  # connection attempts since the last success: the backoff exponent

    @classmethod
    def parse_options(cls, options: dict[str, Any]) -> Any:
        """The kind's options from `[connectors.NAME]` (without the common keys); OptionError if wrong.

        Keys the kind does not know are refused here, the same way for every kind."""
        opts = Options(options)
        opts.only(*cls.option_keys)
        return cls.read_options(opts)

    @classmethod
    @abstractmethod
    def read_options(cls, opts: Options) -> Any:
        """The kind's options, read strictly from its known keys (`opts.error` for what is wrong)."""

    @classmethod
    @abstractmethod
    def columns(cls, options: Any) -> list[str]:
        """The columns a reading fills: each must be a column of the fed stream."""

    @classmethod
    @abstractmethod
    def describe(cls, options: Any) -> str:
        """One line for `arros check`: where it connects and what it reads."""

    @abstractmethod
    async def session(self) -> None:
        """Connect and read until `stopping` is set; raise when the connection fails or is lost."""

    @property
    def stopping(self) -> asyncio.Event:
        assert self._stopping is not None, "only inside session()"
        return self._stopping

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"arros-connector-{self.name}", daemon=True)
        self._thread.start()
        self._started.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the session to end, wait for its thread; the last reading was emitted before it returns."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("connector %s did not stop within %.0f s", self.name, timeout)

    def emit(self, values: dict[str, Any], read_ms: int | None = None) -> None:
        self.stats.reads += 1
        self._emit(values, read_ms if read_ms is not None else time.time_ns() // 1_000_000)

    def connected(self) -> None:
        """Subclasses call this once connected: resets the backoff and reports a recovery."""
        if self.stats.connection_failures and not self.stats.connected:
            log.info("connector %s: connected again (%s)", self.name, self.describe(self.options))
        self.stats.connected = True
        self.stats.connects += 1
        self._attempt = 0

    async def wait_stopping(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if stop was asked meanwhile."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return False
        return True

    def _run(self) -> None:
        asyncio.run(self._supervise())

    async def _supervise(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._started.set()
        while not self._stopping.is_set():
            try:
                await self.session()
            except Exception as exc:  # any failure of the PLC side: report, back off, reconnect
                was_connected = self.stats.connected
                self.stats.connected = False
                self.stats.connection_failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                delay = random.uniform(0.5, 1.0) * min(BACKOFF_MAX, BACKOFF_MIN * 2 ** self._attempt)
                self._attempt += 1
                if was_connected or self._attempt == 1:
                    log.warning("connector %s: %s; retrying (backoff up to %.0f s)", self.name,
                                self.stats.last_error, BACKOFF_MAX)
                if await self.wait_stopping(delay):
                    break
        self.stats.connected = False
