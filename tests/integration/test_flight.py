"""Flight SQL with real clients (ADBC's Flight SQL driver, pyarrow.flight, `arros query --flight`): rows
published through a real Mosquitto, read back from the archives and the live views and compared with
DuckDB over the same Parquet files and over the rows published."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import orjson
import pyarrow as pa
import pytest

from arros_mqtt.testing import free_port
from tests.archive_support import duckdb_read, parquet_files
from tests.support import arros_command, running_service, unique

N = 2000


def config_text(prefix: str, tmp_path: Path, port: int) -> str:
    return f"""
[broker]
client_id = "{unique("arros-")}"
[engine]
batch_max_rows = 200
batch_max_delay = "20ms"
[archive]
dir = "{tmp_path / 'archive'}"
roll_rows = 500
[flight]
listen = "127.0.0.1:{port}"
[streams.telemetry]
topic = "{prefix}/{{machine}}/telemetry"
schema = {{ seq = "int64", temp = "float64" }}
archive = true
[subscriptions.by_machine]
sql = "SELECT machine, count(*) AS n, max(temp) AS hottest FROM telemetry GROUP BY machine"
archive = true
"""


def messages(prefix: str, start: int, n: int) -> list[tuple[str, bytes]]:
    return [(f"{prefix}/m{i % 5}/telemetry", orjson.dumps({"seq": i, "temp": round(20 + i * 37 % 700 / 10, 1)}))
            for i in range(start, start + n)]


def sent_rows(start: int, n: int) -> pa.Table:
    return pa.table({"machine": [f"m{i % 5}" for i in range(start, start + n)], "seq": list(range(start, start + n)),
                     "temp": [round(20 + i * 37 % 700 / 10, 1) for i in range(start, start + n)]})


def wait_rows(service, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while service.pipeline.stats["telemetry"].rows < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.pipeline.stats["telemetry"].rows == n


def connect(port: int, **kwargs) -> flight_sql.Connection:
    """ADBC's DBAPI connection; autocommit on: a read-only server has no transactions to turn it off for."""
    return flight_sql.connect(f"grpc://127.0.0.1:{port}", autocommit=True, **kwargs)


def fetch(port: int, sql: str) -> pa.Table:
    with connect(port) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def oracle(sent: pa.Table, sql: str) -> pa.Table:
    con = duckdb.connect()
    con.register("sent", sent)
    return con.sql(sql).to_arrow_table()


def test_archives_live_views_and_catalogue_match_duckdb(mosquitto, tmp_path):
    prefix, port = unique(), free_port()
    from tests.support import publish_all

    with running_service(config_text(prefix, tmp_path, port), tmp_path, mosquitto.url) as service:
        publish_all(mosquitto.port, messages(prefix, 0, N))
        wait_rows(service, N)
        stream_dir = tmp_path / "archive" / "streams" / "telemetry"
        assert parquet_files(stream_dir)  # roll_rows: complete files while the service runs

        # the archive: what DuckDB reads from the same complete files
        by_machine = "SELECT machine, count(*) AS n, sum(seq) AS s, max(temp) AS t FROM {} GROUP BY machine " \
                     "ORDER BY machine"
        assert fetch(port, by_machine.format("telemetry")).to_pylist() == \
            duckdb_read(stream_dir, by_machine.format("archive")).to_pylist()
        rows = "SELECT machine, seq, temp FROM {} ORDER BY seq"
        archived = fetch(port, rows.format("streams.telemetry"))
        expected = duckdb_read(stream_dir, rows.format("archive"))
        assert archived.num_rows > 0 and archived.to_pylist() == expected.to_pylist()

        # the live views: every row published (fewer than [live] max_rows), the aggregate's latest rows
        sent = sent_rows(0, N)
        assert fetch(port, rows.format("live.telemetry")).to_pylist() == oracle(sent, rows.format("sent")).to_pylist()
        latest = "SELECT machine, n, hottest FROM {} ORDER BY machine"
        assert fetch(port, latest.format("live.by_machine")).to_pylist() == oracle(
            sent, "SELECT machine, count(*) AS n, max(temp) AS hottest FROM sent GROUP BY machine ORDER BY machine"
        ).to_pylist()

        # one query over an archive, a live view and a system table
        joined = fetch(port, "SELECT l.machine, l.n AS live_n, a.n AS archived_n, s.name FROM live.by_machine l "
                             "JOIN (SELECT machine, count(*) AS n FROM telemetry GROUP BY machine) a USING (machine) "
                             "CROSS JOIN (SELECT name FROM system.streams) s ORDER BY l.machine")
        assert joined.column("machine").to_pylist() == [f"m{i}" for i in range(5)]
        assert set(joined.column("name").to_pylist()) == {"telemetry"}
        assert sum(joined.column("archived_n").to_pylist()) == archived.num_rows

        with connect(port) as conn:
            objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
            tables = {(s["db_schema_name"], t["table_name"]) for c in objects for s in c["catalog_db_schemas"]
                      for t in s["db_schema_tables"] or []}
            assert {("public", "telemetry"), ("streams", "telemetry"), ("live", "telemetry"), ("live", "by_machine"),
                    ("system", "streams"), ("system", "subscriptions"), ("system", "dead_letters")} <= tables
            assert conn.adbc_get_table_schema("telemetry", db_schema_filter="live").names == \
                ["seq", "temp", "machine", "_topic", "_received_at"]
            info = conn.adbc_get_info()
            assert info["vendor_name"] == "Arros MQTT"
            with conn.cursor() as cur:  # an explicitly prepared statement, executed twice
                cur.adbc_prepare("SELECT count(*) AS n FROM live.telemetry")
                for _ in range(2):
                    cur.execute("SELECT count(*) AS n FROM live.telemetry")
                    assert cur.fetch_arrow_table().column("n").to_pylist() == [N]


