"""The uploaded archive as tables: `s3://`, `gs://` or `az://bucket/prefix` read through `pyarrow.fs` (docs/cli.md).

The same names as the local archive (`streams.NAME`, `subscriptions.NAME`, plain `NAME` when unique),
each a pyarrow dataset over the complete `.parquet` objects (an `.uploading` one is not yet complete),
with `date` and `hour` from the Hive partition folders. The objects are listed once, when the context
is made; the schema is the first file's.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
from datafusion import SessionContext
from datafusion.catalog import Schema
from pyarrow import fs

from arros_mqtt.config import ArchiveConfig
from arros_mqtt.core.errors import UserError
from arros_mqtt.egress.archive_layout import FILE_SUFFIX, KINDS, PARTITION_COLUMNS
from arros_mqtt.egress.object_store import open_store
from arros_mqtt.query.archive import new_context


def remote_archive_context(url: str, archive: ArchiveConfig) -> tuple[SessionContext, list[str]]:
    """A context with every table of the uploaded archive at `url`; the table names it has."""
    try:
        filesystem, target = open_store(url, archive)
    except UserError as exc:
        raise UserError(f"--archive: {exc}") from None
    base = target.root
    try:
        files = [info.path for info in filesystem.get_file_info(fs.FileSelector(base, recursive=True,
                                                                                allow_not_found=True))
                 if info.type == fs.FileType.File and info.path.endswith(FILE_SUFFIX)]
    except OSError as exc:
        raise UserError(f"cannot list {url}: {str(exc).splitlines()[0]}") from None
    found: dict[str, dict[str, list[str]]] = {kind: {} for kind in KINDS}
    for path in files:
        parts = path[len(base) + 1:].split("/")
        if len(parts) == 5 and parts[0] in found and parts[2].startswith("date=") and parts[3].startswith("hour="):
            found[parts[0]].setdefault(parts[1], []).append(path)
    ctx = new_context()
    plain = [name for kind in KINDS for name in found[kind]]
    names = []
    partitioning = ds.partitioning(pa.schema(list(PARTITION_COLUMNS)), flavor="hive")
    for kind in KINDS:
        ctx.catalog().register_schema(kind, Schema.memory_schema())
        for name, paths in sorted(found[kind].items()):
            dataset = ds.dataset(sorted(paths), filesystem=filesystem, format="parquet",
                                 partitioning=partitioning, partition_base_dir=f"{base}/{kind}/{name}")
            for table_name in [f"{kind}.{name}"] + ([name] if plain.count(name) == 1 else []):
                ctx.register_dataset(table_name, dataset)
                names.append(table_name)
    return ctx, names
