"""Archive files uploaded to a real S3-compatible server on 127.0.0.1 (moto's server mode, started and
stopped by its PID): down, files queue locally, across a restart of the service; back, every file is
in the bucket once, complete, and holds what DuckDB reads from the local copy."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq
from pyarrow import fs

from tests.support import HOST, free_port, publish_all, running_service, unique, wait_for_port

BUCKET = "arros-archive"


class S3Server:
    """moto_server on a free port; its objects live in its memory, so a stop loses them."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> S3Server:
        with open(self.log, "ab") as handle:
            self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
                                            stdout=handle, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=30)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def filesystem(self) -> fs.S3FileSystem:
        return fs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1", scheme="http",
                               endpoint_override=f"{HOST}:{self.port}", allow_bucket_creation=True)


def config(prefix: str, tmp_path: Path, s3: S3Server) -> str:
    return f"""
[engine]
state_dir = "{tmp_path / 'state'}"

[archive]
dir = "{tmp_path / 'archive'}"
roll_rows = 200
upload = "s3://{BUCKET}/site-7"
endpoint_override = "{s3.endpoint}"
region = "us-east-1"
access_key = "testing"
secret_key = "testing"

[control]
prefix = "{prefix}/arros"

[streams.s]
topic = "{prefix}/in/{{device}}"
schema = {{ n = "int64" }}
archive = true
"""


def feed(mosquitto, prefix: str, start: int, count: int) -> None:
    publish_all(mosquitto.port, [(f"{prefix}/in/d{n % 3}", orjson.dumps({"n": n}))
                                 for n in range(start, start + count)])


def wait_rows(service, rows: int) -> None:
    deadline = time.monotonic() + 30
    while service.pipeline.stats["s"].rows < rows and time.monotonic() < deadline:
        time.sleep(0.05)


def test_files_queue_while_the_server_is_down_and_arrive_once_when_it_is_back(mosquitto, tmp_path):
    prefix = unique()
    s3 = S3Server(free_port(), tmp_path / "moto.log")
    text = config(prefix, tmp_path, s3)
    try:
        with running_service(text, tmp_path, mosquitto.url) as service:  # the server is down from the start
            feed(mosquitto, prefix, 0, 1000)
            wait_rows(service, 1000)
            uploader = service.archive.uploader
            deadline = time.monotonic() + 10
            while uploader.error is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert uploader.error is not None and uploader.uploaded == 0
        queued = orjson.loads((tmp_path / "state" / "archive-upload.json").read_bytes())
        local = sorted(str(p.relative_to(tmp_path / "archive")) for p in (tmp_path / "archive").rglob("*.parquet"))
        assert sorted(queued) == local and len(local) >= 5  # every file, queued across the stop

        s3.start()
        s3.filesystem().create_dir(BUCKET)
        with running_service(text, tmp_path, mosquitto.url) as service:  # the restart resumes the queue
            feed(mosquitto, prefix, 1000, 600)
            wait_rows(service, 600)
            service.archive.commit("streams")  # roll the open files now
            assert service.archive.uploader.wait_idle(60)
        bucket = s3.filesystem()
        objects = sorted(info.path for info in bucket.get_file_info(fs.FileSelector(f"{BUCKET}/site-7",
                                                                                   recursive=True))
                         if info.type == fs.FileType.File)
        local = sorted(str(p.relative_to(tmp_path / "archive")) for p in (tmp_path / "archive").rglob("*.parquet"))
        assert objects == [f"{BUCKET}/site-7/{path}" for path in local]  # each once, nothing half-made left
        uploaded = sorted(n for key in objects for n in pq.read_table(key, filesystem=bucket).column("n").to_pylist())
        archived = sorted(row[0] for row in duckdb.sql(
            f"SELECT n FROM read_parquet('{tmp_path / 'archive'}/**/*.parquet')").fetchall())
        assert uploaded == archived == list(range(1600))
    finally:
        s3.stop()
