"""What one subscription may cost per micro-batch: result rows and bytes, time, DataFusion memory, and the
size of the values one call may build, so a hostile query cannot take the process's memory or hold up
every other stream (issue 20).

- `RunBounds.collect` streams a DataFusion query's batches and stops past `max_result_rows`,
  `max_result_bytes` or `max_seconds`, before the whole result exists (a join fanning one row out to
  millions, an `unnest`). The engine pauses a subscription over a bound (`OverBound`) with the reason.
- `register_bounded_functions` replaces DataFusion's `repeat` and the scalar `range` / `generate_series`
  with versions that refuse to build more than `max_value_bytes` / `max_list_elements` per call and
  batch. DataFusion folds constant calls while planning, so `repeat('a', 300000000)` used to build its
  300 MB string inside `explain` or `create`; now planning fails with a clear error, and at run time the
  rows whose values would be too large are dead-lettered like any failing row.
- `lpad`, `rpad` and `array_repeat` stay DataFusion's: a literal size past the per-value bound is refused
  before planning (`check_literal_sizes`); sizes computed from columns count only against the result bounds.
- Recursive CTEs are off (`datafusion.execution.enable_recursive_ctes`): a continuous subscription has
  no use for one, and one over 10 million steps held every stream for 24 s per micro-batch.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datafusion import DataFrame, SessionContext, udf

from arros_mqtt.core.errors import ArrosError, SqlError
from arros_mqtt.engine.sql_text import Span, calls, tokenize

MAX_VALUE_BYTES = 64 * 1024 * 1024  # bytes one repeat() call may build per batch
MAX_VALUE_BYTES_EACH = 1024 * 1024  # ... in one value (DataFusion folds constants within it into the plan)
MAX_LIST_ELEMENTS = 10_000_000  # elements one range()/generate_series() call may build per batch
MAX_LIST_ELEMENTS_EACH = 1_000_000  # ... in one list
_PY_ERR = re.compile(r"PyErr \{ type: <class '\w+'>, value: \w+\(['\"](.*?)['\"]\)")


class OverBound(ArrosError):
    """A subscription's micro-batch went past a `RunBounds` limit: the reason it is paused."""


@dataclass(frozen=True)
class RunBounds:
    max_result_rows: int = 250_000  # result rows of one subscription per micro-batch; 0 = no limit
    max_result_bytes: int = 256 * 1024 * 1024  # Arrow bytes of those rows; 0 = no limit
    max_seconds: float = 10.0  # time one subscription may take over one micro-batch; 0 = no limit
    memory: int = 1024 * 1024 * 1024  # DataFusion's memory pool (joins, sorts, aggregates); 0 = no limit

    def check(self, rows: int, size: int, started: float) -> None:
        """OverBound if a result of `rows` rows and `size` bytes, begun at `started`, is over a bound."""
        if self.max_result_rows and rows > self.max_result_rows:
            raise OverBound(f"result limit: more than {self.max_result_rows:,} result rows from one micro-batch "
                            "([engine] max_result_rows)")
        if self.max_result_bytes and size > self.max_result_bytes:
            raise OverBound(f"result limit: more than {self.max_result_bytes:,} bytes of results from one "
                            "micro-batch ([engine] max_result_bytes)")
        elapsed = time.monotonic() - started
        if self.max_seconds and elapsed > self.max_seconds:
            raise OverBound(f"time limit: one micro-batch took more than {self.max_seconds:g} s "
                            f"({elapsed:.1f} s; [engine] max_batch_seconds)")

    def collect(self, df: DataFrame) -> pa.Table:
        """`df`'s result, pulled batch by batch; OverBound as soon as it passes a bound."""
        started = time.monotonic()
        batches: list[pa.RecordBatch] = []
        rows = size = 0
        for batch in df.execute_stream():
            record = batch.to_pyarrow()
            batches.append(record)
            rows += record.num_rows
            size += record.get_total_buffer_size()
            self.check(rows, size, started)
        if batches:  # their schema, not the plan's: DataFusion's nullability of the two may differ
            return pa.Table.from_batches(batches)
        schema = df.schema()
        return (schema if isinstance(schema, pa.Schema) else pa.schema(schema)).empty_table()


