"""`arros query --archive s3://bucket/prefix` against a real S3-compatible server (moto's server mode on
127.0.0.1): the tables, partition columns and results match DuckDB over the local copies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from arros_mqtt.cli import main
from tests.integration.test_uplink_archive_upload_live import S3Server
from tests.support import free_port

BUCKET = "arros-archive"


def write_archive(root: Path) -> None:
    """Two hours of a stream and one hour of a subscription, 100 rows a file."""
    for kind, name, date, hour, first in [("streams", "s", "2026-12-06", 10, 0),
                                          ("streams", "s", "2026-12-06", 11, 100),
                                          ("subscriptions", "derived", "2026-12-06", 11, 0)]:
        folder = root / kind / name / f"date={date}" / f"hour={hour:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = list(range(first, first + 100))
        pq.write_table(pa.table({"device": [f"d{n % 3}" for n in rows], "n": pa.array(rows, pa.int64())}),
                       folder / "part-0001.parquet")


def upload(root: Path, bucket: fs.S3FileSystem) -> None:
    bucket.create_dir(BUCKET)
    for path in sorted(root.rglob("*.parquet")):
        key = f"{BUCKET}/site-7/{path.relative_to(root)}"
        with bucket.open_output_stream(key) as out:
            out.write(path.read_bytes())
    with bucket.open_output_stream(f"{BUCKET}/site-7/streams/s/date=2026-12-06/hour=11/x.parquet.uploading") as out:
        out.write(b"half an upload")  # not complete: not read


def query(tmp_path: Path, capsys, sql: str, url: str = f"s3://{BUCKET}/site-7") -> list[dict]:
    assert main(["query", "-c", str(tmp_path / "arros.toml"), "--archive", url, "--format", "json", sql]) == 0
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line]


@pytest.fixture()
def s3(tmp_path):
    server = S3Server(free_port(), tmp_path / "moto.log").start()
    yield server
    server.stop()


def test_query_reads_the_uploaded_archive_like_duckdb_reads_the_local_one(s3, tmp_path, capsys):
    root = tmp_path / "archive"
    write_archive(root)
    upload(root, s3.filesystem())
    (tmp_path / "arros.toml").write_text(f"""
[archive]
dir = "{root}"
upload = "s3://{BUCKET}/site-7"
endpoint_override = "{s3.endpoint}"
region = "us-east-1"
access_key = "testing"
secret_key = "testing"
""")
    sql = ("SELECT device, count(*) AS rows, sum(n) AS total FROM s WHERE hour = 11 AND date = DATE '2026-12-06' "
           "GROUP BY device ORDER BY device")
    got = query(tmp_path, capsys, sql)
    expected = duckdb.sql(f"SELECT device, count(*) AS rows, sum(n) AS total FROM read_parquet("
                          f"'{root}/streams/s/**/*.parquet', hive_partitioning = true) WHERE hour = 11 "
                          "GROUP BY device ORDER BY device").fetchall()
    assert [(r["device"], r["rows"], r["total"]) for r in got] == [tuple(row) for row in expected]
    assert query(tmp_path, capsys, "SELECT count(*) AS c FROM streams.s") == [{"c": 200}]
    assert query(tmp_path, capsys, "SELECT max(n) AS m FROM subscriptions.derived") == [{"m": 99}]
    first_date = query(tmp_path, capsys, "SELECT min(date) AS d FROM s")[0]["d"]
    assert dt.date.fromisoformat(first_date) == dt.date(2026, 12, 6)


def test_a_bad_url_is_one_line(tmp_path, capsys):
    (tmp_path / "arros.toml").write_text("")
    assert main(["query", "-c", str(tmp_path / "arros.toml"), "--archive", "ftp://b/p", "SELECT 1"]) != 0
    err = capsys.readouterr().err
    assert "--archive: expected \"s3://bucket/prefix\", \"gs://bucket/prefix\" or \"az://container/prefix\"" in err
    assert len(err.strip().splitlines()) == 1
