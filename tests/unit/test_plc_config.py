"""Config for PLC gateways: sparkplug streams and `[connectors.NAME]` tables are parsed strictly; the
`arros check` listing and `arros connector NAME` (a connector alone on a gateway box)."""

from __future__ import annotations

import pytest

from arros_mqtt.config import SPARKPLUG_SCHEMA, parse_config
from arros_mqtt.core.errors import ConfigError

PRESS = {"schema": {"temp": "float64", "running": "bool"}}
MODBUS = {"kind": "modbus", "host": "127.0.0.1", "stream": "press",
          "registers": [{"name": "temp", "address": 0, "type": "int16", "scale": 0.1},
                        {"name": "running", "table": "coil", "address": 0}]}


def error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "a.toml")
    return str(info.value)


def test_sparkplug_stream_has_the_fixed_columns_and_defaults():
    config = parse_config({"streams": {"plc": {"topic": "spBv1.0/#", "format": "sparkplug"}}})
    stream = config.streams["plc"]
    assert stream.schema == SPARKPLUG_SCHEMA and stream.host_id is None and stream.reorder_timeout == 2.0
    assert stream.full_schema().names[-2:] == ["_topic", "_received_at"]


@pytest.mark.parametrize(("stream", "message"), [
    ({"topic": "spBv1.0/#", "format": "sparkplug", "schema": {"a": "int64"}}, "streams.plc.schema: a sparkplug"),
    ({"format": "sparkplug"}, "streams.plc.topic: is required"),
    ({"topic": "factory/#", "format": "sparkplug"}, "streams.plc.topic: 'factory/#' is not a Sparkplug B"),
    ({"topic": "spBv1.0/#", "format": "sparkplug", "host_id": "a/b"}, "streams.plc.host_id: invalid host id"),
    ({"topic": "spBv1.0/{metric}/#", "format": "sparkplug"}, "streams.plc.topic: capture {metric} has the same"),
    ({"topic": "spBv1.0/#", "format": "sparkplug", "reorder_timeout": "soon"}, "streams.plc.reorder_timeout"),
    ({"topic": "t", "schema": {"a": "int64"}, "host_id": "x"}, "streams.plc.host_id: applies to format"),
])
def test_sparkplug_stream_errors(stream, message):
    assert message in error({"streams": {"plc": stream}})


def test_one_host_id_per_service():
    streams = {"a": {"topic": "spBv1.0/g1/#", "format": "sparkplug", "host_id": "h1"},
               "b": {"topic": "spBv1.0/g2/#", "format": "sparkplug", "host_id": "h2"}}
    assert "all sparkplug streams must use the same host_id" in error({"streams": streams})


def test_connector_is_parsed_with_its_kind_options():
    config = parse_config({"streams": {"press": PRESS}, "connectors": {"press1": {**MODBUS, "interval": "100ms"}}})
    connector = config.connectors["press1"]
    assert (connector.kind, connector.stream, connector.output, connector.interval) == ("modbus", "press", None, 0.1)
    assert [r.name for r in connector.options.registers] == ["temp", "running"]
    assert config.streams["press"].full_schema().names == ["temp", "running", "_connector", "_received_at"]


@pytest.mark.parametrize(("connector", "message"), [
    ({**MODBUS, "kind": "profinet"}, "connectors.c.kind: unknown connector kind 'profinet' (installed: modbus, opcua)"),
    ({k: v for k, v in MODBUS.items() if k != "kind"}, "connectors.c.kind: is required"),
    ({**MODBUS, "stream": "nope"}, "connectors.c.stream: unknown stream 'nope'"),
    ({**MODBUS, "stream": "telemetry"}, "connectors.c.stream: stream 'telemetry' has a topic"),
    ({k: v for k, v in MODBUS.items() if k != "stream"}, "connectors.c.stream: is required (or output"),
    ({**MODBUS, "registers": [{"name": "rpm", "address": 1}]}, "stream 'press' has no column 'rpm'"),
    ({**MODBUS, "registers": [{"name": "temp", "address": 1, "type": "int7"}]}, "connectors.c.registers[0].type"),
    ({**MODBUS, "port": 70000}, "connectors.c.port: must be between 1 and 65535"),
    ({**MODBUS, "hots": "x"}, "connectors.c.hots: unknown key"),
    ({**MODBUS, "interval": "0ms"}, "connectors.c.interval: must be more than 0"),
    ({**MODBUS, "output": "plc/#"}, "connectors.c.output: invalid topic"),
])
def test_connector_errors_name_the_key(connector, message):
    streams = {"press": PRESS, "telemetry": {"topic": "t", "schema": {"a": "int64"}}}
    assert message in error({"streams": streams, "connectors": {"c": connector}})
