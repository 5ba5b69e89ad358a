"""Operators: one per kind of subscription, each the state it keeps between micro-batches.

- `SelectOperator` (per-row): keeps nothing; each batch's rows through its select kernel.
- `RunningAggregate`: partial aggregates per group, merged every batch; emits the groups a batch changed.
- `WindowAggregate`: partial aggregates (or raw rows) per window unit and group; emits a window once the
  watermark passes its end.

Each has `rows` and `bytes` of state and `snapshot`/`restore` for checkpoints. They call their kernel
(kernels/) for every computation and never choose one: the compile step did.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

Snapshot = tuple[pa.Table, dict[str, int | None]]  # the state table and the counters that go with it


class Operator(Protocol):
    @property
    def rows(self) -> int: ...

    @property
    def bytes(self) -> int: ...

    def snapshot(self) -> Snapshot | None:
        """What a checkpoint keeps of it; None when it keeps nothing between micro-batches."""
        ...

    def restore(self, table: pa.Table, counters: dict[str, int | None]) -> None:
        """ValueError if `table` is not a state of this operator (the query changed)."""
        ...
