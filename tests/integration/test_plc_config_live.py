"""The `arros check` listing of connectors and `arros connector NAME` (a connector alone on a gateway box), as
subprocesses, the latter against a pymodbus server and a real Mosquitto."""

from __future__ import annotations

import orjson

from tests.plc_servers import modbus_server
from tests.support import Collector, arros_command, start_arros, stop_process, unique


def test_check_lists_connectors(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text("""
[streams.press]
schema = { temp = "float64", running = "bool" }

[connectors.press1]
kind = "modbus"
host = "10.1.2.3"
stream = "press"
output = "plant/press1"
registers = [ { name = "temp", address = 0, type = "int16", scale = 0.1, unit = "degC" } ]
""")
    done = arros_command("check", "-c", str(path))
    assert done.returncode == 0, done.stderr
    assert "stream press: (connector) [json] (temp double, running bool, _connector string" in done.stdout
    assert ("connector press1: modbus://10.1.2.3:502 unit 1: temp [degC] -> stream press and topic plant/press1"
            in done.stdout)


def test_connector_command_publishes_readings_as_json(mosquitto, tmp_path):
    server = modbus_server(tmp_path, {"holding": [215], "coil": [1]})
    prefix = unique()
    path = tmp_path / "gateway.toml"
    path.write_text(f"""
[connectors.press1]
kind = "modbus"
host = "127.0.0.1"
port = {server.port}
interval = "100ms"
output = "{prefix}/plc/press1"
registers = [ {{ name = "temp", address = 0, type = "int16", scale = 0.1 }},
              {{ name = "running", table = "coil", address = 0 }} ]
""")
    out = Collector(mosquitto.port, [f"{prefix}/plc/#"])
    process = start_arros("connector", "press1", "-c", str(path), "--broker", mosquitto.url, log=tmp_path / "gw.log")
    try:
        messages = out.wait_for(2)
    finally:
        assert stop_process(process) == 0, (tmp_path / "gw.log").read_text()
        out.close()
        server.stop()
    reading = orjson.loads(messages[0][1])
    assert messages[0][0] == f"{prefix}/plc/press1"
    assert {k: reading[k] for k in ("temp", "running", "connector")} == {"temp": 215 * 0.1, "running": True,
                                                                        "connector": "press1"}
    assert reading["ts"].endswith("Z")


def test_connector_command_needs_an_output(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text("""
[streams.press]
schema = { temp = "float64" }

[connectors.press1]
kind = "modbus"
host = "127.0.0.1"
stream = "press"
registers = [ { name = "temp", address = 0 } ]
""")
    done = arros_command("connector", "press1", "-c", str(path), "--broker", "mqtt://127.0.0.1:1")
    assert done.returncode == 2
    assert "connectors.press1.output: is required to run the connector alone" in done.stderr
