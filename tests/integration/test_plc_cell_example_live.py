"""examples/plc_cell: the config checks, and its three ways in (Modbus connector, Sparkplug B edge node,
Neuron JSON) each reach a derived topic on a real Mosquitto (the README's pivot query:
tests/unit/test_plc_cell_example.py)."""

from __future__ import annotations

import orjson
from pymodbus.client import ModbusTcpClient

from tests.plc_servers import modbus_server
from tests.support import ROOT, Collector, arros_command, publish_all, running_service, unique
from tests.unit.test_plc_cell_example import sparkplug

EXAMPLE = ROOT / "examples" / "plc_cell" / "arros.toml"


def test_example_checks():
    done = arros_command("check", "-c", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "connector press1: modbus://127.0.0.1:5020 unit 1: temp [°C]" in done.stdout


def test_the_cell_end_to_end(mosquitto, tmp_path):
    encode, types = ModbusTcpClient.convert_to_registers, ModbusTcpClient.DATATYPE
    holding = encode(900, types.INT16) + [0] * 19 + [100, 101, 102, 103]
    server = modbus_server(tmp_path, {"holding": holding, "input": [0] * 10 + encode(2.5, types.FLOAT32), "coil": [1]})
    node, neuron_node = unique("edge"), unique("plc")
    text = EXAMPLE.read_text().replace("port = 5020", f"port = {server.port}")
    try:
        with running_service(text, tmp_path, mosquitto.url):
            press = Collector(mosquitto.port, ["cell/alerts/press1/overheat"])
            slow = Collector(mosquitto.port, [f"cell/alerts/{node}/#"])
            neuron = Collector(mosquitto.port, [f"cell/neuron/{neuron_node}"])
            publish_all(mosquitto.port, [
                (f"spBv1.0/line1/NBIRTH/{node}", sparkplug(0, {"name": "bdSeq", "datatype": 8, "long_value": 0})),
                (f"spBv1.0/line1/DBIRTH/{node}/conveyor", sparkplug(1, {"name": "Speed", "alias": 4, "datatype": 10,
                                                                        "double_value": 42.0})),
                (f"spBv1.0/line1/DDATA/{node}/conveyor", sparkplug(2, {"alias": 4, "double_value": 3.5})),
                (f"neuron/{neuron_node}/fast", orjson.dumps({"node": neuron_node, "group": "fast",
                                                             "timestamp": 1_764_000_000_000,
                                                             "values": {"speed": 12.5, "count": 7}, "errors": {}})),
                (f"neuron/{neuron_node}/fast", orjson.dumps({"node": neuron_node, "group": "fast",
                                                             "timestamp": 1_764_000_000_100, "values": {"count": 8},
                                                             "errors": {"speed": 3}})),
            ])
            got_press = orjson.loads(press.wait_for(1)[0][1])
            got_slow = [(t, orjson.loads(p)) for t, p in slow.wait_for(1)]
            got_neuron = [orjson.loads(p) for _, p in neuron.wait_for(1)]
            for collector in (press, slow, neuron):
                collector.close()
    finally:
        server.stop()
    assert {k: got_press[k] for k in ("press", "temp", "pressure")} == {"press": "press1", "temp": 900 * 0.1,
                                                                       "pressure": 2.5}
    assert got_slow == [(f"cell/alerts/{node}/conveyor/slow", {"edge_node_id": node, "device_id": "conveyor",
                                                               "timestamp": "2025-11-24T16:00:00.000Z", "speed": 3.5})]
    assert got_neuron == [{"node_name": neuron_node, "timestamp": "2025-11-24T16:00:00.000Z", "speed": 12.5,
                           "count": 7}]
