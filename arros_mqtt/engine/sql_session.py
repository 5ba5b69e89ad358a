"""The DataFusion session every query of one engine is planned and run in, and the tables it holds.

A micro-batch becomes the stream's table only when a DataFusion step reads it (`bind`): when every
subscription of a stream runs on pyarrow kernels, the batch is never registered. Binding the table
already bound is free, so each DataFusion step binds the rows it reads and no caller has to know
whether an earlier one did.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
from datafusion import DataFrame, RuntimeEnvBuilder, SessionConfig, SessionContext

from arros_mqtt.engine.readonly_sql import plan
from arros_mqtt.engine.run_bounds import RunBounds, bounded_settings, register_bounded_functions
from arros_mqtt.engine.window_functions import register_window_functions


class SqlSession:
    def __init__(self, bounds: RunBounds | None = None) -> None:
        self.bounds = bounds or RunBounds()
        config = SessionConfig().with_target_partitions(1).with_information_schema(False)
        for key, value in bounded_settings():
            config = config.set(key, value)
        runtime = RuntimeEnvBuilder()
        if self.bounds.memory:
            runtime = runtime.with_greedy_memory_pool(self.bounds.memory)
        self.ctx = SessionContext(config, runtime)
        register_window_functions(self.ctx)
        register_bounded_functions(self.ctx)
        # every aggregate function DataFusion knows, by name (so the rewrite can find aggregate calls): the
        # names information_schema.routines lists, without building that table (~30 MB RSS for good)
        self.aggregate_names = {name.lower() for name in self.ctx.udafs()}
        self._bound: dict[str, pa.Table] = {}

    def plan(self, sql: str) -> DataFrame:
        """`sql` planned read-only; SqlError with DataFusion's reason otherwise."""
        return plan(self.ctx, sql)

    def collect(self, sql: str, schema: pa.Schema) -> pa.Table:
        """`sql`'s result in `schema` (its columns in that order, cast to its types)."""
        return self.run(sql).select(schema.names).cast(schema)

    def run(self, sql: str) -> pa.Table:
        """`sql`'s result, within the session's `RunBounds` (OverBound past them)."""
        return self.bounds.collect(self.plan(sql))

    def register(self, name: str, table: pa.Table) -> None:
        if self.ctx.table_exist(name):
            self.ctx.deregister_table(name)
        batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
        self.ctx.register_record_batches(name, [batches])
        self._bound.pop(name, None)

    def bind(self, name: str, table: pa.Table) -> None:
        """`register`, unless this very table is what `name` holds already (by an earlier `bind`)."""
        if self._bound.get(name) is not table:
            self.register(name, table)
            self._bound[name] = table

    @contextmanager
    def holding(self, name: str, table: pa.Table, schema: pa.Schema) -> Iterator[None]:
        """`table` registered as `name` for the queries of the block, then an empty table of `schema`
        (so the session does not keep a state's rows alive)."""
        self.register(name, table)
        try:
            yield
        finally:
            self.register(name, schema.empty_table())

    def drop(self, name: str) -> None:
        if self.ctx.table_exist(name):
            self.ctx.deregister_table(name)
        self._bound.pop(name, None)
