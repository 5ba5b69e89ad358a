"""A damaged write-ahead log after kill -9 (issue 20 item 6): a byte flipped inside acknowledged (synced)
records costs that record only. Every record after it is still replayed into the raw archive, checked
with DuckDB against the full input; the damage is reported as corruption, never as a torn tail."""

from __future__ import annotations

import signal
import time

import duckdb
import orjson

from arros_mqtt.durability.wal import ROWS, WriteAheadLog, _frames
from tests.fault_support import FaultRun, finish_publisher, stop_arros
from tests.support import Collector, unique

COUNT = 1050


def logged_rows(wal_dir) -> int:
    """Readings in the log (the publisher's markers have seq < 0)."""
    return sum(sum(1 for s in r.table.column("seq").to_pylist() if s >= 0)
               for r in WriteAheadLog(wal_dir).records(kinds=(ROWS,)))


def test_a_byte_flip_in_the_synced_log_after_kill9_loses_only_its_record(tmp_path, mosquitto):
    run = FaultRun(tmp_path, mosquitto.port, unique("w"), count=COUNT, rate=500)
    # No checkpoint and no closed archive file before the kill: the restart must rebuild all from the log.
    text = run.config.read_text().replace('checkpoint_interval = "2s"', 'checkpoint_interval = "1h"')
    run.config.write_text(text.replace('roll_interval = "2s"', 'roll_interval = "1h"'))
    wal_dir = tmp_path / "state" / "wal"
    arros = run.start_arros("run-0")
    try:
        finish_publisher(run.start_publisher())
        deadline = time.monotonic() + 60
        while logged_rows(wal_dir) < COUNT and time.monotonic() < deadline:  # synced, so acknowledged
            time.sleep(0.2)
        assert logged_rows(wal_dir) == COUNT
        arros.send_signal(signal.SIGKILL)
        assert arros.wait(30) == -signal.SIGKILL

        segment = sorted(wal_dir.glob("wal-*.log"))[-1]
        data = bytearray(segment.read_bytes())
        # the middle of the rows record nearest 40% of the segment (a flip between frames, or in a record of
        # another kind, e.g. a confirmed position, would test something else)
        target = int(len(data) * 0.4)
        spans = [(start, end) for header, _body, start, end in _frames(segment) if header["kind"] == ROWS]
        start, end = min(spans, key=lambda span: abs((span[0] + span[1]) // 2 - target))
        flip = (start + end) // 2
        frames = [(r.seq, r.table.column("seq").to_pylist()) for r in WriteAheadLog(wal_dir).records(kinds=(ROWS,))]
        data[flip] ^= 0xFF
        segment.write_bytes(bytes(data))
        survivors = {r.seq for r in WriteAheadLog(wal_dir).records(kinds=(ROWS,))}
        lost = [seqs for seq, seqs in frames if seq not in survivors]
        assert len(lost) == 1, "the flip must hit exactly one record"

        arros = run.start_arros("run-1")
        health = Collector(mosquitto.port, [f"{run.prefix}/arros/health"], qos=0)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
                orjson.loads(payload)["wal"]["damaged_records"] >= 1 for _, payload in health.messages):
            time.sleep(0.1)
        reported = [orjson.loads(payload)["wal"]["damaged_records"] for _, payload in health.messages]
        health.close()
        stop_arros(arros)  # SIGTERM: closes the archive files the replay wrote
        assert reported and max(reported) == 1, f"health did not report the damaged record: {reported}"
    finally:
        if arros.poll() is None:
            stop_arros(arros)
    log = (tmp_path / "run-1.log").read_text()
    assert "CORRUPT" in log and "cutting a torn frame" not in log

    files = f"{run.archive}/streams/telemetry/**/*.parquet"
    duckdb.sql(f"CREATE OR REPLACE TEMP TABLE lost AS SELECT unnest({lost[0]}::BIGINT[]) AS seq")
    missing, extra, duplicates = duckdb.sql(f"""
        WITH archived AS (SELECT seq FROM read_parquet('{files}', hive_partitioning = true) WHERE seq >= 0),
             expected AS (SELECT i AS seq FROM range({COUNT}) t(i) WHERE i NOT IN (SELECT seq FROM lost))
        SELECT (SELECT count(*) FROM expected ANTI JOIN archived USING (seq)),
               (SELECT count(*) FROM archived ANTI JOIN expected USING (seq)),
               (SELECT count(*) - count(DISTINCT seq) FROM archived)""").fetchall()[0]
    figures = {"sent": COUNT, "lost_with_the_damaged_record": len(lost[0]), "missing_otherwise": missing,
               "extra": extra, "duplicates": duplicates}
    print("wal damage figures:", figures)
    assert missing == 0 and extra == 0 and duplicates == 0, figures
    assert len(lost[0]) < COUNT // 10, figures
