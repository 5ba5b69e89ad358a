"""The Modbus connector when its pymodbus server goes away and comes back, or is not there at the start:
retried, never fatal."""

from __future__ import annotations

from tests.integration.test_modbus_connector_live import connector
from tests.plc_servers import Readings, modbus_server, wait_until
from tests.unit.test_modbus_connector import EXPECTED, REGISTERS, VALUES


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
