"""Lookup tables: a CSV or Parquet file loaded as Arrow, reloaded when the file changes.

The engine checks each file's (mtime, size) on every tick and reloads once they have stayed the
same for one more tick, so a file still being written is not read half-way. The new table replaces
the old one between two micro-batches on the engine thread: a query sees the old table or the new
one, never a mix. A reload that fails (unreadable file, or a table the subscriptions' SQL no longer
plans against) keeps the old table, logs a warning and counts the error.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import pyarrow as pa

from arros_mqtt.config import TableConfig
from arros_mqtt.core.errors import ConfigError

log = logging.getLogger(__name__)


def load_table(table: TableConfig) -> pa.Table:
    """A lookup table file as Arrow; ConfigError naming the table when it cannot be read."""
    import pyarrow.csv as pa_csv  # here, not at the top: a config without tables never loads the readers (RSS)
    import pyarrow.parquet as pq

    try:
        if table.path.endswith(".parquet"):
            return pq.read_table(table.path)
        return pa_csv.read_csv(table.path)
    except FileNotFoundError:
        raise ConfigError("tables", f"tables.{table.name}.path", f"file {table.path!r} not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError("tables", f"tables.{table.name}.path", f"cannot read {table.path!r}: {exc}") from None


@dataclass
class LookupTable:
    config: TableConfig
    table: pa.Table
    version: tuple[float, int] | None = None  # (mtime, size) of the loaded file
    pending: tuple[float, int] | None = None  # a changed version seen on the previous tick
    reloads: int = 0
    reload_errors: int = 0
    last_error: str | None = None

    @classmethod
    def open(cls, config: TableConfig) -> LookupTable:
        version = _version(config.path)
        return cls(config, load_table(config), version=version)

    def changed_file(self) -> pa.Table | None:
        """The file's new contents once it changed and then stayed the same for a tick; None otherwise."""
        current = _version(self.config.path)
        if current is None or current == self.version:
            self.pending = None
            return None
        if current != self.pending:
            self.pending = current
            return None
        self.pending = None
        self.version = current
        try:
            return load_table(self.config)
        except ConfigError as exc:
            self.failed(exc.message)
            return None

    def failed(self, reason: str) -> None:
        self.reload_errors += 1
        self.last_error = reason
        log.warning("lookup table %s: reload failed, keeping the previous contents: %s", self.config.name, reason)


def _version(path: str) -> tuple[float, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime, stat.st_size
