"""The running-aggregate operator (GROUP BY without a window): after each micro-batch, the current result
of every group the batch changed (update mode).

Its state is merged on every batch (one row per group), so it stays as large as the number of groups.
Which groups a batch changed is a join of the state with the batch's partial rows, which only the
DataFusion kernel does: running aggregates always run on it.
"""

from __future__ import annotations

import pyarrow as pa

from arros_mqtt.engine.incremental import IncrementalQuery
from arros_mqtt.engine.kernels.datafusion import DataFusionAggregate
from arros_mqtt.engine.operators.state import AggregateState


class RunningAggregate(AggregateState):
    kernel: DataFusionAggregate

    def __init__(self, query: IncrementalQuery, kernel: DataFusionAggregate, schema: pa.Schema) -> None:
        super().__init__(query, kernel, schema)

    def process(self, batch: pa.Table) -> pa.Table:
        """The batch folded in; the result rows of the groups it touched."""
        partial = self.ingest(batch)
        return self.kernel.final(self.kernel.touched(self.table, partial))
