"""Timestamps nested in a struct (a window {start, end}) render like top-level ones, nulls included."""

from __future__ import annotations

import datetime as dt
import random

import msgpack
import orjson
import pyarrow as pa

from arros_mqtt.config import SubscriptionConfig
from arros_mqtt.core.topics import OutputTemplate
from arros_mqtt.egress.encode import encode_results, json_ready

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


def test_repeated_timestamps_render_like_python_formats_each():
    """Window bounds repeat in every row of a closing (each distinct value is formatted once): the strings
    are still each row's own, NULLs and other timezones included, as Python's datetime writes them."""
    rng = random.Random(7)
    bounds = [rng.randrange(-10**12, 4 * 10**12) for _ in range(5)]
    values = [rng.choice([*bounds, None]) for _ in range(300)]
    column = pa.array(values, pa.int64()).cast(pa.timestamp("ms", tz="Europe/Paris"))
    table = pa.table({"ts": pa.chunked_array([column.slice(0, 120), column.slice(120)])})
    got = json_ready(table).column("ts").to_pylist()
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    expected = [None if v is None else (epoch + dt.timedelta(milliseconds=v)).strftime("%Y-%m-%dT%H:%M:%S")
                + f".{v % 1000:03d}Z" for v in values]
    assert got == expected
