"""The OPC UA connector when its asyncua server goes away and comes back: reconnected, values flow again."""

from __future__ import annotations

from tests.integration.test_opcua_connector_live import connector, write
from tests.plc_servers import Readings, opcua_server, wait_until


def test_server_going_away_and_coming_back(tmp_path):
    own = opcua_server(tmp_path)
    readings = Readings()
    plc = connector(own.port, readings)
    plc.start()
    try:
        assert wait_until(lambda: readings.count() >= 1)
        own.stop()
        assert wait_until(lambda: not plc.stats.connected and plc.stats.connection_failures >= 1, timeout=30)
        own.start()
        assert wait_until(lambda: plc.stats.connected, timeout=60), plc.stats
        write(own.port, 7.0, 8, True)
        assert wait_until(lambda: readings.seen({"speed": 7.0, "count": 8, "running": True})), readings.values
        assert plc.stats.connects == 2
    finally:
        plc.stop()
        own.stop()
