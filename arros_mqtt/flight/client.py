"""`arros query --flight URL SQL`: the same query as a client of a running service's Flight SQL endpoint."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight

from arros_mqtt.core.errors import UserError
from arros_mqtt.flight.commands import pack
from arros_mqtt.vendor import FlightSql_pb2 as sql


def flight_query(url: str, query: str, username: str | None = None, password: str | None = None,
                 tls_roots: bytes | None = None) -> pa.Table:
    """The result of `query` from the Flight SQL server at `url` (grpc:// or grpc+tls://); UserError with
    the server's one-line reason."""
    if not url.startswith(("grpc://", "grpc+tcp://", "grpc+tls://")):
        raise UserError(f"--flight expects grpc://host:port or grpc+tls://host:port, got {url!r}")
    try:
        client = flight.FlightClient(url, tls_root_certs=tls_roots)
    except pa.ArrowException as exc:
        raise UserError(f"cannot connect to {url}: {exc}") from None
    try:
        options = flight.FlightCallOptions()
        if username is not None:
            header = client.authenticate_basic_token(username, password or "")
            options = flight.FlightCallOptions(headers=[header])
        descriptor = flight.FlightDescriptor.for_command(pack(sql.CommandStatementQuery(query=query)))
        info = client.get_flight_info(descriptor, options)
        tables = [client.do_get(endpoint.ticket, options).read_all() for endpoint in info.endpoints]
    except flight.FlightUnavailableError:
        raise UserError(f"no Flight SQL server answers at {url} (is `arros run` running there?)") from None
    except (flight.FlightError, pa.ArrowException) as exc:
        raise UserError(_reason(str(exc))) from None
    finally:
        client.close()
    return pa.concat_tables(tables) if tables else info.schema.empty_table()


def _reason(text: str) -> str:
    """The server's message without gRPC's detail (a Python traceback of the server)."""
    return " ".join(text.split(". Detail:", 1)[0].removeprefix("Flight returned invalid argument error, with "
                                                                 "message: ").split())[:500]
