"""Timestamps nested in a struct (a window {start, end}) render like top-level ones, nulls included."""

from __future__ import annotations

import msgpack
import orjson
import pyarrow as pa

from arros_mqtt.config import SubscriptionConfig
from arros_mqtt.egress.encode import encode_results, json_ready
from arros_mqtt.topics import OutputTemplate

TS = pa.timestamp("ms", tz="UTC")


def windows() -> pa.Table:
    window = pa.StructArray.from_arrays(
        [pa.array([1_764_000_000_000, None], pa.int64()).cast(TS),
         pa.array([1_764_000_010_500, 5], pa.int64()).cast(TS)],
        names=["start", "end"], mask=pa.array([False, True]))
    return pa.table({"window": pa.chunked_array([window, window.slice(0, 1)]), "n": [1, 2, 3]})


def test_json_and_msgpack_render_window_bounds():
    config = SubscriptionConfig(name="s", sql="-", output=OutputTemplate.parse("out"))
    rows = [orjson.loads(p) for _, p in encode_results(windows(), config, config.output)]
    assert rows[0] == {"window": {"start": "2025-11-24T16:00:00.000Z", "end": "2025-11-24T16:00:10.500Z"}, "n": 1}
    assert rows[1] == {"window": None, "n": 2}
    packed = SubscriptionConfig(name="s", sql="-", output=config.output, format="msgpack", timestamps="epoch_ms")
    first = msgpack.unpackb(encode_results(windows(), packed, packed.output)[0][1])
    assert first == {"window": {"start": 1_764_000_000_000, "end": 1_764_000_010_500}, "n": 1}


def test_converted_struct_type_is_strings():
    strings = pa.struct([("start", pa.string()), ("end", pa.string())])
    assert json_ready(windows()).schema.field("window").type == strings
