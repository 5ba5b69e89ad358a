"""MessagePack payloads: one map or an array of maps per message.

Each payload is unpacked on its own (a C call; a truncated payload cannot desynchronise the rest of
the batch, as a shared Unpacker would), then the whole micro-batch becomes one table with
`Table.from_pylist` against the declared schema. msgpack Timestamp extensions arrive as datetimes.
"""

from __future__ import annotations

import msgpack
import pyarrow as pa

from arros_mqtt.decode.codec import Codec, conform_rows
from arros_mqtt.errors import DecodeError

_UNPACK = {"raw": False, "strict_map_key": False, "timestamp": 3}


class MsgpackCodec(Codec):
    def read_batch(self, payloads: list[bytes]) -> tuple[pa.Table, list[int] | None]:
        values = [msgpack.unpackb(payload, **_UNPACK) for payload in payloads]
        counts = None
        if any(type(value) is list for value in values):
            counts = [len(value) if type(value) is list else 1 for value in values]
            values = [row for value in values for row in (value if type(value) is list else (value,))]
        table = pa.Table.from_pylist(values, schema=self.schema)
        return table, counts

    def read_one(self, payload: bytes) -> pa.Table:
        try:
            value = msgpack.unpackb(payload, **_UNPACK)
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise DecodeError(f"invalid msgpack: {exc}") from None
        return conform_rows(value if isinstance(value, list) else [value], self.schema)
