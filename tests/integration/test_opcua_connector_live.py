"""The OPC UA connector against a real asyncua server on 127.0.0.1: values changed by another OPC UA
client arrive as rows, an unknown node is reported, and PLC value -> SQL -> derived topic."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from asyncua import Client, ua

from arros_mqtt.connectors.opcua import OpcuaConnector
from tests.plc_servers import Readings, opcua_server, wait_until
from tests.support import Collector, running_service, unique
from tests.unit.test_opcua_connector import NODES


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = opcua_server(tmp_path_factory.mktemp("opcua"))
    yield started
    started.stop()


def write(port: int, speed: float, count: int, running: bool) -> None:
    """Change the variables as another OPC UA client (an HMI, say) would."""

    async def go() -> None:
        async with Client(f"opc.tcp://127.0.0.1:{port}/") as client:
            for node, value, kind in (("ns=2;i=1002", speed, ua.VariantType.Double),
                                      ("ns=2;s=Line1.Count", count, ua.VariantType.Int64),
                                      ("ns=2;s=Line1.Running", running, ua.VariantType.Boolean)):
                await client.get_node(node).write_value(ua.DataValue(ua.Variant(value, kind)))

    asyncio.run(go())


def connector(port: int, emit, nodes=NODES) -> OpcuaConnector:
    options = OpcuaConnector.parse_options({"url": f"opc.tcp://127.0.0.1:{port}/", "nodes": nodes, "timeout": 2})
    return OpcuaConnector("line_opc", options, 0.05, emit)


def test_changing_variables_arrive_as_snapshot_rows(server):
    readings = Readings()
    plc = connector(server.port, readings)
    plc.start()
    try:
        assert wait_until(lambda: readings.count() >= 1)
        write(server.port, 12.5, 42, True)
        assert wait_until(lambda: readings.seen({"speed": 12.5, "count": 42, "running": True})), readings.values
        write(server.port, -3.25, 43, False)
        assert wait_until(lambda: readings.seen({"speed": -3.25, "count": 43, "running": False})), readings.values
        assert plc.stats.connected and plc.stats.connects == 1
    finally:
        plc.stop()


def test_unknown_node_is_reported_and_retried(server):
    readings = Readings()
    plc = connector(server.port, readings, nodes=[{"name": "ghost", "node": "ns=2;s=No.Such.Node"}])
    plc.start()
    try:
        assert wait_until(lambda: plc.stats.connection_failures >= 1)
        assert "ghost" in plc.stats.last_error and readings.count() == 0
    finally:
        plc.stop()


def test_plc_value_to_sql_subscription_to_derived_topic(server, mosquitto, tmp_path):
    prefix = unique()
    write(server.port, 0.0, 0, False)
    config = f"""
[control]
prefix = "{prefix}/arros"

[streams.line]
schema = {{ speed = "float64", count = "int64", running = "bool" }}

[connectors.line_opc]
kind = "opcua"
url = "opc.tcp://127.0.0.1:{server.port}/"
interval = "50ms"
stream = "line"
nodes = [ {{ name = "speed", node = "ns=2;i=1002" }}, {{ name = "count", node = "ns=2;s=Line1.Count" }},
          {{ name = "running", node = "ns=2;s=Line1.Running" }} ]

[subscriptions.fast]
sql = "SELECT _connector, speed, count + 1 AS next FROM line WHERE running AND speed > 100"
output = "{prefix}/fast/{{_connector}}"
"""
    with running_service(config, tmp_path, mosquitto.url) as service:
        out = Collector(mosquitto.port, [f"{prefix}/fast/#"])
        assert wait_until(lambda: service.connectors.connectors["line_opc"].stats.reads >= 1)
        write(server.port, 150.5, 9, True)
        messages = out.wait_for(1)
        out.close()
    assert [(t, orjson.loads(p)) for t, p in messages] == [
        (f"{prefix}/fast/line_opc", {"_connector": "line_opc", "speed": 150.5, "next": 10})]
