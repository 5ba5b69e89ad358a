"""`arros query`: read-only SQL over archives written by the real archive sink, checked against
DuckDB reading the same files; partition pruning seen in the plan; output formats; one-line errors."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from arros_mqtt.cli import main
from arros_mqtt.config import SubscriptionConfig, parse_config
from arros_mqtt.egress.archive import Archive
from arros_mqtt.engine import Engine
from tests.archive_support import duckdb_read

HOUR_MS = 3_600_000
BASE_MS = 1_764_000_000_000 - 1_764_000_000_000 % HOUR_MS  # 2025-11-24 16:00 UTC


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stream `telemetry` over hours 16-18 (two files per hour), subscription `hot` with two result
    schemas, and a stream and a subscription both named `dup`."""
    root = tmp_path_factory.mktemp("query") / "archive"
    schema = {"ts": "timestamp[ms]", "temp": "float64", "seq": "int64"}
    config = parse_config({"archive": {"dir": str(root), "roll_rows": 150}, "streams": {
        "telemetry": {"topic": "f/{machine}", "schema": schema, "event_time": "ts", "archive": True},
        "dup": {"topic": "d/{machine}", "schema": {"v": "int64"}, "archive": True}}})
    sink = Archive(config)
    sink.open()
    n = 900
    batch = pa.table({
        "ts": pa.array([BASE_MS + (i % 3) * HOUR_MS + i for i in range(n)], pa.int64()).cast(pa.timestamp("ms")),
        "temp": [20 + (i * 7 % 70) * 1.0 for i in range(n)], "seq": list(range(n)),
        "machine": [f"m{i % 4}" for i in range(n)], "_topic": [f"f/m{i % 4}" for i in range(n)],
        "_received_at": pa.array([BASE_MS] * n, pa.timestamp("ms", tz="UTC")),
    })
    sink.write_rows("telemetry", batch)
    sink.write_rows("dup", pa.table({"v": [1], "machine": ["a"], "_topic": ["d/a"],
                                     "_received_at": pa.array([BASE_MS], pa.timestamp("ms", tz="UTC"))}))
    engine = Engine(config.streams)
    for name, sql in [("hot", "SELECT machine, ts, temp FROM telemetry WHERE temp > 80"),
                      ("hot", "SELECT machine, ts, seq FROM telemetry WHERE temp > 70"),
                      ("dup", "SELECT seq FROM telemetry WHERE seq < 3")]:
        engine.subscriptions.pop(name, None)
        engine.add(SubscriptionConfig(name=name, sql=sql, archive=True))
        for result in engine.process("telemetry", batch):
            sink.write_result(result)
    sink.close()
    return root


