"""The archives as tables: every archive folder with at least one complete file.

`streams.NAME` and `subscriptions.NAME`, and plain `NAME` when no stream and subscription share it.
Each is a listing table over the Hive-partitioned folder, so `date` (DATE) and `hour` (INT) are columns
too, and a WHERE on them skips the other partitions' files unread (`EXPLAIN` shows which files are
scanned). Files with different schemas are read by column name; a column missing from a file reads as null.
Listing tables list their folder at each scan, so a context sees files written after it was made.
"""

from __future__ import annotations

from pathlib import Path

from datafusion import SessionConfig, SessionContext
from datafusion.catalog import Schema

from arros_mqtt.core.errors import UserError
from arros_mqtt.egress.archive_layout import KINDS, PARTITION_COLUMNS, archive_folders, has_files


def new_context(batch_rows: int | None = None) -> SessionContext:
    """A context with the information schema (the catalogue of Flight SQL clients) and Parquet strings
    read as plain strings, the type every client and writer takes; `batch_rows`: DataFusion's batch size."""
    config = (SessionConfig().with_information_schema(True)
              .set("datafusion.execution.parquet.schema_force_view_types", "false"))
    return SessionContext(config.with_batch_size(batch_rows) if batch_rows else config)


def archive_context(root: Path) -> tuple[SessionContext, list[str]]:
    """A context with every archive under `root` registered; the table names it has."""
    if not root.is_dir():
        raise UserError(f"archive folder {str(root)!r} does not exist (set [archive] dir with -c, or --dir)")
    ctx = new_context()
    return ctx, register_archives(ctx, root)


def register_archives(ctx: SessionContext, root: Path) -> list[str]:
    """Register the archives under `root` (none when it does not exist yet); the table names."""
    folders = archive_folders(root) if root.is_dir() else {kind: {} for kind in KINDS}
    found = {kind: {name: path for name, path in folders[kind].items() if has_files(path)} for kind in KINDS}
    plain = [name for kind in KINDS for name in found[kind]]
    names = []
    for kind in KINDS:
        ctx.catalog().register_schema(kind, Schema.memory_schema())
        for name, path in found[kind].items():
            qualified = f"{kind}.{name}"
            _register(ctx, qualified, path)
            names.append(qualified)
            if plain.count(name) == 1:
                _register(ctx, name, path)
                names.append(name)
    return names


def _register(ctx: SessionContext, name: str, folder: Path) -> None:
    """A listing table with `date`/`hour` partition columns, or without when the data has such columns."""
    ctx.register_listing_table(name, str(folder), table_partition_cols=list(PARTITION_COLUMNS),
                               file_extension=".parquet")
    try:
        ctx.sql(f"SELECT * FROM {name} LIMIT 0").collect()
    except Exception:  # a data column named `date` or `hour`: that column wins, without pruning
        ctx.deregister_table(name)
        ctx.register_listing_table(name, str(folder), file_extension=".parquet")
