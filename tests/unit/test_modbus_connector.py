"""The Modbus connector's register map without a server: reads grouped into few requests, errors naming the
key. The register values and the map the live tests (and benchmarks/plc.py) use are defined here."""

from __future__ import annotations

import pytest
from pymodbus.client import ModbusTcpClient

from arros_mqtt.connectors.modbus import ModbusConnector, Register, plan_reads

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


def test_reads_are_grouped_into_few_requests():
    registers = tuple(Register(**{k: v for k, v in r.items()}) for r in REGISTERS)
    spans = [(s.table, s.address, s.count) for s in plan_reads(registers)]
    assert spans == [("holding", 0, 21), ("holding", 200, 3), ("input", 10, 4), ("coil", 0, 4), ("discrete", 5, 1)]


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
