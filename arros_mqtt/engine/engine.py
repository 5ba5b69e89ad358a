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
from arros_mqtt.engine.readonly_sql import PER_ROW, analyze, plan
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
        self.paused: dict[str, str] = {}  # name -> reason; paused subscriptions skip micro-batches
        self._ctx = SessionContext(SessionConfig().with_target_partitions(1).with_information_schema(False))
        for name, stream in self.streams.items():
            self._register(name, stream.full_schema().empty_table())
        for table in self.tables.values():
            self._register(table.name, load_table(table))

    def add(self, config: SubscriptionConfig) -> Subscription:
        """Plan and check a subscription, then run it from the next micro-batch on."""
        return self.install(self.build(config))

    def build(self, config: SubscriptionConfig) -> Subscription:
        """Plan and check a subscription without running it; SqlError if it is not one we can run."""
        shape = analyze(self._ctx, config.sql, set(self.streams), set(self.tables))
        if shape.kind != PER_ROW:
            raise SqlError("aggregates and GROUP BY (windowed and running subscriptions) are not supported yet; "
                           "per-row SELECT ... WHERE ... subscriptions are")
        for template in (config.output, config.late_output):
            missing = [c for c in (template.columns if template else []) if c not in shape.output_schema.names]
            if missing:
                raise SqlError(f"output topic {template.text!r} uses {{{missing[0]}}}, which the query does not "
                               f"return (it returns: {', '.join(shape.output_schema.names)})")
        return Subscription(config, shape)

    def install(self, subscription: Subscription, replace: bool = False) -> Subscription:
        """Run a built subscription; with `replace` it takes the place (and releases the state) of the
        one with its name in one step, so no micro-batch sees neither or both."""
        name = subscription.name
        if name in self.subscriptions and not replace:
            raise SqlError(f"a subscription named {name!r} exists", code="exists")
        if name not in self.subscriptions and replace:
            raise KeyError(name)
        self.subscriptions[name] = subscription
        self.paused.pop(name, None)
        return subscription

    def remove(self, name: str) -> Subscription:
        """Stop running `name` and release its state; KeyError if there is none."""
        self.paused.pop(name, None)
        return self.subscriptions.pop(name)

    def pause(self, name: str, reason: str) -> None:
        """Skip micro-batches for `name` until `resume`; its state is kept. KeyError if there is none."""
        if name not in self.subscriptions:
            raise KeyError(name)
        self.paused[name] = reason

    def resume(self, name: str) -> None:
        if name not in self.subscriptions:
            raise KeyError(name)
        self.paused.pop(name, None)

    def explain(self, subscription: Subscription) -> dict[str, str]:
        """DataFusion's logical and physical plans for one micro-batch of the subscription's stream."""
        df = plan(self._ctx, subscription.config.sql)
        return {"logical_plan": df.optimized_logical_plan().display_indent(),
                "physical_plan": df.execution_plan().display_indent()}

    def process(self, stream: str, batch: pa.Table) -> list[Result]:
        """Run every subscription of `stream` over one micro-batch; a failing one never stops the others."""
        readers = [s for s in self.subscriptions.values() if s.shape.stream == stream and s.name not in self.paused]
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