def python_error(message: str) -> str:
    """The message of a Python UDF's error inside DataFusion's wrapping (`PyErr { ... ValueError('...') }`)."""
    found = _PY_ERR.search(message)
    return found.group(1) if found else message


def register_bounded_functions(ctx: SessionContext) -> None:
    ctx.register_udf(udf(_repeat, [pa.string(), pa.int64()], pa.string(), "immutable", name="repeat"))
    for name, inclusive in (("range", False), ("generate_series", True)):
        ctx.register_udf(udf(_series(name, inclusive), [pa.int64(), pa.int64()], pa.list_(pa.int64()),
                             "immutable", name=name))


def _repeat(strings: pa.Array, counts: pa.Array) -> pa.Array:
    counts = pc.max_element_wise(counts, 0)
    sizes = pc.multiply(pc.binary_length(strings).cast(pa.float64()), counts.cast(pa.float64()))
    largest = pc.max(sizes).as_py() or 0
    if largest > MAX_VALUE_BYTES_EACH:
        raise ValueError(f"repeat() would build a value of {largest:,.0f} bytes; the limit is {MAX_VALUE_BYTES_EACH:,}")
    total = pc.sum(sizes).as_py() or 0
    if total > MAX_VALUE_BYTES:
        raise ValueError(f"repeat() would build {total:,.0f} bytes in one batch; the limit is {MAX_VALUE_BYTES:,}")
    return pc.binary_repeat(strings, counts)


def _series(name: str, inclusive: bool) -> Callable[[pa.Array, pa.Array], pa.Array]:
    def series(starts: pa.Array, stops: pa.Array) -> pa.Array:
        valid = pc.and_(pc.is_valid(starts), pc.is_valid(stops))
        start = pc.fill_null(starts, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        stop = pc.fill_null(stops, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        # in floats: hostile int64 bounds must not wrap around
        spans = np.maximum(stop.astype(np.float64) - start.astype(np.float64) + int(inclusive), 0)
        spans = np.where(valid.to_numpy(zero_copy_only=False), spans, 0)
        largest = int(spans.max(initial=0))
        if largest > MAX_LIST_ELEMENTS_EACH:
            raise ValueError(f"{name}() would build a list of {largest:,} elements; the limit is "
                             f"{MAX_LIST_ELEMENTS_EACH:,}")
        total = int(spans.sum())
        if total > MAX_LIST_ELEMENTS:
            raise ValueError(f"{name}() would build {total:,} list elements in one batch; the limit is "
                             f"{MAX_LIST_ELEMENTS:,}")
        lengths = spans.astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        values = np.arange(total, dtype=np.int64) - np.repeat(offsets[:-1], lengths) + np.repeat(start, lengths)
        mask = pc.invert(valid)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int64()), mask=mask)
    return series


UNBOUNDED_SIZERS = {"lpad", "rpad", "array_repeat"}  # DataFusion's own, folded while planning


def check_literal_sizes(sql: str) -> None:
    """SqlError for `lpad`/`rpad`/`array_repeat` given a literal size past `MAX_VALUE_BYTES_EACH`:
    DataFusion would build that value while planning (these are not replaced by bounded versions)."""
    try:
        tokens = tuple(tokenize(sql))
    except ValueError:
        return  # DataFusion gives the syntax error
    for first, last, name in calls(Span(tokens, sql), UNBOUNDED_SIZERS):
        for token in tokens[first:last]:
            if token.kind == "num" and float(token.text) > MAX_VALUE_BYTES_EACH:
                raise SqlError(f"{name}() with a size of {token.text} would build a value past the limit of "
                               f"{MAX_VALUE_BYTES_EACH:,} (bytes or elements)")


def bounded_settings() -> Iterable[tuple[str, str]]:
    """The SessionConfig settings every engine session runs with."""
    return (("datafusion.execution.enable_recursive_ctes", "false"),)
