"""End to end in both modes (the `broker` fixture: client mode on a real Mosquitto, and the embedded
amqtt broker): devices publish, Arros derives, a real subscriber receives; the expected rows come from
DuckDB running the same SELECT over the same input."""

from __future__ import annotations

import datetime as dt
import random

import duckdb
import msgpack
import orjson
import pyarrow as pa
import pytest

from tests.support import mosquitto_pub_lines, unique

SCHEMA = pa.schema([("ts", pa.timestamp("ms")), ("temp", pa.float64()), ("rpm", pa.int64()), ("ok", pa.bool_()),
                    ("status", pa.string())])
SQL = ("SELECT line, machine, ts, temp, rpm * 2 AS rpm2, upper(status) AS status FROM telemetry "
       "WHERE temp > 60 AND ok")


def config(prefix: str, **extra: str) -> str:
    sub_extra = "".join(f"{k} = {v}\n" for k, v in extra.items())
    return f"""
[engine]
batch_max_rows = 500
batch_max_delay = "20ms"

[control]
prefix = "{prefix}/arros"

[streams.telemetry]
topic = "{prefix}/factory/{{line}}/{{machine}}/telemetry"
format = "json"
schema = {{ ts = "timestamp[ms]", temp = "float64", rpm = "int64", ok = "bool", status = "string" }}

[streams.telemetry_mp]
topic = "{prefix}/mp/{{line}}/{{machine}}"
format = "msgpack"
schema = {{ ts = "timestamp[ms]", temp = "float64", rpm = "int64", ok = "bool", status = "string" }}

[subscriptions.hot]
sql = "{SQL}"
output = "{prefix}/alerts/{{line}}/{{machine}}"
{sub_extra}
[subscriptions.hot_mp]
sql = "{SQL.replace('FROM telemetry', 'FROM telemetry_mp')}"
output = "{prefix}/alerts_mp/{{line}}/{{machine}}"
format = "msgpack"
"""


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    base = 1_764_000_000_000
    rows = []
    for i in range(n):
        rows.append({
            "line": f"l{rng.randrange(3)}", "machine": f"m{rng.randrange(20)}",
            "ts": base + i * 10, "temp": None if i % 97 == 0 else round(rng.uniform(20, 100), 3),
            "rpm": rng.randrange(500, 3000), "ok": rng.random() > 0.1,
            "status": rng.choice(["run", "idle", "fault", None]),
        })
    return rows


def payload_of(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("line", "machine")}


def duckdb_expected(rows: list[dict], sql: str = SQL) -> list[dict]:
    table = pa.table({
        "ts": pa.array([r["ts"] for r in rows], pa.int64()).cast(pa.timestamp("ms")),
        **{name: pa.array([r[name] for r in rows], SCHEMA.field(name).type)
           for name in ("temp", "rpm", "ok", "status")},
        "line": [r["line"] for r in rows], "machine": [r["machine"] for r in rows],
    })
    con = duckdb.connect()
    con.register("telemetry", table)
    result = con.sql(sql).to_arrow_table().to_pylist()
    return sorted((normalise(r) for r in result), key=repr)


