"""The Flight SQL endpoint of `arros run`: read-only SQL over the archives and the live views.

Protocol: GetFlightInfo plans a query (a statement, a prepared statement or a catalogue command) and
answers with its schema and one ticket; DoGet streams the result batch by batch from DataFusion's
`execute_stream()` (gRPC flow control holds the next batch back while a client is slow, so a result is
never held whole). Planning runs on gRPC's threads, off the engine thread; DataFusion releases the GIL
while it executes. A stream stops at the next batch once its client cancels the call, a CancelQuery /
CancelFlightInfo action names its ticket, or the service stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
from datafusion import DataFrame

from arros_mqtt.config import FlightConfig, parse_listen
from arros_mqtt.core.errors import ConfigError, UserError
from arros_mqtt.flight import metadata
from arros_mqtt.flight.auth import BearerTokens, NoHandshakeCheck
from arros_mqtt.flight.commands import UnknownCommand, pack, unpack
from arros_mqtt.flight.sql_info import sql_info_table
from arros_mqtt.flight.statements import Statements, read_handle, ticket_handle
from arros_mqtt.flight.tables import Archives, LiveTables, catalogue
from arros_mqtt.flight.type_info import type_info_table
from arros_mqtt.query import message, plain_schema, plan_read_only
from arros_mqtt.vendor import FlightSql_pb2 as sql

log = logging.getLogger(__name__)
STOP_WAIT = 5.0  # seconds `stop()` waits for calls in progress


@dataclass(frozen=True)
class FlightSources:
    """What the endpoint reads: its config, the archive folder and the live views (None when off)."""

    config: FlightConfig
    source: str  # the config file, for errors that name it
    archive_dir: Path
    live: LiveTables | None


class FlightSqlServer:
    """Binds at `start()`; a failure to bind stops the start only when `[flight] listen` was written."""

    def __init__(self, sources: FlightSources) -> None:
        self.sources = sources
        self._server: _FlightSql | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = self.sources.config
        host, port = parse_listen(config.listen)
        scheme = "grpc+tls" if config.tls_cert else "grpc"
        location = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
        try:
            self._server = _FlightSql(self.sources, location, self._tls())
        except (OSError, pa.ArrowException):  # gRPC says only "Server did not start properly"
            if config.listen_set:
                why = "the port is in use or the address is not this machine's" + (
                    ", or tls_cert/tls_key are not a PEM certificate and its key" if config.tls_cert else "")
                raise ConfigError(self.sources.source, "flight.listen",
                                  f"cannot serve Flight SQL on {config.listen}: {why}") from None
            log.warning("Flight SQL is off: cannot listen on %s (in use?); set [flight] listen to another port",
                        config.listen)
            return
        self._thread = threading.Thread(target=self._server.serve, name="arros-flight", daemon=True)
        self._thread.start()
        log.info("Flight SQL on %s://%s:%d%s", scheme, host, self._server.port,
                 " (username and password required)" if config.password else "")

    def _tls(self) -> list[flight.CertKeyPair] | None:
        config = self.sources.config
        if not config.tls_cert:
            return None
        pair = {}
        for key, path in (("tls_cert", config.tls_cert), ("tls_key", config.tls_key)):
            try:
                pair[key] = Path(path).read_bytes()
            except OSError as exc:
                raise ConfigError(self.sources.source, f"flight.{key}", f"cannot read {path!r}: {exc.strerror}") \
                    from None
        return [flight.CertKeyPair(cert=pair["tls_cert"], key=pair["tls_key"])]

    @property
    def port(self) -> int | None:
        """The bound port (None when not serving)."""
        return self._server.port if self._server is not None else None

    @property
    def streaming(self) -> int:
        """Query results being streamed now."""
        return self._server.statements.streaming if self._server is not None else 0

    def stop(self) -> None:
        """Cancel running streams, then wait up to STOP_WAIT for the calls in progress to end."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.statements.cancel_all()
        server.stopping.set()
        closer = threading.Thread(target=server.shutdown, name="arros-flight-stop", daemon=True)
        closer.start()
        closer.join(STOP_WAIT)
        if closer.is_alive():
            log.warning("Flight SQL: calls still open after %.0fs; leaving them", STOP_WAIT)


