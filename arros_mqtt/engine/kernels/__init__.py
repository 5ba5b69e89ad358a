"""Kernels: what computes a subscription's steps over Arrow tables, DataFusion or pyarrow.

Both do the same thing with the same state columns and types, so state, checkpoints, `arros explain`
and shared partials do not care which one runs. Which one a subscription uses is decided once, when
it is compiled (compiler.py); nothing per micro-batch asks again.

- `SelectKernel`: a per-row query over one micro-batch.
- `AggregateKernel`: the incremental steps of an aggregate (incremental.py): `partial` turns stream
  rows into state rows, `merge` combines state rows of the same window unit and keys, `final` turns
  state rows (closed windows, changed groups) into the query's result rows.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

DATAFUSION = "datafusion"
PYARROW = "pyarrow"
KERNELS = (DATAFUSION, PYARROW)


class SelectKernel(Protocol):
    name: str

    def select(self, rows: pa.Table) -> pa.Table: ...


class AggregateKernel(Protocol):
    name: str

    def partial(self, rows: pa.Table) -> pa.Table: ...

    def merge(self, state: pa.Table) -> pa.Table: ...

    def final(self, state: pa.Table) -> pa.Table: ...

    def describe(self) -> str | None:
        """What runs where, for `arros explain` when it is not DataFusion's SQL alone (then None)."""
        ...
