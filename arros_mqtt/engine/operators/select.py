"""The per-row operator: a micro-batch in, its result rows out, nothing kept."""

from __future__ import annotations

import pyarrow as pa

from arros_mqtt.engine.kernels import SelectKernel
from arros_mqtt.engine.operators import Snapshot


class SelectOperator:
    rows = 0
    bytes = 0

    def __init__(self, kernel: SelectKernel) -> None:
        self.kernel = kernel

    def process(self, batch: pa.Table) -> pa.Table:
        return self.kernel.select(batch)

    def snapshot(self) -> Snapshot | None:
        return None

    def restore(self, table: pa.Table, counters: dict[str, int | None]) -> None:
        raise ValueError("a per-row subscription keeps no state")
