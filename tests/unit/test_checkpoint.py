"""A checkpoint restores window, session and running-aggregate state: the engine goes on as if never stopped."""

from __future__ import annotations

import pyarrow as pa

from arros_mqtt.durability.checkpoint import CheckpointStore
from tests.engine_support import batch, subscribe, telemetry_engine

QUERIES = {
    "tumbling": "SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, count(*) AS n, avg(temp) AS t "
                "FROM telemetry GROUP BY window, machine",
    "hopping": "SELECT hop(ts, INTERVAL '5 seconds', INTERVAL '20 seconds') AS window, max(temp) AS hot "
               "FROM telemetry GROUP BY window",
    "sessions": "SELECT session(ts, INTERVAL '4 seconds') AS window, machine, count(*) AS n FROM telemetry "
                "GROUP BY window, machine",
    "median": "SELECT tumble(ts, INTERVAL '10 seconds') AS window, median(temp) AS m FROM telemetry GROUP BY window",
    "running": "SELECT machine, count(*) AS n, sum(temp) AS total FROM telemetry GROUP BY machine",
}


def engine_with_queries():
    engine = telemetry_engine(watermark="2s")
    for name, sql in QUERIES.items():
        subscribe(engine, sql, name)
    return engine


def batches(engine, count: int = 12):
    out = []
    for b in range(count):
        ms = [1_000_000 + b * 3_000 + i * 137 for i in range(20)]
        out.append(batch(engine, ms, [f"m{i % 3}" for i in range(20)], [float((b * 20 + i) % 17) for i in range(20)]))
    return out


def run(engine, tables) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {name: [] for name in QUERIES}
    for table in tables:
        for result in engine.process("telemetry", table):
            results[result.subscription.name] += result.table.to_pylist()
    return results


def test_state_restored_from_a_checkpoint_continues_exactly(tmp_path):
    straight = engine_with_queries()
    expected = run(straight, batches(straight))

    first = engine_with_queries()
    data = batches(first)
    before = run(first, data[:5])
    store = CheckpointStore(tmp_path)
    store.write(first, seq=5, archive_from=3, confirmed=4)
    store.promote()

    second = engine_with_queries()
    loaded = CheckpointStore(tmp_path).load()
    assert (loaded.seq, loaded.archive_from, loaded.confirmed) == (5, 3, 4)
    restored = CheckpointStore(tmp_path).restore(loaded, second, now=0.0)
    assert sorted(restored) == sorted(QUERIES)
    after = run(second, data[5:])
    for name in QUERIES:
        assert before[name] + after[name] == expected[name], name
    assert second.watermarks["telemetry"].value == straight.watermarks["telemetry"].value


def test_a_changed_query_starts_empty_and_a_pending_checkpoint_is_not_used(tmp_path):
    engine = engine_with_queries()
    run(engine, batches(engine)[:3])
    store = CheckpointStore(tmp_path)
    store.write(engine, seq=3, archive_from=1, confirmed=3)
    store.promote()
    store.write(engine, seq=9, archive_from=1, confirmed=3)  # outputs not confirmed yet: stays pending

    changed = telemetry_engine(watermark="2s")
    subscribe(changed, QUERIES["tumbling"].replace("avg(temp)", "max(temp)"), "tumbling")
    subscribe(changed, QUERIES["running"], "running")
    reopened = CheckpointStore(tmp_path)
    checkpoint = reopened.load()
    assert checkpoint.seq == 3 and not list(tmp_path.glob("pending-*"))
    assert reopened.restore(checkpoint, changed, now=0.0) == ["running"]
    assert changed.subscriptions["tumbling"].operator.rows == 0
    assert changed.subscriptions["running"].operator.table.equals(engine.subscriptions["running"].operator.table)
    assert isinstance(changed.subscriptions["running"].operator.table, pa.Table)


def checkpoints_at(tmp_path, seqs: list[int]):
    """An engine run through 3 batches per checkpoint, one promoted checkpoint per seq; the results of a
    straight run, per batch, to compare with."""
    engine = engine_with_queries()
    data = batches(engine)
    store = CheckpointStore(tmp_path)
    for index, seq in enumerate(seqs):
        run(engine, data[3 * index:3 * index + 3])
        store.write(engine, seq=seq, archive_from=1, confirmed=seq)
        store.promote()
    return store, data


def test_the_previous_checkpoint_is_kept_until_a_newer_one_is_promoted_over_it(tmp_path):
    store, _ = checkpoints_at(tmp_path, [3, 6])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3", "6"] and store.oldest_kept_seq() == 3
    store.write(engine_with_queries(), seq=9, archive_from=1, confirmed=9)
    store.promote()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["6", "9"] and store.oldest_kept_seq() == 6


def test_a_garbage_state_file_falls_back_to_the_previous_checkpoint(tmp_path, caplog):
    """Issue 20 item 7: not "starts empty" while the log holds the records: the previous checkpoint, and
    the records after it replayed, give the same state."""
    _, data = checkpoints_at(tmp_path, [3, 6])
    for state_file in (tmp_path / "6").glob("*.arrow"):
        state_file.write_bytes(b"garbage" * 10)
    straight = engine_with_queries()
    expected = run(straight, data)

    engine = engine_with_queries()
    store = CheckpointStore(tmp_path)
    checkpoint, restored = store.restore_newest(engine, 0.0, replayable=lambda seq: True)
    assert checkpoint.seq == 3 and sorted(restored) == sorted(QUERIES)
    assert "starts empty" not in caplog.text.lower() and "damaged" in caplog.text
    assert (tmp_path / "damaged-6").is_dir() and store.latest.seq == 3
    resumed = run(engine, data[3:])  # the log after checkpoint 3, replayed
    before = run(engine_with_queries(), data[:3])
    for name in QUERIES:
        assert before[name] + resumed[name] == expected[name], name


def test_no_usable_checkpoint_replays_the_log_from_its_start_or_says_state_starts_empty(tmp_path, caplog):
    checkpoints_at(tmp_path, [3])
    (tmp_path / "3" / "manifest.json").write_bytes(b"{not json")
    assert CheckpointStore(tmp_path).restore_newest(engine_with_queries(), 0.0, lambda seq: seq == 0) == (None, [])
    assert "replaying the whole log" in caplog.text

    caplog.clear()
    checkpoints_at(tmp_path / "again", [3])
    for state_file in (tmp_path / "again" / "3").glob("*.arrow"):
        state_file.write_bytes(b"")
    assert CheckpointStore(tmp_path / "again").restore_newest(engine_with_queries(), 0.0,
                                                              lambda seq: seq > 0) == (None, [])
    assert "STARTS EMPTY" in caplog.text