def query(capsys, root: Path, sql: str, *args: str) -> tuple[int, str, str]:
    code = main(["query", sql, "--dir", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def json_rows(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines()]


def test_partition_filter_prunes_files_and_matches_duckdb(capsys, archive_dir):
    sql = ("SELECT machine, count(*) AS n, max(temp) AS hottest FROM telemetry "
           "WHERE date = '2025-11-24' AND hour = 17 GROUP BY machine ORDER BY machine")
    code, out, _ = query(capsys, archive_dir, sql, "--format", "json")
    expected = duckdb_read(archive_dir / "streams" / "telemetry", sql.replace("telemetry", "archive"))
    assert code == 0 and json_rows(out) == expected.to_pylist() and len(expected) == 4
    code, out, _ = query(capsys, archive_dir, f"EXPLAIN {sql}", "--format", "json")
    physical = next(r["plan"] for r in json_rows(out) if r["plan_type"] == "physical_plan")
    scanned = [part for part in physical.split("date=")[1:]]
    assert code == 0 and len(scanned) == 2 and all(p.startswith("2025-11-24/hour=17/part-") for p in scanned)
    code, out, _ = query(capsys, archive_dir, f"EXPLAIN {sql}")  # the text table keeps a plan's lines apart
    assert code == 0 and any(line.split("|")[-1].strip().startswith("DataSourceExec: file_groups=")
                             for line in out.splitlines())


def test_tables_are_registered_by_name_and_by_kind(capsys, archive_dir):
    code, out, _ = query(capsys, archive_dir, "SELECT table_schema, table_name FROM information_schema.tables "
                         "WHERE table_schema != 'information_schema' ORDER BY 1, 2", "--format", "json")
    assert code == 0 and [(r["table_schema"], r["table_name"]) for r in json_rows(out)] == [
        ("public", "hot"), ("public", "telemetry"), ("streams", "dup"), ("streams", "telemetry"),
        ("subscriptions", "dup"), ("subscriptions", "hot")]
    code, out, _ = query(capsys, archive_dir, "SELECT (SELECT count(*) FROM streams.dup) AS s, "
                         "(SELECT count(*) FROM subscriptions.dup) AS r", "--format", "json")
    assert json_rows(out) == [{"s": 1, "r": 3}]
    code, _, err = query(capsys, archive_dir, "SELECT * FROM dup")
    assert code == 2 and "unknown table 'dup'" in err and "streams.dup" in err


def test_files_with_different_schemas_read_by_column_name(capsys, archive_dir):
    code, out, _ = query(capsys, archive_dir, "SELECT count(*) AS n, count(temp) AS with_temp, count(seq) AS with_seq "
                         "FROM hot", "--format", "json")
    expected = duckdb_read(archive_dir / "subscriptions" / "hot", "SELECT count(*) AS n, count(temp) AS with_temp, "
                           "count(seq) AS with_seq FROM archive")
    assert code == 0 and json_rows(out) == expected.to_pylist()
    (row,) = json_rows(out)
    assert 0 < row["with_temp"] < row["n"] and 0 < row["with_seq"] < row["n"]


def test_output_formats(capsys, archive_dir, tmp_path):
    sql = "SELECT seq, ts, temp, machine FROM telemetry WHERE hour = 16 ORDER BY seq LIMIT 5"
    expected = duckdb_read(archive_dir / "streams" / "telemetry",
                           sql.replace("telemetry", "archive")).to_pylist()
    code, out, _ = query(capsys, archive_dir, sql)
    lines = out.splitlines()
    assert code == 0 and lines[0].split(" | ")[0].strip() == "seq" and lines[-1] == "(5 rows)"
    assert lines[2].startswith("0 ") and "2025-11-24 16:00:00" in lines[2]
    code, out, _ = query(capsys, archive_dir, sql, "--format", "csv")
    assert pa_csv.read_csv(io.BytesIO(out.encode())).column("seq").to_pylist() == [r["seq"] for r in expected]
    code, out, _ = query(capsys, archive_dir, sql, "--format", "json")
    assert json_rows(out)[0]["ts"] == "2025-11-24T16:00:00.000Z"
    target = tmp_path / "out.parquet"
    code, out, _ = query(capsys, archive_dir, sql, "--format", "parquet", "--output", str(target))
    assert code == 0 and out == "" and pq.read_table(target).to_pylist() == expected
    csv_file = tmp_path / "out.csv"
    query(capsys, archive_dir, sql, "--format", "csv", "--output", str(csv_file))
    assert pa_csv.read_csv(csv_file).num_rows == 5


@pytest.mark.parametrize(("sql", "args", "message"), [
    ("SELECT * FROM nope", [], "unknown table 'nope' (archived tables: streams.dup, streams.telemetry"),
    ("COPY telemetry TO '/tmp/x.csv'", [], "DML is not allowed (queries are read-only): COPY"),
    ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", [], "DDL is not allowed"),
    ("SELECT * FROM '/etc/passwd'", [], "unknown table '/etc/passwd'"),
    ("SELECT nope FROM telemetry", [], "nope"),
    ("SELECT 1", ["--format", "parquet"], "--format parquet needs --output FILE"),
    ("SELECT 1", ["--format", "csv", "--output", "/no/such/dir/x.csv"], "cannot write '/no/such/dir/x.csv'"),
    ("SELECT 1", ["--format", "parquet", "--output", "/no/such/dir/x.parquet"], "cannot write"),
])
def test_errors_are_one_line(capsys, archive_dir, sql, args, message):
    code, out, err = query(capsys, archive_dir, sql, *args)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
