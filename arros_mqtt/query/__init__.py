"""`arros query SQL`: read-only DataFusion SQL over the Parquet archives (the Flight SQL endpoint,
`arros_mqtt/flight/`, serves the same tables).

Queries are planned with the same read-only options as subscriptions: no DDL, DML (`COPY`), `SET`, or
reading arbitrary files (`archive.py` says which tables there are).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from arros_mqtt.config import ArchiveConfig
from arros_mqtt.core.errors import UserError
from arros_mqtt.query.archive import archive_context, new_context, register_archives
from arros_mqtt.query.read_only import message, plain_schema, plain_types, plan_read_only

__all__ = ["archive_context", "message", "new_context", "plain_schema", "plain_types", "plan_read_only",
           "register_archives", "run_query"]  # the writers (Parquet, CSV) are in query.output: loaded only to write


def run_query(root: Path, sql: str, remote: tuple[str, ArchiveConfig] | None = None) -> pa.Table:
    """The result of `sql` over the archives under `root`, or with `remote` (url, [archive]) over the
    uploaded archive at an s3://, gs:// or az:// url; UserError with a one-line reason."""
    if remote is not None:
        from arros_mqtt.query.remote_archive import remote_archive_context

        ctx, names = remote_archive_context(*remote)
    else:
        ctx, names = archive_context(root)
    df = plan_read_only(ctx, sql, names)
    try:
        table = df.to_arrow_table()
    except Exception as exc:  # execution errors (a cast that fails on a value) come as text too
        raise UserError(message(str(exc), names)) from None
    return plain_types(table)
