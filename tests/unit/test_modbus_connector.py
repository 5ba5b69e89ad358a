"""The Modbus TCP connector against a real pymodbus server on 127.0.0.1: register values written with
pymodbus's own encoder come back exactly (types, word order, scale/offset, coils), the server going
away and coming back, exception responses, and PLC value -> SQL subscription -> derived topic."""

from __future__ import annotations

import orjson
import pytest
from pymodbus.client import ModbusTcpClient

from arros_mqtt.connectors.modbus import ModbusConnector, Register, plan_reads
from tests.plc_servers import Readings, modbus_server, wait_until
from tests.support import Collector, running_service, unique

DT = ModbusTcpClient.DATATYPE
encode = ModbusTcpClient.convert_to_registers


def holding_values() -> list[int]:
    words = [0] * 210
    words[0:1] = encode(-123, DT.INT16)
    words[1:3] = encode(4_000_000_000, DT.UINT32, "big")
    words[3:5] = encode(-2, DT.INT32, "little")
    words[5:7] = encode(3.5, DT.FLOAT32, "big")
    words[7:11] = encode(1e10 / 3, DT.FLOAT64, "little")
    words[20:21] = encode(65535, DT.UINT16)
    words[200:203] = encode([1, -1, 7], DT.INT16)
    return words


VALUES = {
    "holding": holding_values(),
    "input": [0] * 10 + encode(-0.15625, DT.FLOAT32, "big") + encode(123456789, DT.INT32, "big"),
    "coil": [1, 0, 1, 1],
    "discrete": [0, 0, 0, 0, 0, 1],
}
REGISTERS = [
    {"name": "temp", "table": "holding", "address": 0, "type": "int16", "scale": 0.1, "unit": "°C"},
    {"name": "energy", "table": "holding", "address": 1, "type": "uint32"},
    {"name": "delta", "table": "holding", "address": 3, "type": "int32", "word_order": "little"},
    {"name": "pressure", "table": "holding", "address": 5, "type": "float32", "offset": 1.0},
    {"name": "ratio", "table": "holding", "address": 7, "type": "float64", "word_order": "little"},
    {"name": "raw", "table": "holding", "address": 20, "type": "uint16", "scale": 2, "offset": -1},
    {"name": "zones", "table": "holding", "address": 200, "type": "int16", "count": 3},
    {"name": "flow", "table": "input", "address": 10, "type": "float32"},
    {"name": "total", "table": "input", "address": 12, "type": "int32"},
    {"name": "running", "table": "coil", "address": 0},
    {"name": "valves", "table": "coil", "address": 1, "count": 3},
    {"name": "door", "table": "discrete", "address": 5},
]
EXPECTED = {
    "temp": -123 * 0.1, "energy": 4_000_000_000, "delta": -2, "pressure": 3.5 + 1.0, "ratio": 1e10 / 3,
    "raw": 65535 * 2.0 - 1.0, "zones": [1, -1, 7], "flow": -0.15625, "total": 123456789, "running": True,
    "valves": [False, True, True], "door": True,
}



def connector(port: int, registers: list[dict], emit, interval: float = 0.05) -> ModbusConnector:
    options = ModbusConnector.parse_options({"host": "127.0.0.1", "port": port, "unit": 1, "timeout": 1.0,
                                             "registers": registers})
    return ModbusConnector("press1", options, interval, emit)


def test_register_map_values_come_back_exactly(tmp_path):
    server = modbus_server(tmp_path, VALUES)
    readings = Readings()
    plc = connector(server.port, REGISTERS, readings)
    plc.start()
    try:
        assert wait_until(lambda: readings.count() >= 2)
        assert readings.last() == EXPECTED
        assert plc.stats.connected and plc.stats.errors == 0
        writer = ModbusTcpClient("127.0.0.1", port=server.port)
        writer.connect()
        writer.write_registers(0, encode(456, DT.INT16), device_id=1)
        writer.write_coils(0, [False, False, False, True], device_id=1)
        writer.close()
        assert wait_until(lambda: readings.last()["temp"] == 456 * 0.1)
        assert readings.last()["running"] is False and readings.last()["valves"] == [False, False, True]
    finally:
        plc.stop()
        server.stop()


def test_reads_are_grouped_into_few_requests():
    registers = tuple(Register(**{k: v for k, v in r.items()}) for r in REGISTERS)
    spans = [(s.table, s.address, s.count) for s in plan_reads(registers)]
    assert spans == [("holding", 0, 21), ("holding", 200, 3), ("input", 10, 4), ("coil", 0, 4), ("discrete", 5, 1)]


