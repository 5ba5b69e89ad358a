"""What a Flight SQL query can read: the archives (named as in `arros query`), `live.*` and `system.*`.

Each request gets a context of its own. The archives are listing tables, registered once and shared by
every request's context (a listing table lists its folder at each scan, so new files are read); they are
registered again when an archive gains or loses its first file, or after REFRESH_SECONDS (so the columns of
newer files appear). Registering costs a footer read per file, ~1 ms per table here, which no query should
pay. The live views are snapshots registered as in-memory tables, taken only of the live tables a query's
text names, so a query of the archives copies nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
from datafusion import SessionContext
from datafusion.catalog import Schema

from arros_mqtt.egress.archive_layout import KINDS, archive_folders, has_files
from arros_mqtt.query import new_context, register_archives

LIVE, SYSTEM = "live", "system"
ARCHIVE_SCHEMAS = ("public", *KINDS)
BATCH_ROWS = 65_536  # per streamed batch: a 10M-row scan through ADBC took 0.61 s instead of 0.79 s at 8,192
REFRESH_SECONDS = 60.0  # re-registering reads every file's footer: not per query, not too often


class LiveTables(Protocol):
    """What Flight reads of the live views (`arros_mqtt.live.LiveViews`); each call returns a snapshot."""

    def stream_names(self) -> list[str]: ...
    def subscription_names(self) -> list[str]: ...
    def stream(self, name: str) -> pa.Table: ...
    def subscription(self, name: str) -> pa.Table: ...
    def system_streams(self) -> pa.Table: ...
    def system_subscriptions(self) -> pa.Table: ...
    def system_dead_letters(self) -> pa.Table: ...


@dataclass(frozen=True)
class Catalogue:
    """A request's context and the names of the tables it holds (for "unknown table" messages)."""

    ctx: SessionContext
    names: list[str]


class Archives:
    """The archive tables under one folder, registered once and shared (thread-safe)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._made = 0.0
        self._schemas: dict[str, Schema] = {}
        self._names: list[str] = []

    def current(self) -> tuple[dict[str, Schema], list[str]]:
        """The archive schemas (`public`, `streams`, `subscriptions`) and the table names, up to date."""
        key = self._folders_with_files()
        with self._lock:
            if key != self._key or time.monotonic() - self._made > REFRESH_SECONDS:
                ctx = new_context()
                self._names = register_archives(ctx, self.root)
                self._schemas = {name: ctx.catalog().schema(name) for name in ARCHIVE_SCHEMAS}
                self._key, self._made = key, time.monotonic()
            return self._schemas, list(self._names)

    def _folders_with_files(self) -> tuple:
        if not self.root.is_dir():
            return ()
        folders = archive_folders(self.root)
        return tuple((kind, name) for kind in KINDS for name, path in folders[kind].items() if has_files(path))


def catalogue(archives: Archives, live: LiveTables | None, sql: str | None = None) -> Catalogue:
    """A fresh context over the archives and the live views; with `sql`, only the live tables it names."""
    ctx = new_context(BATCH_ROWS)
    schemas, names = archives.current()
    for name, schema in schemas.items():
        ctx.catalog().register_schema(name, schema)
    for schema in (LIVE, SYSTEM):
        ctx.catalog().register_schema(schema, Schema.memory_schema())
    if live is not None:
        text = sql.lower() if sql is not None else None
        for qualified, snapshot in _live_tables(live).items():
            names.append(qualified)
            if text is None or qualified.split(".", 1)[1].lower() in text:
                try:
                    _register_snapshot(ctx, qualified, snapshot())
                except KeyError:  # removed since it was listed: the query finds no such table
                    names.remove(qualified)
    return Catalogue(ctx, names)


def _live_tables(live: LiveTables) -> dict[str, Callable[[], pa.Table]]:
    tables: dict[str, Callable[[], pa.Table]] = {
        f"{SYSTEM}.streams": live.system_streams,
        f"{SYSTEM}.subscriptions": live.system_subscriptions,
        f"{SYSTEM}.dead_letters": live.system_dead_letters,
    }
    for name in live.stream_names():
        tables[f"{LIVE}.{name}"] = _snapshot(live.stream, name)
    for name in live.subscription_names():
        tables.setdefault(f"{LIVE}.{name}", _snapshot(live.subscription, name))
    return tables


def _register_snapshot(ctx: SessionContext, name: str, table: pa.Table) -> None:
    """An in-memory table (record batches: no pyarrow.dataset, which would load Parquet and the cloud file
    systems into every service); an empty one keeps its schema."""
    ctx.register_record_batches(name, [table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]])


def _snapshot(read: Callable[[str], pa.Table], name: str) -> Callable[[], pa.Table]:
    return lambda: read(name)
