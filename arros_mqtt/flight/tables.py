"""What a Flight SQL query can read: the archives (named as in `arros query`), `live.*` and `system.*`.

Each request gets a context of its own: the archives are listing tables (they list their folder at each
scan, so new files are seen), and the live views are snapshots registered as in-memory tables. A snapshot
is taken only of the live tables a query's text names, so a query of the archives copies nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.dataset as ds
from datafusion import SessionContext
from datafusion.catalog import Schema

from arros_mqtt.query import new_context, register_archives

LIVE, SYSTEM = "live", "system"


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


def catalogue(archive_dir: Path, live: LiveTables | None, sql: str | None = None) -> Catalogue:
    """A fresh context over the archives and the live views; with `sql`, only the live tables it names."""
    ctx = new_context()
    names = register_archives(ctx, archive_dir)
    for schema in (LIVE, SYSTEM):
        ctx.catalog().register_schema(schema, Schema.memory_schema())
    if live is not None:
        text = sql.lower() if sql is not None else None
        for qualified, snapshot in _live_tables(live).items():
            names.append(qualified)
            if text is None or qualified.split(".", 1)[1].lower() in text:
                try:
                    ctx.register_table(qualified, ds.dataset(snapshot()))
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


def _snapshot(read: Callable[[str], pa.Table], name: str) -> Callable[[], pa.Table]:
    return lambda: read(name)
