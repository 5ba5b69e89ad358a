"""Arrow Flight SQL for `arros run`: the archives, the live views and the catalogue, to any Flight SQL
client (ADBC, JDBC, DBeaver) as Arrow record batches (docs/flight.md)."""

from arros_mqtt.flight.server import FlightSources, FlightSqlServer

__all__ = ["FlightSources", "FlightSqlServer"]