def normalise(row: dict) -> dict:
    out = dict(row)
    if isinstance(out.get("ts"), dt.datetime):
        out["ts"] = out["ts"].replace(tzinfo=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return out


def received_rows(messages: list[tuple[str, bytes]], prefix: str, loads=orjson.loads) -> list[dict]:
    rows = []
    for topic, payload in messages:
        row = loads(payload)
        assert topic == f"{prefix}/{row['line']}/{row['machine']}", "output topic filled from the row"
        rows.append(row)
    return sorted(rows, key=repr)


def test_json_and_msgpack_end_to_end_match_duckdb(broker, tmp_path):
    prefix = unique()
    json_rows, mp_rows = make_rows(3000, seed=1), make_rows(3000, seed=2)
    expected_json, expected_mp = duckdb_expected(json_rows), duckdb_expected(mp_rows)
    assert len(expected_json) > 500 and len(expected_mp) > 500
    with broker.service(config(prefix), tmp_path) as service:
        out = broker.collector([f"{prefix}/alerts/#"])
        out_mp = broker.collector([f"{prefix}/alerts_mp/#"])
        broker.publish_all([
            (f"{prefix}/factory/{r['line']}/{r['machine']}/telemetry", orjson.dumps(payload_of(r))) for r in json_rows
        ])
        broker.publish_all([
            (f"{prefix}/mp/{r['line']}/{r['machine']}", msgpack.packb(payload_of(r))) for r in mp_rows
        ])
        got = received_rows(out.wait_for(len(expected_json)), f"{prefix}/alerts")
        got_mp = received_rows(out_mp.wait_for(len(expected_mp)), f"{prefix}/alerts_mp", msgpack.unpackb)
        out.close()
        out_mp.close()
        assert service.pipeline.stats["telemetry"].rows == 3000
    assert got == expected_json
    assert got_mp == expected_mp


def test_mosquitto_pub_lines_and_arrays(broker, tmp_path):
    """`mosquitto_pub -l` sends one JSON object per line; arrays of objects give one row per element."""
    prefix = unique()
    rows = make_rows(2000, seed=3)
    for r in rows:
        r["line"], r["machine"] = "l1", "m7"
    with broker.service(config(prefix), tmp_path):
        out = broker.collector([f"{prefix}/alerts/#"])
        lines = [orjson.dumps(payload_of(r)) for r in rows[:1000]]
        mosquitto_pub_lines(broker.port, f"{prefix}/factory/l1/m7/telemetry", lines)
        arrays = [orjson.dumps([payload_of(r) for r in rows[i:i + 50]]) for i in range(1000, 2000, 50)]
        broker.publish_all([(f"{prefix}/factory/l1/m7/telemetry", p) for p in arrays])
        expected = duckdb_expected(rows)
        got = received_rows(out.wait_for(len(expected)), f"{prefix}/alerts")
        out.close()
    assert got == expected


def test_bad_payloads_go_to_deadletter_and_good_ones_still_flow(broker, tmp_path):
    prefix = unique()
    rows = make_rows(1000, seed=4)
    bad = [b"not json", b"{\"temp\": \"hot\"}", b"[1, 2]", b"", b"{\"rpm\": 3.5}", b"\xff\xfe", b"{\"temp\": 1"]
    topic = f"{prefix}/factory/l1/m1/telemetry"
    for r in rows:
        r["line"], r["machine"] = "l1", "m1"
    messages = [(topic, orjson.dumps(payload_of(r))) for r in rows]
    for i, payload in enumerate(bad):
        messages.insert(100 * i + 7, (topic, payload))
    with broker.service(config(prefix), tmp_path) as service:
        out = broker.collector([f"{prefix}/alerts/#"])
        dead = broker.collector([f"{prefix}/arros/deadletter/#"])
        broker.publish_all(messages)
        expected = duckdb_expected(rows)
        got = received_rows(out.wait_for(len(expected)), f"{prefix}/alerts")
        letters = [orjson.loads(p) for _, p in dead.wait_for(len(bad))]
        out.close()
        dead.close()
        stats = service.pipeline.stats["telemetry"]
    assert got == expected
    assert stats.deadletters == len(bad) and stats.rows == len(rows)
    assert sorted(__import__("base64").b64decode(d["payload_b64"]) for d in letters) == sorted(bad)
    for letter in letters:
        assert letter["topic"] == topic and letter["error"] and letter["received_at"].endswith("Z")
    errors = {__import__("base64").b64decode(d["payload_b64"]): d["error"] for d in letters}
    assert "invalid JSON" in errors[b"not json"]
    assert "temp" in errors[b"{\"temp\": \"hot\"}"]
    assert "rpm" in errors[b"{\"rpm\": 3.5}"]


@pytest.mark.parametrize("timestamps", ["rfc3339", "epoch_ms"])
def test_batch_output_and_timestamp_formats(broker, tmp_path, timestamps):
    """`batch = true`: one JSON array per micro-batch and output topic."""
    prefix = unique()
    rows = make_rows(600, seed=5)
    text = config(prefix, batch="true", timestamps=f'"{timestamps}"')
    with broker.service(text, tmp_path):
        out = broker.collector([f"{prefix}/alerts/#"])
        broker.publish_all([
            (f"{prefix}/factory/{r['line']}/{r['machine']}/telemetry", orjson.dumps(payload_of(r))) for r in rows
        ])
        expected = duckdb_expected(rows)
        deadline_rows = []
        for _ in range(100):
            messages = out.wait_for(1, timeout=1)
            deadline_rows = [row for _, p in messages for row in orjson.loads(p)]
            if len(deadline_rows) >= len(expected):
                break
        out.close()
    for topic, payload in messages:
        batch = orjson.loads(payload)
        assert isinstance(batch, list)
        assert all(topic.endswith(f"/{r['line']}/{r['machine']}") for r in batch)
    if timestamps == "epoch_ms":
        for row in deadline_rows:
            row["ts"] = dt.datetime.fromtimestamp(row["ts"] / 1000, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
    assert sorted(deadline_rows, key=repr) == expected


def test_casting_nulls_and_timestamp_forms(broker, tmp_path):
    """Missing fields are null; timestamps as epoch ms or RFC 3339; numbers in strings cast losslessly."""
    prefix = unique()
    text = f"""
[control]
prefix = "{prefix}/arros"
[streams.s]
topic = "{prefix}/in/{{device}}"
schema = {{ ts = "timestamp[ms, tz=UTC]", v = "float64", n = "int32", label = "string" }}
[subscriptions.all]
sql = "SELECT device, ts, v, n, label, _topic FROM s"
output = "{prefix}/out/{{device}}"
"""
    sent = [
        {"ts": 1_764_000_000_123, "v": 1.5, "n": 7, "label": "a"},
        {"ts": "2025-11-24T16:00:00.456Z", "v": 2},
        {"v": "3.25", "n": "12", "label": 5},
        {},
    ]
    with broker.service(text, tmp_path):
        out = broker.collector([f"{prefix}/out/#"])
        for payload in sent:  # one by one, so rows keep their order in the output
            broker.publish_all([(f"{prefix}/in/d1", orjson.dumps(payload))])
            out.wait_for(len(out.messages) + 1, timeout=10)
        got = [orjson.loads(p) for _, p in out.messages]
        out.close()
    assert got == [
        {"device": "d1", "ts": "2025-11-24T16:00:00.123Z", "v": 1.5, "n": 7, "label": "a", "_topic": f"{prefix}/in/d1"},
        {"device": "d1", "ts": "2025-11-24T16:00:00.456Z", "v": 2.0, "n": None, "label": None,
         "_topic": f"{prefix}/in/d1"},
        {"device": "d1", "ts": None, "v": 3.25, "n": 12, "label": "5", "_topic": f"{prefix}/in/d1"},
        {"device": "d1", "ts": None, "v": None, "n": None, "label": None, "_topic": f"{prefix}/in/d1"},
    ]
