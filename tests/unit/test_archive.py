"""The Parquet archive sink on real files, read back with DuckDB and pyarrow.dataset: partitions by
event hour, rolling by rows and by age, schema changes, metadata, retention, write failures."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arros_mqtt import __version__
from arros_mqtt.config import parse_config
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.egress import partitioned_writer
from arros_mqtt.egress.archive import Archive
from arros_mqtt.egress.archive_layout import partition_hour, partition_path
from arros_mqtt.egress.partition_time import PartitionTime, result_partition_time, split_by_hour
from arros_mqtt.engine import Engine
from tests.archive_support import dataset_read, duckdb_read, file_rows, parquet_files, temp_files

HOUR_MS = 3_600_000
BASE_MS = 1_764_000_000_000 - 1_764_000_000_000 % HOUR_MS  # 2025-11-24 16:00 UTC, an hour boundary


def make_config(tmp_path: Path, **archive) -> dict:
    return {
        "archive": {"dir": str(tmp_path / "archive"), **archive},
        "streams": {
            "telemetry": {"topic": "f/{machine}/t", "archive": True, "event_time": "ts",
                          "schema": {"ts": "timestamp[ms]", "temp": "float64", "seq": "int64"}},
            "plain": {"topic": "p/{machine}", "archive": True, "schema": {"v": "int64"}},
            "quiet": {"topic": "q/{machine}", "schema": {"v": "int64"}},
        },
    }


def make_archive(tmp_path: Path, **archive) -> tuple[Archive, dict]:
    data = make_config(tmp_path, **archive)
    config = parse_config(data)
    sink = Archive(config)
    sink.open()
    return sink, data


def telemetry(ts_ms: list[int | None], received_ms: int, start: int = 0) -> pa.Table:
    n = len(ts_ms)
    return pa.table({
        "ts": pa.array(ts_ms, pa.int64()).cast(pa.timestamp("ms")),
        "temp": pa.array(np.linspace(20, 90, n)),
        "seq": pa.array(range(start, start + n), pa.int64()),
        "machine": pa.array([f"m{i % 3}" for i in range(n)]),
        "_topic": pa.array([f"f/m{i % 3}/t" for i in range(n)]),
        "_received_at": pa.array([received_ms] * n, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
    })


def test_rows_partitioned_by_event_hour_read_back_by_duckdb_and_pyarrow(tmp_path):
    sink, _ = make_archive(tmp_path)
    received = BASE_MS + 5 * HOUR_MS + 123
    ts = [BASE_MS + (i % 3) * HOUR_MS + i * 1000 for i in range(600)]
    ts[7] = ts[300] = None  # no event time: the arrival hour is used
    sink.write_rows("telemetry", telemetry(ts[:300], received))
    sink.write_rows("telemetry", telemetry(ts[300:], received, start=300))
    sink.write_rows("quiet", pa.table({"v": [1]}))  # archive = false: nothing written
    sink.close()
    folder = tmp_path / "archive" / "streams" / "telemetry"
    assert {p.parent.relative_to(folder).as_posix() for p in parquet_files(folder)} == {
        "date=2025-11-24/hour=16", "date=2025-11-24/hour=17", "date=2025-11-24/hour=18", "date=2025-11-24/hour=21"}
    assert not (tmp_path / "archive" / "streams" / "quiet").exists()
    assert not temp_files(tmp_path / "archive")

    # Every row sits in the partition of its event hour (or arrival hour when ts is null), per DuckDB.
    misplaced = duckdb_read(folder, """
        SELECT seq FROM archive
        WHERE strftime(coalesce(ts, _received_at::TIMESTAMP), '%Y-%m-%d') != strftime(date, '%Y-%m-%d')
           OR hour(coalesce(ts, _received_at::TIMESTAMP)) != hour""")
    assert misplaced.num_rows == 0
    back = duckdb_read(folder, "SELECT * EXCLUDE (date, hour) FROM archive ORDER BY seq")
    sent = pa.concat_tables([telemetry(ts[:300], received), telemetry(ts[300:], received, start=300)])
    assert back.to_pylist() == sent.to_pylist()
    via_dataset = dataset_read(folder).sort_by("seq")
    assert via_dataset.drop_columns(["date", "hour"]).to_pylist() == sent.to_pylist()
    assert set(via_dataset.column("hour").to_pylist()) == {16, 17, 18, 21}


def test_file_metadata_names_the_writer(tmp_path):
    sink, _ = make_archive(tmp_path)
    sink.write_rows("plain", pa.table({"v": [1, 2], "machine": ["a", "b"], "_topic": ["p/a", "p/b"],
                                       "_received_at": pa.array([BASE_MS] * 2, pa.timestamp("ms", tz="UTC"))}))
    sink.close()
    (path,) = parquet_files(tmp_path / "archive" / "streams" / "plain")
    meta = pq.read_metadata(path).metadata
    assert meta[b"arros.stream"] == b"plain" and meta[b"arros.version"] == __version__.encode()
    assert meta[b"arros.partitioned_by"] == b"_received_at"
    assert pq.read_metadata(path).row_group(0).column(0).compression == "ZSTD"
    assert pq.read_schema(path).remove_metadata().equals(parse_config(make_config(tmp_path)).streams["plain"]
                                                         .full_schema())


def test_roll_by_rows_makes_complete_files_of_roll_rows(tmp_path):
    sink, _ = make_archive(tmp_path, roll_rows=100)
    folder = tmp_path / "archive" / "streams" / "telemetry"
    for start in range(0, 250, 30):
        n = min(30, 250 - start)
        sink.write_rows("telemetry", telemetry([BASE_MS + start + i for i in range(n)], BASE_MS, start))
    # Two files are full: they are visible and complete while the third is still being written.
    assert [file_rows(p) for p in parquet_files(folder)] == [100, 100]
    assert len(temp_files(folder)) == 1
    assert duckdb_read(folder, "SELECT count(*) AS n FROM archive").column("n")[0].as_py() == 200
    sink.close()
    assert sorted(file_rows(p) for p in parquet_files(folder)) == [50, 100, 100]
    seqs = duckdb_read(folder, "SELECT seq FROM archive ORDER BY seq").column("seq").to_pylist()
    assert seqs == list(range(250))


def test_roll_by_interval_on_tick(tmp_path):
    sink, _ = make_archive(tmp_path, roll_interval="200ms")
    folder = tmp_path / "archive" / "streams" / "telemetry"
    sink.write_rows("telemetry", telemetry([BASE_MS, BASE_MS + 1], BASE_MS))
    sink.tick(time.time())  # younger than roll_interval: stays open
    assert parquet_files(folder) == [] and len(temp_files(folder)) == 1
    time.sleep(0.25)
    sink.tick(time.time())
    assert [file_rows(p) for p in parquet_files(folder)] == [2] and temp_files(folder) == []
    sink.write_rows("telemetry", telemetry([BASE_MS + 2], BASE_MS, start=2))  # a new file, never the closed one
    time.sleep(0.25)
    sink.tick(time.time())
    assert sorted(file_rows(p) for p in parquet_files(folder)) == [1, 2]


def test_small_batches_make_large_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(partitioned_writer, "ROW_GROUP_ROWS", 1000)
    sink, _ = make_archive(tmp_path)
    for start in range(0, 2500, 10):
        sink.write_rows("telemetry", telemetry([BASE_MS + start + i for i in range(10)], BASE_MS, start))
    sink.close()
    (path,) = parquet_files(tmp_path / "archive" / "streams" / "telemetry")
    meta = pq.read_metadata(path)
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 1000, 500]


def test_backfill_over_many_hours_keeps_a_bounded_number_of_open_files(tmp_path, monkeypatch):
    monkeypatch.setattr(partitioned_writer, "MAX_OPEN_FILES", 4)
    sink, _ = make_archive(tmp_path)
    folder = tmp_path / "archive" / "streams" / "telemetry"
    ts = [BASE_MS + (i % 40) * HOUR_MS for i in range(400)]
    sink.write_rows("telemetry", telemetry(ts, BASE_MS))
    assert len(temp_files(folder)) <= 4
    sink.write_rows("telemetry", telemetry(ts, BASE_MS, start=400))
    sink.close()
    back = duckdb_read(folder, "SELECT seq, hour, date FROM archive")
    assert sorted(back.column("seq").to_pylist()) == list(range(800))
    assert len({(r["date"], r["hour"]) for r in back.to_pylist()}) == 40


def subscription_results(engine: Engine, sql: str, batch: pa.Table) -> list:
    from arros_mqtt.config import SubscriptionConfig

    engine.subscriptions.pop("hot", None)
    engine.add(SubscriptionConfig(name="hot", sql=sql, archive=True))
    return engine.process("telemetry", batch)


def test_subscription_results_and_a_schema_change_start_a_new_file(tmp_path):
    sink, data = make_archive(tmp_path)
    config = parse_config(data)
    engine = Engine(config.streams)
    batch = telemetry([BASE_MS + i * 1000 for i in range(100)], BASE_MS + 9 * HOUR_MS)
    first = subscription_results(engine, "SELECT machine, ts, temp FROM telemetry WHERE temp > 50", batch)
    for result in first:
        sink.write_result(result)
    # Replaced by a query with another result schema: `temp` gone, `seq` and `hot` added.
    second = subscription_results(engine, "SELECT machine, ts, seq, temp > 80 AS hot FROM telemetry", batch)
    for result in second:
        sink.write_result(result)
    sink.close()
    folder = tmp_path / "archive" / "subscriptions" / "hot"
    files = parquet_files(folder)
    assert len(files) == 2 and {p.parent.name for p in files} == {"hour=16"}  # by the result's event time
    schemas = {tuple(pq.read_schema(p).names) for p in files}
    assert schemas == {("machine", "ts", "temp"), ("machine", "ts", "seq", "hot")}
    assert {pq.read_metadata(p).metadata[b"arros.sql"] for p in files} == {
        b"SELECT machine, ts, temp FROM telemetry WHERE temp > 50", b"SELECT machine, ts, seq, temp > 80 AS hot "
        b"FROM telemetry"}
    # Read by column name: each file's missing columns are null.
    expected = sorted(first[0].table.to_pylist() + second[0].table.to_pylist(), key=repr)
    columns = ["machine", "ts", "temp", "seq", "hot"]
    for read in (duckdb_read(folder), dataset_read(folder)):
        rows = [{c: r.get(c) for c in columns} for r in read.to_pylist()]
        assert sorted(rows, key=repr) == sorted([{c: r.get(c) for c in columns} for r in expected], key=repr)


def test_result_partition_time_choice():
    ts = pa.timestamp("ms")
    window = pa.struct([("start", ts), ("end", ts)])
    assert result_partition_time(pa.schema([("w", window), ("ts", ts)]), "ts") == PartitionTime("w", "start")
    assert result_partition_time(pa.schema([("m", pa.string()), ("ts", ts)]), "ts") == PartitionTime("ts")
    received = pa.schema([("ts", pa.string()), ("_received_at", pa.timestamp("ms", tz="UTC"))])
    assert result_partition_time(received, "ts") == PartitionTime("_received_at", fallback="_received_at")
    assert result_partition_time(pa.schema([("m", pa.string())]), "ts") == PartitionTime(None)
    assert result_partition_time(pa.schema([("ts", ts)]), None) == PartitionTime(None)


def test_emit_time_and_null_fallback_hours():
    table = pa.table({"ts": pa.array([None, BASE_MS + HOUR_MS], pa.timestamp("ms", tz="Europe/Paris"))})
    now_ms = BASE_MS + 3 * HOUR_MS + 5
    hours = PartitionTime("ts").hours(table, now_ms)
    assert hours.tolist() == [(BASE_MS + 3 * HOUR_MS) // HOUR_MS, (BASE_MS + HOUR_MS) // HOUR_MS]
    assert PartitionTime(None).hours(table, now_ms).tolist() == [now_ms // HOUR_MS] * 2
    ts = pa.timestamp("us")
    windows = pa.table({
        "w": pa.array([{"start": BASE_MS * 1000, "end": 0}, None, {"start": None, "end": 0}],
                      pa.struct([("start", ts), ("end", ts)])),
        "_received_at": pa.array([0, BASE_MS + 2 * HOUR_MS, None], pa.timestamp("ms", tz="UTC")),
    })
    by_window = PartitionTime("w", "start", fallback="_received_at").hours(windows, now_ms)
    assert by_window.tolist() == [BASE_MS // HOUR_MS, BASE_MS // HOUR_MS + 2, now_ms // HOUR_MS]
    old = pa.table({"ts": pa.array([-1, -HOUR_MS - 1], pa.timestamp("ms"))})  # before 1970: floor, not truncate
    assert PartitionTime("ts").hours(old, now_ms).tolist() == [-1, -2]


def test_split_by_hour_keeps_arrival_order_within_an_hour():
    table = pa.table({"i": list(range(8))})
    hours = np.array([5, 3, 5, 3, 4, 5, 3, 4])
    parts = {h: t.column("i").to_pylist() for h, t in split_by_hour(table, hours)}
    assert parts == {3: [1, 3, 6], 4: [4, 7], 5: [0, 2, 5]}


def test_partition_paths_round_trip():
    hour = BASE_MS // HOUR_MS
    path = partition_path(hour)
    assert path == "date=2025-11-24/hour=16"
    assert partition_hour(*path.split("/")) == hour
    assert partition_hour("date=2025-13-01", "hour=01") is None
    assert partition_hour("date=2025-11-24", "hour=24") is None


def test_retention_deletes_whole_expired_partitions_only(tmp_path):
    sink, _ = make_archive(tmp_path, retention="1d")
    folder = tmp_path / "archive" / "streams" / "telemetry"
    now = BASE_MS / 1000 + 3 * 86400 + 1800  # 3 days and half an hour after BASE_MS
    old = [BASE_MS + i * 1000 for i in range(10)]  # 3 days old: hour 16
    edge = int((now - 86400) * 1000) - 10  # a day old, but its hour ended less than a day ago
    sink.write_rows("telemetry", telemetry(old, BASE_MS))
    sink.write_rows("telemetry", telemetry([edge], BASE_MS, start=10))
    sink.close()
    # A stream no longer configured is covered too.
    leftover = tmp_path / "archive" / "streams" / "retired" / "date=2025-11-24" / "hour=16"
    leftover.mkdir(parents=True)
    (leftover / "part-x.parquet").write_bytes(b"")
    sink.write_rows("telemetry", telemetry([BASE_MS + HOUR_MS], BASE_MS, start=20))  # open file, expired hour 17
    sink.tick(now)

    def partitions() -> list[str]:
        return sorted(p.parent.relative_to(folder).as_posix() for p in parquet_files(folder) + temp_files(folder))

    assert not leftover.exists() and not leftover.parent.exists()
    assert partitions() == ["date=2025-11-24/hour=17", partition_path(edge // HOUR_MS)]  # 17 is still open
    sink.close()
    sink.tick(now)  # retention is checked once a minute: not yet
    assert len(partitions()) == 2
    sink.tick(now + 60)
    assert partitions() == [partition_path(edge // HOUR_MS)]
    assert duckdb_read(folder, "SELECT seq FROM archive").column("seq").to_pylist() == [10]


def test_stale_temporary_files_are_removed_at_open(tmp_path):
    partition = tmp_path / "archive" / "streams" / "telemetry" / "date=2025-11-24" / "hour=16"
    partition.mkdir(parents=True)
    (partition / ".part-20251124T160000Z-abc.parquet.tmp").write_bytes(b"PAR1 half a file")
    (partition / "part-keep.parquet").write_bytes(b"not ours to judge")
    make_archive(tmp_path)
    assert sorted(p.name for p in partition.iterdir()) == ["part-keep.parquet"]


def test_write_failure_is_logged_counted_and_spares_other_archives(tmp_path, caplog):
    sink, _ = make_archive(tmp_path)
    blocker = tmp_path / "archive" / "streams" / "telemetry"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"a file where the stream's folder should be")
    sink.write_rows("telemetry", telemetry([BASE_MS, BASE_MS + 1], BASE_MS))
    sink.write_rows("plain", pa.table({"v": [1], "machine": ["a"], "_topic": ["p/a"],
                                       "_received_at": pa.array([BASE_MS], pa.timestamp("ms", tz="UTC"))}))
    sink.close()
    assert "2 rows not archived" in caplog.text
    assert [file_rows(p) for p in parquet_files(tmp_path / "archive" / "streams" / "plain")] == [1]


def test_unwritable_archive_dir_is_a_config_error(tmp_path):
    (tmp_path / "archive").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"archive\.dir"):
        make_archive(tmp_path)


@pytest.mark.parametrize(("value", "message"), [
    ("30", "invalid duration"), ("0s", "longer than 0s"), (30, "expected a duration"), ("-1d", "invalid duration"),
])
def test_bad_retention_is_a_config_error(tmp_path, value, message):
    data = make_config(tmp_path, retention=value)
    with pytest.raises(ConfigError, match=message) as error:
        parse_config(data, "arros.toml")
    assert "archive.retention" in str(error.value)


def test_retention_parses():
    assert parse_config({"archive": {"retention": "30d"}}).archive.retention == 30 * 86400
    assert parse_config({}).archive.retention is None


def test_partition_date_matches_utc():
    hour = int(dt.datetime(2026, 1, 1, 23, tzinfo=dt.UTC).timestamp()) // 3600
    assert partition_path(hour) == "date=2026-01-01/hour=23"