@pytest.mark.parametrize(("sql", "reason"), [
    ("COPY telemetry TO '/tmp/x.csv'", "DML is not allowed (queries are read-only): COPY"),
    ("CREATE TABLE t AS SELECT 1", "DDL is not allowed (queries are read-only)"),
    ("INSERT INTO telemetry VALUES (1)", "INSERT is not allowed (queries are read-only)"),
    ("INSERT INTO telemetry SELECT * FROM telemetry", "DML is not allowed (queries are read-only)"),
    ("SET datafusion.execution.batch_size = 1", "Statement is not allowed (queries are read-only)"),
    ("SELECT * FROM nope", "unknown table 'nope'"),
    ("SELECT * FROM live.nope", "unknown table 'live.nope' (tables: streams.telemetry, telemetry)"),
    ("SELEC 1", "Expected: an SQL statement, found: SELEC"),
])
def test_writes_and_bad_sql_are_refused_with_the_reason(flight_archive, sql, reason):
    port = flight_archive.port
    with pytest.raises(Exception) as refused:
        fetch(port, sql)
    assert reason.lower() in str(refused.value).lower() and "INVALID_ARGUMENT" in str(refused.value)
    assert fetch(port, "SELECT count(*) AS n FROM telemetry").column("n").to_pylist() == [ARCHIVE_ROWS]


ARCHIVE_ROWS = 1_000_000


@pytest.fixture(scope="module")
def flight_archive(tmp_path_factory):
    """A Flight SQL server alone over a 1M-row archive (two files), no broker: the port."""
    import pyarrow.parquet as pq

    from arros_mqtt.config import FlightConfig
    from arros_mqtt.flight import FlightSources, FlightSqlServer

    root = tmp_path_factory.mktemp("flight") / "archive"
    folder = root / "streams" / "telemetry" / "date=2026-12-04" / "hour=10"
    folder.mkdir(parents=True)
    half = ARCHIVE_ROWS // 2
    for k in range(2):
        seq = pa.array(range(k * half, (k + 1) * half), pa.int64())
        pq.write_table(pa.table({"seq": seq, "machine": pa.compute.cast(pa.compute.bit_wise_and(seq, 7), pa.string())}),
                       folder / f"part-{k}.parquet", row_group_size=100_000)
    server = FlightSqlServer(FlightSources(FlightConfig(listen=f"127.0.0.1:{free_port()}", listen_set=True),
                                           "<test>", root, None))
    server.start()
    yield server
    server.stop()


