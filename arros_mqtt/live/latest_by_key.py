"""The latest result row per group key of an aggregate subscription: what a dashboard of a running
count or of the last closed window per machine wants, however many times each key was emitted.

Results are appended as they come (a reference, no work on the engine thread's hot path) and reduced
to one row per key when read, or once enough have piled up.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

_ORDER = "__arros_order"
_MAX_PENDING = 64  # tables appended before they are reduced anyway


class LatestByKey:
    def __init__(self, keys: list[str], max_rows: int) -> None:
        self.keys = keys
        self.max_rows = max_rows
        self._tables: list[pa.Table] = []

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0 or self.max_rows == 0:
            return
        self._tables.append(table)
        if len(self._tables) > _MAX_PENDING:
            self._reduce()

    def table(self, schema: pa.Schema | None = None) -> pa.Table:
        if not self._tables:
            return (schema or pa.schema([])).empty_table()
        self._reduce()
        return self._tables[0]

    def _reduce(self) -> None:
        both = pa.concat_tables(self._tables, promote_options="permissive")
        latest = last_per_key(both, self.keys)
        if latest.num_rows > self.max_rows:  # more keys than kept: the most recently updated ones stay
            latest = latest.slice(latest.num_rows - self.max_rows)
        self._tables = [latest]


def last_per_key(table: pa.Table, keys: list[str]) -> pa.Table:
    """One row per key, its last occurrence; rows in the order of those last occurrences."""
    numbered = table.append_column(_ORDER, pa.array(range(table.num_rows), pa.int64()))
    last = numbered.group_by(keys, use_threads=False).aggregate([(_ORDER, "max")])[f"{_ORDER}_max"]
    return table.take(last.take(pc.sort_indices(last)))
