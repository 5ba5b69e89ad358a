"""The engine: DataFusion over micro-batches. Knows nothing about MQTT or sinks.

Each micro-batch of a stream is registered as that stream's table and every subscription reading
the stream runs over it. Lookup tables stay registered. Planning per batch costs ~0.1 ms here and a
DataFrame is bound to the data it was planned over, so plans are not cached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from datafusion import SessionConfig, SessionContext

from arros_mqtt.config import StreamConfig, SubscriptionConfig, TableConfig
from arros_mqtt.engine.readonly_sql import PER_ROW, analyze
from arros_mqtt.engine.subscription import Subscription
from arros_mqtt.errors import ConfigError, SqlError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    subscription: Subscription
    table: pa.Table


class Engine:
    def __init__(self, streams: dict[str, StreamConfig], tables: dict[str, TableConfig] | None = None) -> None:
        self.streams = dict(streams)
        self.tables = dict(tables or {})
        self.subscriptions: dict[str, Subscription] = {}
        self._ctx = SessionContext(SessionConfig().with_target_partitions(1).with_information_schema(False))
        for name, stream in self.streams.items():
            self._register(name, stream.full_schema().empty_table())
        for table in self.tables.values():
            self._register(table.name, load_table(table))

    def add(self, config: SubscriptionConfig) -> Subscription:
        """Plan and check a subscription; SqlError if it is not one we can run."""
        if config.name in self.subscriptions:
            raise SqlError(f"a subscription named {config.name!r} exists", code="exists")
        shape = analyze(self._ctx, config.sql, set(self.streams), set(self.tables))
        if shape.kind != PER_ROW:
            raise SqlError("aggregates and GROUP BY (windowed and running subscriptions) are not supported yet; "
                           "per-row SELECT ... WHERE ... subscriptions are")
        for template in (config.output, config.late_output):
            missing = [c for c in (template.columns if template else []) if c not in shape.output_schema.names]
            if missing:
                raise SqlError(f"output topic {template.text!r} uses {{{missing[0]}}}, which the query does not "
                               f"return (it returns: {', '.join(shape.output_schema.names)})")
        subscription = Subscription(config, shape)
        self.subscriptions[config.name] = subscription
        return subscription

    def process(self, stream: str, batch: pa.Table) -> list[Result]:
        """Run every subscription of `stream` over one micro-batch; a failing one never stops the others."""
        readers = [s for s in self.subscriptions.values() if s.shape.stream == stream]
        if not readers or batch.num_rows == 0:
            return []
        self._register(stream, batch)
        results = []
        for subscription in readers:
            stats = subscription.stats
            stats.batches += 1
            stats.rows_in += batch.num_rows
            try:
                table = subscription.run(self._ctx)
            except Exception as exc:  # a runtime SQL error (cast, overflow) in one batch
                stats.errors += 1
                stats.last_error = str(exc).splitlines()[0][:300]
                log.warning("subscription %s failed on a batch of %s: %s", subscription.name, stream, stats.last_error)
                continue
            stats.rows_out += table.num_rows
            if table.num_rows:
                results.append(Result(subscription, table))
        self._register(stream, self.streams[stream].full_schema().empty_table())  # release the batch
        return results

    def tick(self, now: float) -> list[Result]:
        """Time-driven results (windows closed by an idle timeout); none for per-row subscriptions."""
        return []

    def _register(self, name: str, table: pa.Table) -> None:
        if self._ctx.table_exist(name):
            self._ctx.deregister_table(name)
        batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
        self._ctx.register_record_batches(name, [batches])


def load_table(table: TableConfig) -> pa.Table:
    """A lookup table file as Arrow; ConfigError naming the table when it cannot be read."""
    try:
        if table.path.endswith(".parquet"):
            return pq.read_table(table.path)
        return pa_csv.read_csv(table.path)
    except FileNotFoundError:
        raise ConfigError("tables", f"tables.{table.name}.path", f"file {table.path!r} not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError("tables", f"tables.{table.name}.path", f"cannot read {table.path!r}: {exc}") from None