def test_arros_query_flight_client(flight_archive):
    sql = "SELECT machine, count(*) AS n FROM telemetry GROUP BY machine ORDER BY machine"
    result = arros_command("query", "--flight", f"grpc://127.0.0.1:{flight_archive.port}", sql, "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['"machine","n"'] + [f'"{m}",{ARCHIVE_ROWS // 8}' for m in range(8)]
    result = arros_command("query", "--flight", f"grpc://127.0.0.1:{flight_archive.port}", "DROP TABLE telemetry")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("arros: error: DDL is not allowed (queries are read-only)")


def test_arros_query_flight_errors_are_one_line(tmp_path):
    nobody = free_port()
    for url, reason in [(f"grpc://127.0.0.1:{nobody}", f"no Flight SQL server answers at grpc://127.0.0.1:{nobody}"),
                        ("http://127.0.0.1:1", "--flight expects grpc://host:port or grpc+tls://host:port")]:
        result = arros_command("query", "--flight", url, "SELECT 1", timeout=60)
        assert result.returncode == 2 and result.stderr.strip().startswith(f"arros: error: {reason}"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_query_cancelled_mid_stream(flight_archive):
    """ADBC cancels a running result after its first batch; the server stops streaming it and goes on."""
    port = flight_archive.port
    with connect(port) as conn, conn.cursor() as cur:
        cur.execute("SELECT seq, machine FROM telemetry")
        reader = cur.fetch_record_batch()
        first = reader.read_next_batch()
        assert 0 < first.num_rows < ARCHIVE_ROWS
        cur.adbc_cancel()
        with pytest.raises(Exception, match=r"(?i)cancel"):
            while True:
                reader.read_next_batch()
    wait_until_idle(flight_archive)
    assert fetch(port, "SELECT count(*) AS n FROM telemetry").column("n").to_pylist() == [ARCHIVE_ROWS]


def test_cancel_action_stops_the_stream(flight_archive):
    """A Flight SQL CancelQuery action naming the query's FlightInfo: the stream ends at its next batch."""
    import pyarrow.flight as flight

    from arros_mqtt.flight.commands import pack, unpack
    from arros_mqtt.vendor import FlightSql_pb2 as sql

    client = flight.FlightClient(f"grpc://127.0.0.1:{flight_archive.port}")
    info = client.get_flight_info(flight.FlightDescriptor.for_command(
        pack(sql.CommandStatementQuery(query="SELECT seq FROM telemetry"))))
    reader = client.do_get(info.endpoints[0].ticket)
    received = reader.read_chunk().data.num_rows
    body = pack(sql.ActionCancelQueryRequest(info=info.serialize()))
    answer = unpack(next(iter(client.do_action(flight.Action("CancelQuery", body)))).body.to_pybytes())
    assert answer.result == sql.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED
    try:
        while True:
            received += reader.read_chunk().data.num_rows
    except StopIteration:
        pass
    assert received < ARCHIVE_ROWS  # what gRPC had buffered arrived, the rest was never read
    client.close()
    wait_until_idle(flight_archive)


def wait_until_idle(server, timeout: float = 10) -> None:
    """Until the server streams no result: a cancelled one stops at its next batch."""
    deadline = time.monotonic() + timeout
    while server.streaming and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.streaming == 0


def test_hundred_concurrent_clients_while_ingest_continues(mosquitto, tmp_path):
    from tests.support import publish_all

    prefix, port, clients = unique(), free_port(), 100
    published, errors, counts = [0], [], []
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(0.05) and published[0] < 20_000:  # ~5k messages/s while the clients query
            publish_all(mosquitto.port, messages(prefix, published[0], 250), qos=0)
            published[0] += 250

    def client(k: int) -> None:
        try:
            with connect(port) as conn, conn.cursor() as cur:
                for _ in range(2):
                    cur.execute("SELECT count(*) AS n FROM live.telemetry" if k % 2 else "SELECT count(*) AS n "
                                "FROM system.streams s JOIN live.telemetry t ON s.name = 'telemetry'")
                    counts.append(cur.fetch_arrow_table().column("n")[0].as_py())
        except Exception as exc:  # any failure is what this test looks for
            errors.append(repr(exc))

    with running_service(config_text(prefix, tmp_path, port), tmp_path, mosquitto.url) as service:
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        stop.set()
        publisher.join(60)
        assert errors == [] and len(counts) == 2 * clients
        wait_rows(service, published[0])  # ingest went on: every row published arrived
        assert fetch(port, "SELECT count(*) AS n FROM live.telemetry").column("n").to_pylist() == [published[0]]


def test_files_and_archives_written_while_serving_are_read(tmp_path):
    """A new file of a known archive is read by the next query; a new archive is a table at once."""
    import pyarrow.parquet as pq

    from arros_mqtt.config import FlightConfig
    from arros_mqtt.flight import FlightSources, FlightSqlServer

    def write(stream: str, hour: int, n: int) -> None:
        folder = tmp_path / "archive" / "streams" / stream / "date=2026-12-04" / f"hour={hour:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"v": list(range(n))}), folder / "part-0.parquet")

    server = FlightSqlServer(FlightSources(FlightConfig(listen=f"127.0.0.1:{free_port()}", listen_set=True),
                                           "<test>", tmp_path / "archive", None))
    server.start()
    try:
        with pytest.raises(Exception, match="unknown table 'a'"):  # no archive yet: the folder does not exist
            fetch(server.port, "SELECT count(*) AS n FROM a")
        write("a", 1, 3)
        assert fetch(server.port, "SELECT count(*) AS n FROM a").column("n").to_pylist() == [3]
        write("a", 2, 4)
        write("b", 1, 5)
        assert fetch(server.port, "SELECT count(*) AS n FROM a").column("n").to_pylist() == [7]
        assert fetch(server.port, "SELECT count(*) AS n FROM streams.b").column("n").to_pylist() == [5]
    finally:
        server.stop()


def test_malformed_requests_get_errors_and_the_server_goes_on(flight_archive):
    import pyarrow.flight as flight

    from arros_mqtt.flight.commands import pack
    from arros_mqtt.vendor import FlightSql_pb2 as sql

    client = flight.FlightClient(f"grpc://127.0.0.1:{flight_archive.port}")
    bad_calls = [
        lambda: client.do_get(flight.Ticket(b"not a ticket")).read_all(),
        lambda: client.do_get(flight.Ticket(pack(sql.TicketStatementQuery(statement_handle=b"{}")))).read_all(),
        lambda: client.get_flight_info(flight.FlightDescriptor.for_path("telemetry")),
        lambda: client.get_flight_info(flight.FlightDescriptor.for_command(b"\xff\x00garbage")),
        lambda: client.get_flight_info(flight.FlightDescriptor.for_command(
            pack(sql.CommandPreparedStatementQuery(prepared_statement_handle=b"never prepared")))),
        lambda: client.get_flight_info(flight.FlightDescriptor.for_command(pack(sql.CommandGetPrimaryKeys()))),
        lambda: list(client.do_action(flight.Action("CreatePreparedStatement", b"\x01\x02"))),
        lambda: list(client.do_action(flight.Action("DropEverything", b""))),
    ]
    for call in bad_calls:  # InvalidArgument arrives as ArrowInvalid, Unimplemented as ArrowNotImplementedError
        with pytest.raises((flight.FlightError, pa.ArrowException)):
            call()
    writer, _ = client.do_put(flight.FlightDescriptor.for_command(pack(sql.CommandStatementUpdate(
        query="DELETE FROM telemetry"))), pa.schema([("x", pa.int64())]))
    with pytest.raises(pa.ArrowException, match="not allowed"):
        writer.close()
    client.close()
    assert fetch(flight_archive.port, "SELECT count(*) AS n FROM telemetry").column("n").to_pylist() == [ARCHIVE_ROWS]


def test_type_info_and_sql_info_for_jdbc_clients(flight_archive):
    """What JDBC's DatabaseMetaData asks: getTypeInfo (GetXdbcTypeInfo) and the server's properties."""
    import pyarrow.flight as flight

    from arros_mqtt.flight.commands import pack
    from arros_mqtt.vendor import FlightSql_pb2 as sql

    client = flight.FlightClient(f"grpc://127.0.0.1:{flight_archive.port}")

    def rows(command) -> pa.Table:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(pack(command)))
        table = client.do_get(info.endpoints[0].ticket).read_all()
        assert table.schema.equals(info.schema)
        return table

    types = rows(sql.CommandGetXdbcTypeInfo())
    assert {"BIGINT", "DOUBLE", "VARCHAR", "TIMESTAMP"} <= set(types.column("type_name").to_pylist())
    assert types.column("data_type").to_pylist() == sorted(types.column("data_type").to_pylist())
    varchar = rows(sql.CommandGetXdbcTypeInfo(data_type=sql.XdbcDataType.Value("XDBC_VARCHAR")))
    assert varchar.column("type_name").to_pylist() == ["VARCHAR"]
    read_only = sql.SqlInfo.Value("FLIGHT_SQL_SERVER_READ_ONLY")
    assert rows(sql.CommandGetSqlInfo(info=[read_only])).to_pylist() == [{"info_name": read_only, "value": True}]
    client.close()