def test_server_going_away_and_coming_back(tmp_path):
    server = modbus_server(tmp_path, VALUES)
    readings = Readings()
    plc = connector(server.port, REGISTERS[:1], readings)
    plc.start()
    try:
        assert wait_until(lambda: readings.count() >= 1)
        server.stop()
        assert wait_until(lambda: not plc.stats.connected and plc.stats.connection_failures >= 1)
        during = readings.count()
        server.start()
        assert wait_until(lambda: plc.stats.connected and readings.count() > during + 2, timeout=30), plc.stats
        assert readings.last() == {"temp": EXPECTED["temp"]}
        assert plc.stats.connects >= 2
    finally:
        plc.stop()
        server.stop()


def test_unreachable_at_start_is_retried_not_fatal(tmp_path):
    server = modbus_server(tmp_path, VALUES)
    server.stop()
    readings = Readings()
    plc = connector(server.port, REGISTERS[:1], readings)
    plc.start()
    try:
        assert wait_until(lambda: plc.stats.connection_failures >= 1)
        assert not plc.stats.connected and "cannot connect" in plc.stats.last_error
        server.start()
        assert wait_until(lambda: readings.count() >= 1, timeout=30)
    finally:
        plc.stop()
        server.stop()


def test_exception_response_is_counted_and_the_connection_kept(tmp_path):
    server = modbus_server(tmp_path, VALUES)
    readings = Readings()
    plc = connector(server.port, [{"name": "missing", "table": "holding", "address": 5000}], readings)
    plc.start()
    try:
        assert wait_until(lambda: plc.stats.errors >= 3)
        assert plc.stats.connected and plc.stats.connects == 1 and readings.count() == 0
        assert "holding 5000..5000" in plc.stats.last_error
    finally:
        plc.stop()
        server.stop()


@pytest.mark.parametrize(("register", "error"), [
    ({"name": "x", "table": "coil", "address": 0, "scale": 2}, "registers[0].scale: does not apply to coil"),
    ({"name": "x", "address": 0, "type": "int8"}, "registers[0].type: unknown value 'int8'"),
    ({"name": "x", "address": 65535, "type": "int32"}, "registers[0].address: the entry runs past address 65535"),
    ({"name": "x", "address": 0, "count": 100, "type": "float32"}, "registers[0].count: spans 200 registers"),
    ({"table": "holding", "address": 0}, "registers[0].name: is required"),
    ({"name": "x", "address": 0, "colour": "red"}, "registers[0].colour: unknown key"),
    ({"name": "x", "address": -1}, "registers[0].address: must be between 0 and 65535"),
])
def test_register_map_errors_name_the_key(register, error):
    from arros_mqtt.core.connector_kinds import OptionError

    with pytest.raises(OptionError) as info:
        ModbusConnector.parse_options({"host": "h", "registers": [register]})
    assert str(info.value).startswith(error)


def test_plc_value_to_sql_subscription_to_derived_topic(mosquitto, tmp_path):
    server = modbus_server(tmp_path, VALUES)
    prefix = unique()
    config = f"""
[control]
prefix = "{prefix}/arros"

[streams.press]
schema = {{ temp = "float64", pressure = "float64", running = "bool", zones = "list<int64>" }}

[connectors.press1]
kind = "modbus"
host = "127.0.0.1"
port = {server.port}
interval = "50ms"
stream = "press"
registers = [
  {{ name = "temp", table = "holding", address = 0, type = "int16", scale = 0.1 }},
  {{ name = "pressure", table = "holding", address = 5, type = "float32", offset = 1.0 }},
  {{ name = "running", table = "coil", address = 0 }},
  {{ name = "zones", table = "holding", address = 200, type = "int16", count = 3 }},
]

[subscriptions.press_out]
sql = "SELECT _connector, temp, pressure * 10 AS p10, zones FROM press WHERE running"
output = "{prefix}/press/{{_connector}}"
"""
    try:
        with running_service(config, tmp_path, mosquitto.url) as service:
            out = Collector(mosquitto.port, [f"{prefix}/press/#"])
            status = Collector(mosquitto.port, [f"{prefix}/arros/connectors/press1/status"])
            messages = out.wait_for(3)
            reported = orjson.loads(status.wait_for(1, timeout=15)[0][1])
            out.close()
            status.close()
            stats = service.connectors.connectors["press1"].stats
            assert stats.reads >= 3
        assert reported["kind"] == "modbus" and reported["connected"] and reported["connection_failures"] == 0
        assert len(messages) >= 3
        assert {t for t, _ in messages} == {f"{prefix}/press/press1"}
        assert orjson.loads(messages[0][1]) == {"_connector": "press1", "temp": -123 * 0.1, "p10": (3.5 + 1.0) * 10,
                                                "zones": [1, -1, 7]}
    finally:
        server.stop()
