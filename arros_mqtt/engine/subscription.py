"""A running subscription (its definition, compiled plan, operator holding its state, counters) and the
results it gives."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from arros_mqtt.config import SubscriptionConfig
from arros_mqtt.engine.incremental import RAW
from arros_mqtt.engine.operators import Operator, Snapshot
from arros_mqtt.engine.plan import SubscriptionPlan
from arros_mqtt.engine.readonly_sql import QueryShape


@dataclass(slots=True)
class SubscriptionStats:
    batches: int = 0
    rows_in: int = 0
    rows_out: int = 0
    late_rows: int = 0  # rows behind the watermark for a window already emitted (or without event time)
    errors: int = 0
    last_error: str | None = None
    rows_failed: int = 0  # input rows (or aggregate groups) a run-time error was isolated to: dead-lettered
    state_rows: int = 0  # rows held in the aggregate state (partials or, for raw aggregates, input rows)
    state_bytes: int = 0
    messages_out: int = 0  # MQTT messages published (rows, or arrays with batch = true)
    messages_too_large: int = 0  # results over the broker's Maximum Packet Size: dead letters, not published
    last_emit: float | None = None  # epoch seconds of the last published result


@dataclass(slots=True)
class Subscription:
    config: SubscriptionConfig
    plan: SubscriptionPlan
    operator: Operator  # `plan.start()`: the state between micro-batches
    stats: SubscriptionStats = field(default_factory=SubscriptionStats)

    @classmethod
    def start(cls, config: SubscriptionConfig, plan: SubscriptionPlan) -> Subscription:
        """A new subscription for a compiled plan, its state empty."""
        return cls(config, plan, plan.start())

    @property
    def name(self) -> str:
        return self.config.name

    def describe(self) -> str:
        """The kind as `arros check` prints it, e.g. "windowed (tumble 10s, partial aggregates)"."""
        return self.plan.describe()

    @property
    def shape(self) -> QueryShape:
        """What planning its SQL found: kind, stream, tables read, result columns."""
        return self.plan.shape

    @property
    def kernel(self) -> str:
        """The kernel its steps run on: "datafusion" or "pyarrow"."""
        return self.plan.kernel.name

    @property
    def keeps_state(self) -> bool:
        """Whether it keeps rows between micro-batches (aggregates), which checkpoints save."""
        return self.plan.aggregate is not None

    @property
    def holds_raw_rows(self) -> bool:
        """Its state is the input rows of each open window: its aggregates cannot be merged incrementally."""
        return self.plan.aggregate is not None and self.plan.aggregate.query.mode == RAW

    def snapshot(self) -> Snapshot | None:
        """Its state and counters for a checkpoint; None when it keeps none."""
        return self.operator.snapshot()

    def heaviest_groups(self, count: int = 3) -> list[tuple[dict[str, object], int]]:
        """The GROUP BY keys (besides the window) holding the most state rows, with their row counts, so a
        state limit can say which device filled the state. Empty without keys or state."""
        spec = self.plan.aggregate
        snapshot = self.operator.snapshot()
        if spec is None or snapshot is None or not spec.query.key_exprs or not snapshot[0].num_rows:
            return []
        keys = [f"__k{i}" for i in range(len(spec.query.key_exprs))]
        counts = snapshot[0].group_by(keys, use_threads=False).aggregate([([], "count_all")])
        heaviest = counts.sort_by([("count_all", "descending")]).slice(0, count).to_pylist()
        names = {f"__k{i}": span.text for i, span in enumerate(spec.query.key_exprs)}
        return [({names[k]: row[k] for k in keys}, row["count_all"]) for row in heaviest]

    def restore(self, table: pa.Table, counters: dict[str, int | None]) -> None:
        """Its state from a checkpoint; ValueError if the table is not a state of this query."""
        self.operator.restore(table, counters)


@dataclass(frozen=True)
class Result:
    subscription: Subscription
    table: pa.Table
    late: bool = False  # True: stream rows that arrived behind the watermark, for the `late_output` topic
    error: str | None = None  # set: rows the subscription failed on (stream rows, or the keys of aggregate
    # groups whose result could not be computed), for the dead-letter topic, never the output
