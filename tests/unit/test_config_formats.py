"""Format options in the config: strict per format, influx columns, arrow output rules."""

from __future__ import annotations

import pyarrow as pa
import pytest

from arros_mqtt.config import parse_config
from arros_mqtt.core.errors import ConfigError


def stream(**spec) -> dict:
    return {"streams": {"t": {"topic": "a/{dev}", **spec}}}


def test_format_options_are_parsed():
    config = parse_config({"streams": {
        "c": {"topic": "c", "format": "csv", "header": True},
        "i": {"topic": "i", "format": "influx", "measurement": "cpu", "precision": "ms",
              "schema": {"host": "string", "usage": "float64"}},
        "a": {"topic": "a", "format": "arrow"},
    }})
    assert config.streams["c"].header and config.streams["c"].infers_schema
    influx = config.streams["i"]
    assert influx.measurement == "cpu" and not influx.infers_schema
    assert influx.schema == pa.schema([("_measurement", pa.string()), ("_time", pa.timestamp("ms", tz="UTC")),
                                       ("host", pa.string()), ("usage", pa.float64())])
    assert parse_config(stream(format="influx", schema={"v": "int64"}, event_time="_time")).streams["t"].event_time


@pytest.mark.parametrize(("spec", "key", "words"), [
    ({"format": "json", "header": True}, "streams.t.header", 'applies to format = "csv" streams only (this one is '
     'format = "json")'),
    ({"format": "influx", "header": True}, "streams.t.header", 'applies to format = "csv"'),
    ({"format": "csv", "header": True, "measurement": "cpu"}, "streams.t.measurement", 'applies to format = "influx"'),
    ({"format": "msgpack", "precision": "ms"}, "streams.t.precision", 'applies to format = "influx"'),
    ({"format": "arrow", "host_id": "x"}, "streams.t.host_id", 'applies to format = "sparkplug"'),
    ({"format": "csv", "header": True, "reorder_timeout": "1s"}, "streams.t.reorder_timeout", "sparkplug"),
    ({"format": "influx", "precision": "minutes"}, "streams.t.precision", "must be one of ns, us, ms, s"),
    ({"format": "influx", "measurement": ""}, "streams.t.measurement", "is empty"),
    ({"format": "csv", "header": "yes"}, "streams.t.header", "expected a boolean"),
    ({"format": "csv"}, "streams.t.schema", "is required for csv without header"),
    ({"format": "csv", "schema": {"p": "struct<x: float64>"}}, "streams.t.schema.p", "values are scalars"),
    ({"format": "influx", "schema": {"v": "list<int64>"}}, "streams.t.schema.v", "values are scalars"),
    ({"format": "influx", "schema": {"_time": "timestamp[ns]"}}, "streams.t.schema._time", "adds itself"),
    ({"format": "influx", "schema": {"_measurement": "string"}}, "streams.t.schema._measurement", "adds itself"),
    ({"format": "json", "event_time": "ts"}, "streams.t.event_time", "needs a declared schema"),
])
def test_stream_option_errors_name_the_key(spec, key, words):
    with pytest.raises(ConfigError) as info:
        parse_config(stream(**spec))
    assert info.value.key == key and words in str(info.value)


@pytest.mark.parametrize(("spec", "key", "words"), [
    ({"format": "arrow"}, "subscriptions.s.format", "needs batch = true"),
    ({"format": "arrow", "batch": True, "timestamps": "epoch_ms"}, "subscriptions.s.timestamps",
     'does not apply to format = "arrow"'),
])
def test_arrow_output_rules(spec, key, words):
    with pytest.raises(ConfigError) as info:
        parse_config({"subscriptions": {"s": {"sql": "SELECT 1", "output": "x", **spec}}})
    assert info.value.key == key and words in str(info.value)


def test_arrow_output_with_batch_is_accepted():
    sub = parse_config({"subscriptions": {"s": {"sql": "SELECT 1", "output": "x", "format": "arrow",
                                                "batch": True}}}).subscriptions["s"]
    assert sub.format == "arrow" and sub.batch
