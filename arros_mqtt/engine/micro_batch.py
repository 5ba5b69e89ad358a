"""One micro-batch of a stream and the work its subscriptions share: computed once, the first time one
of them needs it."""

from __future__ import annotations

import pyarrow as pa

from arros_mqtt.engine.operators.window import WindowAggregate
from arros_mqtt.engine.plan import SubscriptionPlan
from arros_mqtt.engine.shared_partial import split_by_route
from arros_mqtt.engine.sql_session import SqlSession


class MicroBatch:
    def __init__(self, batch: pa.Table, watermark: int | None) -> None:
        self.batch = batch
        self.watermark = watermark  # the stream's, before this batch
        self._splits: dict[tuple, tuple[pa.Table, pa.Table]] = {}
        self._shared: dict[str, dict[object, pa.Table]] = {}

    def split(self, window: WindowAggregate) -> tuple[pa.Table, pa.Table]:
        """(on-time rows, late rows) for the operator's window, once per window shape: the watermark is
        the stream's, so subscriptions with equal windows split alike."""
        key = (window.window, window.event_column)
        if key not in self._splits:
            self._splits[key] = window.split_late(self.batch, self.watermark)
        return self._splits[key]

    def shared_partial(self, plan: SubscriptionPlan, rows: pa.Table, session: SqlSession) -> pa.Table | None:
        """The subscription's slice of the partial query it shares with others (shared_partial.py), which
        runs over `rows` once for all of them; None when no row has its value."""
        shared, spec = plan.shared, plan.aggregate
        parts = self._shared.get(shared.key)
        if parts is None:
            session.bind(plan.shape.stream, rows)
            parts = split_by_route(session.plan(shared.sql).to_arrow_table(), spec.state_schema)
            self._shared[shared.key] = parts
        return parts.get(plan.route[1])
