"""The Modbus TCP connector against a real pymodbus server on 127.0.0.1: register values written with
pymodbus's own encoder come back exactly (types, word order, scale/offset, coils), exception responses,
and PLC value -> SQL subscription -> derived topic."""

from __future__ import annotations

import orjson
from pymodbus.client import ModbusTcpClient

from arros_mqtt.connectors.modbus import ModbusConnector
from tests.plc_servers import Readings, modbus_server, wait_until
from tests.support import Collector, running_service, unique
from tests.unit.test_modbus_connector import DT, EXPECTED, REGISTERS, VALUES, encode


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
