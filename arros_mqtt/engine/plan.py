"""A compiled subscription: what compiling it decided, fixed for its life (compiler.py builds it).

The plan holds no rows: its operator (`start`) does. Replacing a subscription compiles a new plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from arros_mqtt.engine.equality_skip import Route
from arros_mqtt.engine.incremental import PARTIAL, IncrementalQuery
from arros_mqtt.engine.kernels import AggregateKernel, SelectKernel
from arros_mqtt.engine.operators import Operator
from arros_mqtt.engine.operators.running import RunningAggregate
from arros_mqtt.engine.operators.select import SelectOperator
from arros_mqtt.engine.operators.window import WindowAggregate
from arros_mqtt.engine.readonly_sql import QueryShape
from arros_mqtt.engine.shared_partial import SharedPartial
from arros_mqtt.engine.window_functions import WindowSpec


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    """The incremental form of a running or windowed subscription."""

    query: IncrementalQuery
    window: WindowSpec | None  # None: a running aggregate
    event_column: str
    state_schema: pa.Schema
    shared: SharedPartial | None  # routed windows whose partial (and final) query others can share
    tables: tuple[str, ...]  # the DataFusion tables registered for it, released with the subscription


@dataclass(frozen=True, slots=True)
class SubscriptionPlan:
    shape: QueryShape
    route: Route | None  # (column, value) every output row needs: batches without it are skipped
    kernel: SelectKernel | AggregateKernel  # per-row: a SelectKernel; aggregates: an AggregateKernel
    aggregate: AggregateSpec | None = None  # running and windowed subscriptions

    @property
    def shared(self) -> SharedPartial | None:
        return self.aggregate.shared if self.aggregate is not None else None

    @property
    def tables(self) -> tuple[str, ...]:
        return self.aggregate.tables if self.aggregate is not None else ()

    def start(self) -> Operator:
        """A new operator for this plan, with empty state."""
        spec = self.aggregate
        if spec is None:
            return SelectOperator(self.kernel)
        if spec.window is None:
            return RunningAggregate(spec.query, self.kernel, spec.state_schema)
        return WindowAggregate(spec.query, self.kernel, spec.state_schema, spec.window, spec.event_column)

    def describe(self) -> str:
        """The kind as `arros check` prints it, e.g. "windowed (tumble 10s, partial aggregates)"."""
        spec = self.aggregate
        if spec is None:
            return self.shape.kind
        detail = [spec.window.describe()] if spec.window else []
        detail.append("partial aggregates" if spec.query.mode == PARTIAL else "raw rows until the window closes")
        return f"{self.shape.kind} ({', '.join(detail)})"

    def steps(self) -> dict[str, str]:
        """The SQL an aggregate really runs, for `arros explain`: per batch, to compact state, at close;
        and what runs on pyarrow kernels instead."""
        spec = self.aggregate
        if spec is None:
            return {}
        steps = {"partial_sql": spec.query.partial}
        merge = spec.query.merge("state")
        if merge is not None:
            steps["merge_sql"] = merge
        steps["final_sql"] = spec.query.final("state")
        kernels = self.kernel.describe()
        if kernels is not None:
            steps["kernels"] = kernels
        return steps
