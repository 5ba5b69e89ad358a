"""Reading archives back the ways the README tells users to: DuckDB and pyarrow.dataset."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def duckdb_read(folder: Path, query: str = "SELECT * FROM archive") -> pa.Table:
    """`query` over the folder as table `archive`, with the README's read_parquet options."""
    con = duckdb.connect()
    con.sql("SET TimeZone = 'UTC'")
    con.sql(f"CREATE VIEW archive AS SELECT * FROM read_parquet('{folder}/**/*.parquet', hive_partitioning = true, "
            "union_by_name = true, hive_types = {'date': DATE, 'hour': INTEGER})")
    return con.sql(query).to_arrow_table()


def dataset_read(folder: Path) -> pa.Table:
    """The README's pyarrow snippet: one schema unified by column name over every file."""
    files = ds.dataset(folder, format="parquet", partitioning="hive")
    schema = pa.unify_schemas([f.physical_schema for f in files.get_fragments()] + [files.partitioning.schema],
                              promote_options="permissive")
    return ds.dataset(folder, format="parquet", partitioning="hive", schema=schema).to_table()


def parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet"))


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".part-*.parquet.tmp"))


def file_rows(path: Path) -> int:
    return pq.read_metadata(path).num_rows
