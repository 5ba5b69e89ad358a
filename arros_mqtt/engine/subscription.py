"""A running subscription: its definition, its plan's shape, its counters, and for aggregates its state."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from datafusion import SessionContext

from arros_mqtt.config import SubscriptionConfig
from arros_mqtt.engine.aggregate_state import AggregateState
from arros_mqtt.engine.arrow_select import ArrowSelect
from arros_mqtt.engine.incremental import PARTIAL
from arros_mqtt.engine.readonly_sql import QueryShape, plan
from arros_mqtt.engine.routing import Route
from arros_mqtt.engine.shared_partial import SharedPartial


@dataclass
class SubscriptionStats:
    batches: int = 0
    rows_in: int = 0
    rows_out: int = 0
    late_rows: int = 0  # rows behind the watermark for a window already emitted (or without event time)
    errors: int = 0
    last_error: str | None = None
    state_rows: int = 0  # rows held in the aggregate state (partials or, for raw aggregates, input rows)
    state_bytes: int = 0
    messages_out: int = 0  # MQTT messages published (rows, or arrays with batch = true)
    last_emit: float | None = None  # epoch seconds of the last published result


@dataclass
class Subscription:
    config: SubscriptionConfig
    shape: QueryShape
    stats: SubscriptionStats = field(default_factory=SubscriptionStats)
    aggregate: AggregateState | None = None  # windowed and running subscriptions
    route: Route | None = None  # (column, value) every output row needs: batches without it are skipped
    arrow: ArrowSelect | None = None  # per-row queries simple enough for pyarrow alone
    shared: SharedPartial | None = None  # routed windows whose partial query others can share

    @property
    def name(self) -> str:
        return self.config.name

    def describe(self) -> str:
        """The kind as `arros check` prints it, e.g. "windowed (tumble 10s, partial aggregates)"."""
        state = self.aggregate
        if state is None:
            return self.shape.kind
        detail = [state.window.describe()] if state.window else []
        detail.append("partial aggregates" if state.query.mode == PARTIAL else "raw rows until the window closes")
        return f"{self.shape.kind} ({', '.join(detail)})"

    def run(self, ctx: SessionContext, batch: pa.Table) -> pa.Table:
        """A per-row query over the micro-batch (also registered as the stream's table)."""
        if self.arrow is not None:
            return self.arrow.run(batch)
        df = plan(ctx, self.config.sql)
        batches = df.collect()
        return pa.Table.from_batches(batches, schema=self.shape.output_schema)
