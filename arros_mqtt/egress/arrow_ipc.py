"""Results as Arrow IPC: one IPC stream per micro-batch and output topic (`format = "arrow"`).

Arrow-native consumers read a message with `pyarrow.ipc.open_stream(payload).read_all()` and get the
result columns with their types (timestamps stay timestamps), with no decode step. Rows are grouped by
their output topic with one stable sort, so each topic's rows keep their order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

Message = tuple[str, bytes]


def arrow_messages(table: pa.Table, topics: list[str] | str) -> list[Message]:
    """One IPC stream per distinct topic (`topics`: one per row, or the same for all)."""
    if isinstance(topics, str):
        return [(topics, ipc_stream(table))]
    encoded = pa.array(topics, pa.string()).dictionary_encode()
    codes = encoded.indices.to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(encoded.dictionary) + 1))
    grouped = table.take(pa.array(order))
    return [(topic, ipc_stream(grouped.slice(bounds[i], bounds[i + 1] - bounds[i])))
            for i, topic in enumerate(encoded.dictionary.to_pylist())]


def ipc_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
