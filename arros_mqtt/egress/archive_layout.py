"""Where archive files live, so the writer, retention and `arros query` agree on one layout.

    {dir}/streams/{stream}/date=YYYY-MM-DD/hour=HH/part-*.parquet         decoded stream rows
    {dir}/subscriptions/{name}/date=YYYY-MM-DD/hour=HH/part-*.parquet     subscription results

Partitions are Hive-style (`key=value` folders), one per UTC hour of event time. A file being
written is named `.part-*.parquet.tmp`: no `*.parquet` glob matches it, and DuckDB, pyarrow,
Spark and DataFusion skip names that start with a dot anyway.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pyarrow as pa

STREAMS = "streams"
SUBSCRIPTIONS = "subscriptions"
KINDS = (STREAMS, SUBSCRIPTIONS)
PARTITION_COLUMNS = (("date", pa.date32()), ("hour", pa.int32()))
FILE_SUFFIX = ".parquet"
TEMP_GLOB = ".part-*.parquet.tmp"
_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})$")


def partition_path(hour: int) -> str:
    """`date=YYYY-MM-DD/hour=HH` for an hour counted from the Unix epoch (UTC)."""
    start = dt.datetime.fromtimestamp(hour * 3600, tz=dt.UTC)
    return f"date={start:%Y-%m-%d}/hour={start:%H}"


def partition_hour(date_dir: str, hour_dir: str) -> int | None:
    """The epoch hour of a partition folder, None for a folder that is not one of ours."""
    match = _PARTITION.match(f"{date_dir}/{hour_dir}")
    if not match:
        return None
    try:
        day = dt.datetime.strptime(match.group(1), "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    hour = int(match.group(2))
    return int(day.timestamp()) // 3600 + hour if hour < 24 else None


def temp_name(final_name: str) -> str:
    """The name a file has while it is written: hidden and not ending in `.parquet`."""
    return f".{final_name}.tmp"


def archive_folders(root: Path) -> dict[str, dict[str, Path]]:
    """`{kind: {name: folder}}` for every stream and subscription folder under `root`."""
    found: dict[str, dict[str, Path]] = {}
    for kind in KINDS:
        base = root / kind
        found[kind] = {p.name: p for p in sorted(base.iterdir()) if p.is_dir()} if base.is_dir() else {}
    return found


def partition_folders(folder: Path) -> list[tuple[int, Path]]:
    """`(epoch hour, path)` of every hour partition of one stream's or subscription's folder."""
    found = []
    for date_dir in folder.glob("date=*"):
        for hour_dir in date_dir.glob("hour=*"):
            hour = partition_hour(date_dir.name, hour_dir.name)
            if hour is not None and hour_dir.is_dir():
                found.append((hour, hour_dir))
    return sorted(found)


def has_files(folder: Path) -> bool:
    """True when at least one complete file exists under `folder` (stops at the first)."""
    return next(folder.glob(f"date=*/hour=*/*{FILE_SUFFIX}"), None) is not None
