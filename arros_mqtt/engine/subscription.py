"""A running per-row subscription: its definition, its plan's shape, its counters."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from datafusion import SessionContext

from arros_mqtt.config import SubscriptionConfig
from arros_mqtt.engine.readonly_sql import QueryShape, plan


@dataclass
class SubscriptionStats:
    batches: int = 0
    rows_in: int = 0
    rows_out: int = 0
    errors: int = 0
    last_error: str | None = None
    late_rows: int = 0  # rows behind the watermark (windowed subscriptions)
    state_rows: int = 0  # rows/groups held between micro-batches (0 for per-row)
    state_bytes: int = 0
    messages_out: int = 0  # MQTT messages published (rows, or arrays with batch = true)
    last_emit: float | None = None  # epoch seconds of the last published result


@dataclass
class Subscription:
    config: SubscriptionConfig
    shape: QueryShape
    stats: SubscriptionStats = field(default_factory=SubscriptionStats)

    @property
    def name(self) -> str:
        return self.config.name

    def run(self, ctx: SessionContext) -> pa.Table:
        """The query over the micro-batch currently registered as the stream's table."""
        df = plan(ctx, self.config.sql)
        batches = df.collect()
        return pa.Table.from_batches(batches, schema=self.shape.output_schema)
