"""The most recent rows of one stream or subscription, bounded in rows and bytes.

Tables are kept as they arrived (no copy per row); the oldest are dropped, or sliced, as new ones come.
Bytes are counted as the buffers held (`get_total_buffer_size`: O(columns), where `nbytes` walks the
data, 40x slower; a slice keeps its whole buffers alive, so that is also what it costs). A table of more
than `max_rows` keeps a copy of its last rows: a slice of a 200 MB result held all of it after the round.
"""

from __future__ import annotations

from collections import deque

import pyarrow as pa


class RecentRows:
    def __init__(self, max_rows: int, max_bytes: int | None = None) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._chunks: deque[pa.Table] = deque()
        self.rows = 0
        self.bytes = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0 or self.max_rows == 0:
            return
        if table.num_rows > self.max_rows:  # copied: a slice would keep a large result's buffers alive
            table = table.slice(table.num_rows - self.max_rows)
            table = table.take(pa.array(range(table.num_rows)))  # (take concatenates the chunks it is given)
        self._chunks.append(table)
        self.rows += table.num_rows
        self.bytes += table.get_total_buffer_size()
        self._trim()

    def table(self, schema: pa.Schema | None = None) -> pa.Table:
        """Oldest first; `schema` for the empty table (and None: the first chunk's)."""
        if not self._chunks:
            return (schema or pa.schema([])).empty_table()
        return pa.concat_tables(list(self._chunks), promote_options="permissive")

    def _trim(self) -> None:
        while self.rows > self.max_rows:
            oldest = self._chunks[0]
            excess = self.rows - self.max_rows
            if excess >= oldest.num_rows:
                self._drop_oldest()
            else:
                kept = oldest.slice(excess)
                self._chunks[0] = kept
                self.rows -= excess
                self.bytes += kept.get_total_buffer_size() - oldest.get_total_buffer_size()
        while self.max_bytes is not None and self.bytes > self.max_bytes and len(self._chunks) > 1:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        oldest = self._chunks.popleft()
        self.rows -= oldest.num_rows
        self.bytes -= oldest.get_total_buffer_size()