class _FlightSql(flight.FlightServerBase):
    """The RPC handlers. User errors (bad SQL, a write) reach the client as InvalidArgument with the reason."""

    def __init__(self, sources: FlightSources, location: str, tls: list | None) -> None:
        config = sources.config
        auth = {}
        if config.password is not None:
            auth = {"auth_handler": NoHandshakeCheck(),
                    "middleware": {"auth": BearerTokens(config.username or "", config.password)}}
        super().__init__(location, tls_certificates=tls, **auth)
        self.sources = sources
        self.archives = Archives(sources.archive_dir)
        self.statements = Statements()
        self.stopping = threading.Event()

    # --- GetFlightInfo / GetSchema: plan, answer with schema and ticket

    def get_flight_info(self, context: flight.ServerCallContext,
                        descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        command = _command(descriptor)
        schema, ticket = self._plan(command)
        endpoint = flight.FlightEndpoint(ticket, [])
        return flight.FlightInfo(schema, descriptor, [endpoint], -1, -1)

    def get_schema(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        command = _command(descriptor)
        if isinstance(command, sql.CommandStatementQuery | sql.CommandPreparedStatementQuery):
            return flight.SchemaResult(self._schema_of(self._sql_of(command)))
        return flight.SchemaResult(self._plan(command)[0])

    def _plan(self, command: Any) -> tuple[pa.Schema, bytes]:
        if isinstance(command, sql.CommandStatementQuery | sql.CommandPreparedStatementQuery):
            text = self._sql_of(command)
            frame = _user_errors(lambda: self._frame(text))
            query_id, handle = ticket_handle(text)
            self.statements.keep_planned(query_id, frame)
            return plain_schema(frame.schema()), pack(sql.TicketStatementQuery(statement_handle=handle))
        schema = _METADATA_SCHEMAS.get(type(command))
        if schema is None:
            raise pa.ArrowNotImplementedError(f"unsupported Flight SQL command {type(command).__name__}")
        if isinstance(command, sql.CommandGetTables) and command.include_schema:
            schema = metadata.TABLES_WITH_SCHEMA
        return schema, pack(command)

    def _sql_of(self, command: Any) -> str:
        if isinstance(command, sql.CommandStatementQuery):
            return command.query
        try:
            return self.statements.prepared_sql(command.prepared_statement_handle)
        except KeyError as exc:
            raise pa.ArrowInvalid(str(exc.args[0])) from None

    def _frame(self, text: str) -> DataFrame:
        found = catalogue(self.archives, self.sources.live, text)
        return plan_read_only(found.ctx, text, found.names, what="tables")

    def _schema_of(self, text: str) -> pa.Schema:
        return plain_schema(_user_errors(lambda: self._frame(text)).schema())

    # --- DoGet: stream the result

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.FlightDataStream:
        try:
            command = unpack(ticket.ticket)
        except UnknownCommand as exc:
            raise pa.ArrowInvalid(str(exc)) from None
        if isinstance(command, sql.TicketStatementQuery):
            return self._stream(context, command.statement_handle)
        return flight.RecordBatchStream(self._metadata(command))

    def _stream(self, context: flight.ServerCallContext, handle: bytes) -> flight.FlightDataStream:
        try:
            query_id, text = read_handle(handle)
        except ValueError as exc:
            raise pa.ArrowInvalid(str(exc)) from None
        frame = self.statements.take_planned(query_id)
        if frame is None:  # planned by another server, or long ago: plan it again
            frame = _user_errors(lambda: self._frame(text))
        schema = plain_schema(frame.schema())
        return flight.GeneratorStream(schema, self._batches(frame, schema, context, query_id))

    def _batches(self, frame: DataFrame, schema: pa.Schema, context: flight.ServerCallContext,
                 query_id: str) -> Iterator[pa.RecordBatch]:
        """The result batch by batch; runs once the client reads (a client gone before that costs nothing)."""
        cancelled = self.statements.start(query_id)
        try:
            batches = _user_errors(frame.execute_stream)
            while not (cancelled.is_set() or self.stopping.is_set() or context.is_cancelled()):
                try:
                    batch = next(batches, None)
                except Exception as exc:  # an execution error (a cast of a bad value): the client gets why
                    raise pa.ArrowInvalid(message(str(exc), [])) from None
                if batch is None:
                    return
                data = batch.to_pyarrow()
                yield data if data.schema.equals(schema) else data.cast(schema)
        finally:
            self.statements.finish(query_id)

    def _metadata(self, command: Any) -> pa.Table:
        if isinstance(command, sql.CommandGetSqlInfo):
            return sql_info_table(list(command.info))
        if isinstance(command, sql.CommandGetTableTypes):
            return metadata.table_types()
        if isinstance(command, sql.CommandGetXdbcTypeInfo):
            return type_info_table(command.data_type if command.HasField("data_type") else None)
        ctx = catalogue(self.archives, self.sources.live).ctx
        if isinstance(command, sql.CommandGetCatalogs):
            return metadata.catalogs(ctx)
        if isinstance(command, sql.CommandGetDbSchemas):
            return metadata.db_schemas(ctx, command)
        if isinstance(command, sql.CommandGetTables):
            return metadata.tables(ctx, command)
        raise pa.ArrowNotImplementedError(f"unsupported Flight SQL command {type(command).__name__}")

    # --- DoPut: updates and parameters are refused (read-only, no parameter binding)

    def do_put(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor,
               reader: flight.MetadataRecordBatchReader, writer: flight.FlightMetadataWriter) -> None:
        command = _command(descriptor)
        if isinstance(command, sql.CommandStatementUpdate):
            _user_errors(lambda: self._frame(command.query))  # a write is refused with planning's reason
            raise pa.ArrowInvalid("updates are not allowed (queries are read-only)")
        if isinstance(command, sql.CommandPreparedStatementQuery):
            raise pa.ArrowNotImplementedError("prepared statements with parameters are not supported: "
                                              "write the values into the SQL")
        raise pa.ArrowInvalid("this server is read-only: it accepts no uploads")

    # --- DoAction: prepared statements and cancellation

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [("CreatePreparedStatement", "plan a query; returns its handle and schema"),
                ("ClosePreparedStatement", "forget a prepared statement"),
                ("CancelQuery", "cancel a query by its FlightInfo (Flight SQL)"),
                ("CancelFlightInfo", "cancel a query by its FlightInfo (Flight)")]

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> Iterator[bytes]:
        body = action.body.to_pybytes() if action.body is not None else b""
        if action.type == "CreatePreparedStatement":
            request = _expect(body, sql.ActionCreatePreparedStatementRequest)
            schema = self._schema_of(request.query)
            result = sql.ActionCreatePreparedStatementResult(
                prepared_statement_handle=self.statements.prepare(request.query),
                dataset_schema=schema.serialize().to_pybytes(),
                parameter_schema=pa.schema([]).serialize().to_pybytes())
            return iter([pack(result)])
        if action.type == "ClosePreparedStatement":
            self.statements.close(_expect(body, sql.ActionClosePreparedStatementRequest).prepared_statement_handle)
            return iter([])
        if action.type in ("CancelQuery", "CancelFlightInfo"):
            # CancelFlightInfoRequest (Flight.proto) has the same field 1 (the FlightInfo) as ActionCancelQueryRequest
            request = (_expect(body, sql.ActionCancelQueryRequest) if action.type == "CancelQuery"
                       else sql.ActionCancelQueryRequest.FromString(body))
            result = sql.ActionCancelQueryResult(result=self._cancel(request.info))
            return iter([pack(result) if action.type == "CancelQuery" else result.SerializeToString()])
        raise pa.ArrowNotImplementedError(f"unknown action {action.type!r}")

    def _cancel(self, info_bytes: bytes) -> int:
        info = flight.FlightInfo.deserialize(info_bytes)
        found = False
        for endpoint in info.endpoints:
            try:
                command = unpack(endpoint.ticket.ticket)
                if isinstance(command, sql.TicketStatementQuery):
                    found |= self.statements.cancel(read_handle(command.statement_handle)[0])
            except (UnknownCommand, ValueError):
                continue
        return sql.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED if found \
            else sql.ActionCancelQueryResult.CANCEL_RESULT_NOT_CANCELLABLE


_METADATA_SCHEMAS: dict[type, pa.Schema] = {
    sql.CommandGetSqlInfo: sql_info_table([]).schema,
    sql.CommandGetCatalogs: metadata.CATALOGS_SCHEMA,
    sql.CommandGetDbSchemas: metadata.DB_SCHEMAS_SCHEMA,
    sql.CommandGetTables: metadata.TABLES_SCHEMA,
    sql.CommandGetTableTypes: metadata.TABLE_TYPES_SCHEMA,
    sql.CommandGetXdbcTypeInfo: type_info_table(None).schema,
}


def _command(descriptor: flight.FlightDescriptor) -> Any:
    if descriptor.descriptor_type != flight.DescriptorType.CMD:
        raise pa.ArrowInvalid("this server takes Flight SQL commands, not paths")
    try:
        return unpack(descriptor.command)
    except UnknownCommand as exc:
        raise pa.ArrowNotImplementedError(str(exc)) from None


def _expect(body: bytes, kind: type) -> Any:
    try:
        command = unpack(body)
    except UnknownCommand as exc:
        raise pa.ArrowInvalid(str(exc)) from None
    if not isinstance(command, kind):
        raise pa.ArrowInvalid(f"expected {kind.__name__}, got {type(command).__name__}")
    return command


def _user_errors(call: Callable[[], Any]) -> Any:
    """`call()`, with a UserError (bad SQL, a write) raised as InvalidArgument carrying its message."""
    try:
        return call()
    except UserError as exc:
        raise pa.ArrowInvalid(str(exc)) from None
