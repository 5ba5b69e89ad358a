"""Archive files uploaded to Google Cloud Storage and Azure Blob Storage, each a real local server on
127.0.0.1 (fake-gcs-server, Azurite; tests/object_store_servers.py): down at first, the files queue
locally, across a restart of the service; up, every file is in the bucket once, complete, reads back with
pyarrow, and DuckDB over the downloaded objects equals DuckDB over the local copies; `arros query --archive
gs://... / az://...` equals DuckDB; with `keep_local = false` an uploaded file is gone locally."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from arros_mqtt.cli import main
from arros_mqtt.egress.object_store import AZURITE_ACCOUNT
from tests.integration.test_uplink_archive_upload_live import feed
from tests.object_store_servers import SERVERS, LocalServer
from tests.support import running_service, unique

BUCKET = "arros-archive"


def config(prefix: str, tmp_path: Path, server: LocalServer, keep_local: bool = True) -> str:
    return f"""
[engine]
state_dir = "{tmp_path / 'state'}"

[archive]
dir = "{tmp_path / 'archive'}"
roll_rows = 200
upload = "{server.kind}://{BUCKET}/site-7"
keep_local = {"true" if keep_local else "false"}
{server.archive_keys()}
[control]
prefix = "{prefix}/arros"

[streams.s]
topic = "{prefix}/in/{{device}}"
schema = {{ n = "int64" }}
archive = true
"""


def objects(bucket: fs.FileSystem) -> list[str]:
    return sorted(info.path for info in bucket.get_file_info(fs.FileSelector(f"{BUCKET}/site-7", recursive=True))
                  if info.type == fs.FileType.File)


def local_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def download(bucket: fs.FileSystem, keys: list[str], into: Path) -> None:
    for key in keys:
        target = into / key
        target.parent.mkdir(parents=True, exist_ok=True)
        with bucket.open_input_stream(key) as source:
            target.write_bytes(source.read())


def wait_rows(service, count: int) -> None:
    """Until the stream has taken `count` rows (bounded); a failure says how many it had."""
    deadline = time.monotonic() + 60
    while service.pipeline.stats["s"].rows < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.pipeline.stats["s"].rows >= count, f"{service.pipeline.stats['s'].rows} of {count} rows"


def rows(folder: Path) -> list[tuple]:
    return duckdb.sql(f"SELECT device, date, hour, n FROM read_parquet('{folder}/**/*.parquet', "
                      "hive_partitioning = true) ORDER BY n").fetchall()


@pytest.mark.parametrize("kind", ["gs", "az"])
def test_files_queue_while_the_store_is_down_and_arrive_once_when_it_is_up(kind, mosquitto, tmp_path, capsys,
                                                                           monkeypatch):
    prefix = unique()
    server = SERVERS[kind](tmp_path / "server")
    archive = tmp_path / "archive"
    text = config(prefix, tmp_path, server)
    try:
        with running_service(text, tmp_path, mosquitto.url) as service:  # the server is down from the start
            feed(mosquitto, prefix, 0, 1000)
            wait_rows(service, 1000)
            uploader = service.archive.uploader
            deadline = time.monotonic() + 30
            while uploader.error is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert uploader.error is not None and uploader.uploaded == 0, (uploader.error, uploader.uploaded)
        queued = orjson.loads((tmp_path / "state" / "archive-upload.json").read_bytes())
        assert sorted(queued) == local_files(archive), (queued, local_files(archive))  # queued across the stop
        assert len(queued) >= 5, queued

        server.start()
        bucket = server.filesystem()
        bucket.create_dir(BUCKET)
        with running_service(text, tmp_path, mosquitto.url) as service:  # the restart resumes the queue, in order
            feed(mosquitto, prefix, 1000, 600)
            wait_rows(service, 600)
            service.archive.commit("streams")  # roll the open files now
            assert service.archive.uploader.wait_idle(60), service.archive.uploader.error
        keys = objects(bucket)
        assert keys == [f"{BUCKET}/site-7/{path}" for path in local_files(archive)], keys  # each once, no .uploading
        uploaded = sorted(n for key in keys for n in pq.read_table(key, filesystem=bucket).column("n").to_pylist())
        assert uploaded == list(range(1600))
        download(bucket, keys, tmp_path / "downloaded")
        assert rows(tmp_path / "downloaded" / BUCKET / "site-7") == rows(archive)
        assert len(rows(archive)) == 1600

        # `arros query --archive URL`: the same answers as DuckDB over the local copies
        # The credentials from the standard environment this time (and Azure's endpoint too)
        if kind == "gs":
            (tmp_path / "arros.toml").write_text(f'[archive]\ndir = "{archive}"\nupload = "gs://{BUCKET}/site-7"\n'
                                                 f'endpoint_override = "{server.endpoint}"\n')
            monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS",
                               str(server.service_account_file(tmp_path / "service-account.json")))
        else:
            (tmp_path / "arros.toml").write_text(f'[archive]\ndir = "{archive}"\n')
            monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", server.connection_string)
        sql = "SELECT device, count(*) AS c, sum(n) AS total, min(hour) AS h FROM s GROUP BY device ORDER BY device"
        expected = duckdb.sql(f"SELECT device, count(*), sum(n), min(hour) FROM read_parquet('{archive}/**/*.parquet',"
                              " hive_partitioning = true) GROUP BY device ORDER BY device").fetchall()
        assert len(expected) == 3
        urls = [f"{kind}://{BUCKET}/site-7"]
        if kind == "az":  # the Data Lake form, naming the account
            urls.append(f"abfss://{BUCKET}@{AZURITE_ACCOUNT}.dfs.core.windows.net/site-7")
        for url in urls:
            assert main(["query", "-c", str(tmp_path / "arros.toml"), "--archive", url, "--format", "json", sql]) == 0
            got = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line]
            assert [(r["device"], r["c"], r["total"], r["h"]) for r in got] == [tuple(row) for row in expected], url

        # keep_local = false: an uploaded file is deleted locally, and is in the bucket
        before = set(local_files(archive))
        with running_service(config(prefix, tmp_path, server, keep_local=False), tmp_path, mosquitto.url) as service:
            feed(mosquitto, prefix, 1600, 400)
            wait_rows(service, 400)
            service.archive.commit("streams")
            assert service.archive.uploader.wait_idle(60), service.archive.uploader.error
        new_keys = [key for key in objects(bucket) if key not in keys]
        assert len(new_keys) >= 2, new_keys
        assert set(local_files(archive)) == before, sorted(set(local_files(archive)) - before)
        added = sorted(n for key in new_keys for n in pq.read_table(key, filesystem=bucket).column("n").to_pylist())
        assert added == list(range(1600, 2000))
    finally:
        server.stop()
