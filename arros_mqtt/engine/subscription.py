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
