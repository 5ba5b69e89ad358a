"""Archives end to end: devices publish through a real broker (Mosquitto; the first test also the
embedded one), Arros archives, DuckDB and pyarrow read the files back (also while they are being
written); `arros run` flushes on SIGTERM (a `kill -9`: tests/faults/test_archive_end_to_end_faults.py)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tests.archive_support import dataset_read, duckdb_read, parquet_files, temp_files
from tests.support import publish_all, running_service, start_arros, stop_process, unique, wait_for_log

HOUR_MS = 3_600_000
BASE_MS = 1_764_000_000_000 - 1_764_000_000_000 % HOUR_MS + HOUR_MS - 30_000  # 30 s before an hour ends


def config_text(prefix: str, archive_dir: Path, **archive: str) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in archive.items())
    return f"""
[broker]
client_id = "{unique("arros-")}"
[engine]
batch_max_rows = 100
batch_max_delay = "20ms"
state_dir = "{archive_dir.parent / 'state'}"
[archive]
dir = "{archive_dir}"
{extra}
[streams.telemetry]
topic = "{prefix}/factory/{{machine}}/telemetry"
schema = {{ ts = "timestamp[ms]", temp = "float64", seq = "int64" }}
event_time = "ts"
archive = true
[subscriptions.hot]
sql = "SELECT machine, ts, seq, temp FROM telemetry WHERE temp > 70"
archive = true
"""


def make_messages(prefix: str, n: int) -> tuple[list[tuple[str, bytes]], list[dict]]:
    rows = [{"machine": f"m{i % 7}", "ts": BASE_MS + i * 20, "temp": round(20 + (i * 37 % 800) / 10, 1), "seq": i}
            for i in range(n)]
    messages = [(f"{prefix}/factory/{r['machine']}/telemetry",
                 orjson.dumps({k: v for k, v in r.items() if k != "machine"})) for r in rows]
    return messages, rows


def sent_table(rows: list[dict]) -> pa.Table:
    return pa.table({"machine": [r["machine"] for r in rows],
                     "ts": pa.array([r["ts"] for r in rows], pa.int64()).cast(pa.timestamp("ms")),
                     "seq": [r["seq"] for r in rows], "temp": [r["temp"] for r in rows]})


def test_published_rows_are_archived_exactly_once_while_readers_read(broker, tmp_path):
    """In client mode and in embedded mode: archives work the same."""
    prefix, archive_dir = unique(), tmp_path / "archive"
    messages, rows = make_messages(prefix, 3000)  # 60 s of event time across an hour boundary
    stream_dir = archive_dir / "streams" / "telemetry"
    reads, errors, done = [0], [], threading.Event()

    def read_while_written() -> None:
        while not done.is_set():
            if not parquet_files(stream_dir):
                time.sleep(0.01)
                continue
            try:
                duckdb_read(stream_dir, "SELECT count(*), max(seq) FROM archive")
                dataset_read(stream_dir)
                reads[0] += 1
            except Exception as exc:  # any error here is the bug this test looks for
                errors.append(repr(exc))

    reader = threading.Thread(target=read_while_written, daemon=True)
    with broker.service(config_text(prefix, archive_dir, roll_rows="250"), tmp_path) as service:
        reader.start()
        broker.publish_all(messages)
        deadline = time.monotonic() + 30
        while service.pipeline.stats["telemetry"].rows < len(rows) and time.monotonic() < deadline:
            time.sleep(0.05)
    done.set()
    reader.join(30)
    assert errors == [] and reads[0] > 0

    sent = sent_table(rows)
    con = duckdb.connect()
    con.register("sent", sent)
    expected = con.sql("SELECT machine, ts, seq, temp FROM sent ORDER BY seq").to_arrow_table()
    archived = duckdb_read(stream_dir, "SELECT machine, ts, seq, temp, _topic, hour FROM archive ORDER BY seq")
    assert archived.select(["machine", "ts", "seq", "temp"]).to_pylist() == expected.to_pylist()
    assert archived.column("_topic").to_pylist() == [t for t, _ in messages]
    assert sorted(set(archived.column("hour").to_pylist())) == [16, 17]
    via_dataset = dataset_read(stream_dir).sort_by("seq")
    assert via_dataset.select(["machine", "ts", "seq", "temp"]).to_pylist() == expected.to_pylist()
    assert max(pq.read_metadata(p).num_rows for p in parquet_files(stream_dir)) <= 250

    hot = con.sql("SELECT machine, ts, seq, temp FROM sent WHERE temp > 70 ORDER BY seq").to_arrow_table()
    results = duckdb_read(archive_dir / "subscriptions" / "hot", "SELECT * EXCLUDE (date, hour) FROM archive "
                          "ORDER BY seq")
    assert results.num_rows > 100 and results.to_pylist() == hot.to_pylist()
    assert temp_files(archive_dir) == []


def test_sigterm_flushes_open_files(mosquitto, tmp_path):
    prefix, archive_dir = unique(), tmp_path / "archive"
    config = tmp_path / "arros.toml"
    text = config_text(prefix, archive_dir, roll_interval='"1h"')
    config.write_text(text.replace('"20ms"', '"2s"\nbatching = "delay"'))  # a batch waits 2 s for more
    log = tmp_path / "arros.log"
    process = start_arros("run", "-c", str(config), "--broker", mosquitto.url, log=log)
    try:
        wait_for_log(log, "subscribed to", process=process, timeout=15)
        messages, _ = make_messages(prefix, 500)
        publish_all(mosquitto.port, messages)
        time.sleep(0.3)  # still inside the 2 s batch delay: nothing is processed, let alone written
        assert parquet_files(archive_dir) == []
        assert stop_process(process, signal.SIGTERM) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "Traceback" not in text and "archive streams/telemetry: 500 rows written, 1 files" in text, text
    archived = duckdb_read(archive_dir / "streams" / "telemetry", "SELECT seq FROM archive ORDER BY seq")
    assert archived.column("seq").to_pylist() == list(range(500))
    assert temp_files(archive_dir) == []


def test_files_roll_by_interval_while_running(mosquitto, tmp_path):
    """The service's tick closes files after `roll_interval`, without more rows or a stop."""
    prefix, archive_dir = unique(), tmp_path / "archive"

    def visible_rows(wanted: int) -> list[Path]:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            files = parquet_files(archive_dir / "streams")
            if sum(pq.read_metadata(p).num_rows for p in files) >= wanted:
                return files
            time.sleep(0.05)
        raise TimeoutError(f"fewer than {wanted} rows in closed files")

    with running_service(config_text(prefix, archive_dir, roll_interval='"300ms"'), tmp_path, mosquitto.url):
        messages, _ = make_messages(prefix, 20)
        publish_all(mosquitto.port, messages[:10])
        first = visible_rows(10)
        publish_all(mosquitto.port, messages[10:])
        running = visible_rows(20)
    assert set(first) < set(running)  # closed files stay as they were; new rows went to new files
    seqs = duckdb_read(archive_dir / "streams" / "telemetry", "SELECT seq FROM archive ORDER BY seq")
    assert seqs.column("seq").to_pylist() == list(range(20))
