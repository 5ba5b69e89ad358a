"""The archives page: every archived stream and subscription with its hour partitions, files and
sizes, and read-only SQL over them through the code of `arros query`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arros_mqtt.egress.archive_layout import FILE_SUFFIX, KINDS, archive_folders, partition_folders
from arros_mqtt.query import run_query
from arros_mqtt.web.data import chart_of, table_data

MAX_RESULT_ROWS = 1000


def archive_listing(root: Path) -> dict[str, Any]:
    """`{"archives": [...], "partitions": [...]}`: one row per folder, one per hour partition."""
    archives, partitions = [], []
    if not root.is_dir():
        return {"root": str(root), "archives": [], "partitions": [], "note": "no archive folder yet"}
    folders = archive_folders(root)
    for kind in KINDS:
        for name, folder in folders[kind].items():
            files = total = 0
            newest = "-"
            for _hour, path in partition_folders(folder):
                sizes = [p.stat().st_size for p in path.glob(f"*{FILE_SUFFIX}")]
                partition = f"{path.parent.name}/{path.name}"
                partitions.append({"table": f"{kind}.{name}", "partition": partition, "files": len(sizes),
                                   "bytes": sum(sizes)})
                files += len(sizes)
                total += sum(sizes)
                newest = partition
            archives.append({"table": f"{kind}.{name}", "kind": kind[:-1], "name": name,
                             "partitions": sum(1 for p in partitions if p["table"] == f"{kind}.{name}"),
                             "files": files, "bytes": total, "newest": newest})
    return {"root": str(root), "archives": archives, "partitions": partitions[-200:]}


def archive_query(root: Path, sql: str) -> dict[str, Any]:
    """The result as a table and a chart; UserError (from `arros query`) with a one-line reason."""
    table = run_query(root, sql)
    shown = table.slice(0, MAX_RESULT_ROWS)
    return {**table_data(shown), "chart": chart_of(shown), "total_rows": table.num_rows}
