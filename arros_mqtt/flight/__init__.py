"""Arrow Flight SQL for `arros run`: the archives, the live views and the catalogue, to any Flight SQL
client (ADBC, JDBC, DBeaver) as Arrow record batches (docs/flight.md)."""

import os

# gRPC's own log lines (a port in use, a client's failed TLS handshake) would bypass our logging and
# duplicate the one-line errors we give; GRPC_VERBOSITY=ERROR or DEBUG in the environment brings them back.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from arros_mqtt.flight.server import FlightSources, FlightSqlServer

__all__ = ["FlightSources", "FlightSqlServer"]
