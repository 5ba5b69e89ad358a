"""The server's statement state: prepared statements, planned queries waiting for their DoGet, and the
flags that cancel a streaming query. All bounded; everything is thread-safe (gRPC threads share it)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

import orjson

MAX_PREPARED = 10_000  # past this the oldest prepared statements are forgotten (clients re-prepare)
# Planned queries whose DoGet has not come yet. A plan holds its live snapshots, so few and briefly: past
# these the oldest are dropped, and their DoGet plans again from the SQL in the ticket.
MAX_PLANNED = 100
PLANNED_SECONDS = 30.0


def ticket_handle(sql: str) -> tuple[str, bytes]:
    """A new query id and the ticket handle that carries it with the SQL (so any DoGet can re-plan it)."""
    query_id = uuid.uuid4().hex
    return query_id, orjson.dumps({"id": query_id, "sql": sql})


def read_handle(handle: bytes) -> tuple[str, str]:
    """(query id, SQL) of a ticket handle; ValueError if it is not one of ours."""
    try:
        data = orjson.loads(handle)
        return str(data["id"]), str(data["sql"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ValueError("not a ticket of this server") from None


class Statements:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prepared: OrderedDict[bytes, str] = OrderedDict()
        self._planned: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._running: dict[str, threading.Event] = {}
        self._cancelled: OrderedDict[str, None] = OrderedDict()  # cancelled before their DoGet came

    def prepare(self, sql: str) -> bytes:
        handle = uuid.uuid4().hex.encode()
        with self._lock:
            self._prepared[handle] = sql
            while len(self._prepared) > MAX_PREPARED:
                self._prepared.popitem(last=False)
        return handle

    def prepared_sql(self, handle: bytes) -> str:
        with self._lock:
            sql = self._prepared.get(handle)
        if sql is None:
            raise KeyError("unknown or closed prepared statement")
        return sql

    def close(self, handle: bytes) -> None:
        with self._lock:
            self._prepared.pop(handle, None)

    def keep_planned(self, query_id: str, frame: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self._planned[query_id] = (now, frame)
            while len(self._planned) > MAX_PLANNED or next(iter(self._planned.values()))[0] < now - PLANNED_SECONDS:
                self._planned.popitem(last=False)

    def take_planned(self, query_id: str) -> Any | None:
        with self._lock:
            kept = self._planned.pop(query_id, None)
        return kept[1] if kept is not None else None

    def start(self, query_id: str) -> threading.Event:
        """The flag that cancels this query's stream (set by `cancel` or `cancel_all`)."""
        flag = threading.Event()
        with self._lock:
            self._running[query_id] = flag
            if query_id in self._cancelled:  # cancelled between GetFlightInfo and DoGet
                del self._cancelled[query_id]
                flag.set()
        return flag

    def finish(self, query_id: str) -> None:
        with self._lock:
            self._running.pop(query_id, None)

    def cancel(self, query_id: str) -> bool:
        """Cancel a streaming (or planned, not yet streaming) query; False if it is not known."""
        with self._lock:
            flag = self._running.get(query_id)
            planned = self._planned.pop(query_id, None)
            if flag is None and planned is not None:
                self._cancelled[query_id] = None
                while len(self._cancelled) > MAX_PLANNED:
                    self._cancelled.popitem(last=False)
        if flag is not None:
            flag.set()
        return flag is not None or planned is not None

    def cancel_all(self) -> None:
        with self._lock:
            flags = list(self._running.values())
            self._planned.clear()
        for flag in flags:
            flag.set()

    @property
    def streaming(self) -> int:
        """How many query results are being streamed now."""
        with self._lock:
            return len(self._running)
