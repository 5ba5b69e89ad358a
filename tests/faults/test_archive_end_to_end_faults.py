"""`kill -9` of `arros run` mid-stream leaves only readable archive files; the next start removes what it
left half-written."""

from __future__ import annotations

import threading
import time

import pyarrow.parquet as pq

from arros_mqtt.config import load_config
from arros_mqtt.egress.archive import Archive
from tests.archive_support import duckdb_read, parquet_files, temp_files
from tests.integration.test_archive_end_to_end import config_text, make_messages
from tests.support import publish_all, start_arros, unique, wait_for_log


def test_kill_9_leaves_only_readable_files(mosquitto, tmp_path):
    prefix, archive_dir = unique(), tmp_path / "archive"
    config = tmp_path / "arros.toml"
    config.write_text(config_text(prefix, archive_dir, roll_rows="100"))
    log = tmp_path / "arros.log"
    process = start_arros("run", "-c", str(config), "--broker", mosquitto.url, log=log)
    messages, rows = make_messages(prefix, 4000)
    publisher = threading.Thread(target=publish_all, args=(mosquitto.port, messages), daemon=True)
    try:
        wait_for_log(log, "subscribed to", process=process, timeout=15)
        publisher.start()
        deadline = time.monotonic() + 30
        while len(parquet_files(archive_dir)) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.kill()  # SIGKILL, mid-stream: no chance to flush
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    publisher.join(60)
    files = parquet_files(archive_dir)
    assert len(files) >= 5
    for path in files:  # every visible file is complete
        pq.read_table(path)
    seqs = duckdb_read(archive_dir / "streams" / "telemetry", "SELECT seq FROM archive").column("seq").to_pylist()
    assert len(seqs) == len(set(seqs)) and set(seqs) <= set(range(len(rows)))
    assert all(f.name.endswith(".tmp") and f.name.startswith(".") for f in temp_files(archive_dir))
    # The next start removes what the killed process left half-written.
    Archive(load_config(config)).open()
    assert temp_files(archive_dir) == []
    assert parquet_files(archive_dir) == files
