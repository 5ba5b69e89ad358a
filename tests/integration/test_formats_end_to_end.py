"""csv, influx and arrow payloads end to end on a real Mosquitto, and Arrow IPC results out: devices
publish (paho, `mosquitto_pub`), Arros derives, a real subscriber receives; the expected rows come from
DuckDB running the same SELECT over the same input (its own CSV reader for csv)."""

from __future__ import annotations

import base64
import datetime as dt
import random
import subprocess
import time

import duckdb
import orjson
import pyarrow as pa

from tests.control_support import Operator
from tests.support import HOST, Collector, mosquitto_pub_lines, publish_all, running_service, unique

SQL = "SELECT line, machine, ts, temp, rpm * 2 AS rpm2, upper(status) AS status FROM {stream} WHERE temp > 60 AND ok"


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"line": f"l{rng.randrange(3)}", "machine": f"m{rng.randrange(20)}", "ts": 1_764_000_000_000 + i * 10,
             "temp": None if i % 97 == 0 else round(rng.uniform(20, 100), 3), "rpm": rng.randrange(500, 3000),
             "ok": rng.random() > 0.1, "status": rng.choice(["run", "idle", 'fault "x", y', None])}
            for i in range(n)]


def as_table(rows: list[dict]) -> pa.Table:
    return pa.table({
        "ts": pa.array([r["ts"] for r in rows], pa.int64()).cast(pa.timestamp("ms")),
        "temp": pa.array([r["temp"] for r in rows], pa.float64()), "rpm": pa.array([r["rpm"] for r in rows]),
        "ok": pa.array([r["ok"] for r in rows]), "status": pa.array([r["status"] for r in rows], pa.string()),
        "line": [r["line"] for r in rows], "machine": [r["machine"] for r in rows]})


def duckdb_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    return sorted((rfc3339(r) for r in con.sql(sql).to_arrow_table().to_pylist()), key=repr)


def rfc3339(row: dict) -> dict:
    out = dict(row)
    if isinstance(out.get("ts"), dt.datetime):
        stamp = out["ts"] if out["ts"].tzinfo else out["ts"].replace(tzinfo=dt.UTC)
        out["ts"] = stamp.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return out


def received(collector: Collector, count: int) -> list[dict]:
    return sorted((orjson.loads(p) for _, p in collector.wait_for(count)), key=repr)


def dead_letters(collector: Collector, count: int) -> dict[bytes, str]:
    return {base64.b64decode(d["payload_b64"]): d["error"] for d in map(orjson.loads, (
        p for _, p in collector.wait_for(count)))}


def service_config(prefix: str, streams: str, subscriptions: str) -> str:
    return f'[engine]\nbatch_max_rows = 500\nbatch_max_delay = "20ms"\n[control]\nprefix = "{prefix}/arros"\n' \
           'status_interval = "200ms"\n' \
           f"{streams}\n{subscriptions}"


def csv_line(row: dict) -> str:
    status = "" if row["status"] is None else '"' + row["status"].replace('"', '""') + '"'
    temp = "" if row["temp"] is None else repr(row["temp"])
    return f"{row['ts']},{temp},{row['rpm']},{str(row['ok']).lower()},{status}"


def test_csv_end_to_end_matches_duckdb_reading_the_same_csv(mosquitto, tmp_path):
    prefix = unique()
    rows = make_rows(2000, seed=21)
    for row in rows[:1000]:
        row["line"], row["machine"] = "l1", "m7"  # mosquitto_pub -l sends them all to one topic
    streams = f"""[streams.tel]
topic = "{prefix}/csv/{{line}}/{{machine}}"
format = "csv"
schema = {{ ts = "timestamp[ms]", temp = "float64", rpm = "int64", ok = "bool", status = "string" }}"""
    subs = f'[subscriptions.hot]\nsql = "{SQL.format(stream="tel")}"\noutput = "{prefix}/out/{{line}}/{{machine}}"'
    bad = [b"1,hot,3,true,x", b"1,2", b'1,2,3,true,"open', b"\xff\xfe"]
    with running_service(service_config(prefix, streams, subs), tmp_path, mosquitto.url) as service:
        out = Collector(mosquitto.port, [f"{prefix}/out/#"])
        dead = Collector(mosquitto.port, [f"{prefix}/arros/deadletter/#"])
        mosquitto_pub_lines(mosquitto.port, f"{prefix}/csv/l1/m7", [csv_line(r).encode() for r in rows[:1000]])
        messages = [(f"{prefix}/csv/{r['line']}/{r['machine']}", csv_line(r).encode()) for r in rows[1000:1500]]
        groups: dict[str, list[str]] = {}
        for row in rows[1500:]:  # several lines per message
            groups.setdefault(f"{prefix}/csv/{row['line']}/{row['machine']}", []).append(csv_line(row))
        messages += [(topic, "\r\n".join(lines).encode()) for topic, lines in groups.items()]
        messages += [(f"{prefix}/csv/l0/m0", payload) for payload in bad]
        publish_all(mosquitto.port, messages)
        (tmp_path / "input.csv").write_text("\n".join(csv_line(r) for r in rows) + "\n")
        con = duckdb.connect()
        csv_table = con.sql(f"SELECT * FROM read_csv('{tmp_path / 'input.csv'}', header = false, quote = '\"', "
                            "columns = {'ts': 'BIGINT', 'temp': 'DOUBLE', 'rpm': 'BIGINT', 'ok': 'BOOLEAN', "
                            "'status': 'VARCHAR'})").to_arrow_table()
        origin = pa.table({"line": [r["line"] for r in rows], "machine": [r["machine"] for r in rows]})
        con.register("raw", pa.Table.from_arrays(csv_table.columns + origin.columns,
                                                 names=csv_table.column_names + origin.column_names))
        con.sql("CREATE VIEW tel AS SELECT epoch_ms(ts) AS ts, * EXCLUDE (ts) FROM raw")
        expected = duckdb_rows(con, SQL.format(stream="tel"))
        got = received(out, len(expected))
        letters = dead_letters(dead, len(bad))
        out.close()
        dead.close()
        assert service.pipeline.stats["tel"].rows == len(rows)
    assert len(expected) > 300 and got == expected
    assert set(letters) == set(bad) and "field 'temp'" in letters[b"1,hot,3,true,x"]


def influx_line(row: dict, measurement: str = "telemetry") -> str:
    tags = f"line={row['line']},machine={row['machine']},site=hall\\ 1"
    fields = [f"rpm={row['rpm']}i", f"ok={'t' if row['ok'] else 'FALSE'}"]
    if row["temp"] is not None:
        fields.insert(0, f"temp={row['temp']!r}")
    if row["status"] is not None:
        fields.append('status="' + row["status"].replace("\\", "\\\\").replace('"', '\\"') + '"')
    return f"{measurement},{tags} {','.join(fields)} {row['ts']}"


def test_influx_line_protocol_end_to_end_matches_duckdb(mosquitto, tmp_path):
    prefix = unique()
    rows = make_rows(2000, seed=22)
    streams = f"""[streams.tg]
topic = "{prefix}/telegraf/{{gateway}}"
format = "influx"
measurement = "telemetry"
precision = "ms"
schema = {{ line = "string", machine = "string", site = "string", temp = "float64", rpm = "int64", ok = "bool", \
status = "string" }}"""
    sql = SQL.format(stream="tg").replace("ts,", "_time AS ts,").replace("status FROM", "status, site FROM")
    subs = f'[subscriptions.hot]\nsql = "{sql}"\noutput = "{prefix}/out/{{line}}/{{machine}}"'
    bad = [b"telemetry,line=l1 temp=hot", b"telemetry temp=1 notatime", b'telemetry,line=l1 status="open']
    with running_service(service_config(prefix, streams, subs), tmp_path, mosquitto.url) as service:
        out = Collector(mosquitto.port, [f"{prefix}/out/#"])
        dead = Collector(mosquitto.port, [f"{prefix}/arros/deadletter/#"])
        mosquitto_pub_lines(mosquitto.port, f"{prefix}/telegraf/gw1", [influx_line(r).encode() for r in rows[:800]])
        batches = []
        for i in range(800, 2000, 40):  # Telegraf-style: many lines per message, other measurements mixed in
            lines = [influx_line(r) for r in rows[i:i + 40]] + [influx_line(rows[i], measurement="other")]
            batches.append((f"{prefix}/telegraf/gw2", "\n".join(["# from telegraf", *lines, ""]).encode()))
        publish_all(mosquitto.port, batches + [(f"{prefix}/telegraf/gw3", p) for p in bad])
        con = duckdb.connect()
        con.register("tg", as_table(rows).append_column("site", pa.array(["hall 1"] * len(rows))))
        expected = duckdb_rows(con, SQL.format(stream="tg").replace("status FROM", "status, site FROM"))
        got = [rfc3339({**r, "ts": dt.datetime.fromisoformat(r["ts"])}) for r in received(out, len(expected))]
        letters = dead_letters(dead, len(bad))
        out.close()
        dead.close()
        assert service.pipeline.stats["tg"].rows == len(rows)
    assert len(expected) > 300 and sorted(got, key=repr) == expected
    assert set(letters) == set(bad) and "field 'temp'" in letters[bad[0]]


def ipc_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_arrow_in_and_arrow_out_read_with_pyarrow(mosquitto, tmp_path):
    prefix = unique()
    rows = make_rows(3000, seed=23)
    streams = f"""[streams.arr]
topic = "{prefix}/arrow/{{line}}/{{machine}}"
format = "arrow"
schema = {{ ts = "timestamp[ms]", temp = "float64", rpm = "int64", ok = "bool", status = "string" }}"""
    subs = f"""[subscriptions.hot]
sql = "{SQL.format(stream="arr")}"
output = "{prefix}/out/{{line}}"
format = "arrow"
batch = true"""
    by_topic: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        by_topic.setdefault((row["line"], row["machine"]), []).append(row)
    messages = []
    for (line, machine), group in by_topic.items():
        for i in range(0, len(group), 25):
            table = as_table(group[i:i + 25]).drop_columns(["line", "machine"])
            messages.append((f"{prefix}/arrow/{line}/{machine}", ipc_stream(table.cast(pa.schema([
                ("ts", pa.timestamp("ms")), ("temp", pa.float64()), ("rpm", pa.int32()), ("ok", pa.bool_()),
                ("status", pa.string())])) if i % 2 else table)))  # rpm as int32: cast to the declared int64
    with running_service(service_config(prefix, streams, subs), tmp_path, mosquitto.url) as service:
        out = Collector(mosquitto.port, [f"{prefix}/out/#"])
        dead = Collector(mosquitto.port, [f"{prefix}/arros/deadletter/#"])
        publish_all(mosquitto.port, [*messages, (f"{prefix}/arrow/l0/m0", b"not arrow")])
        con = duckdb.connect()
        con.register("arr", as_table(rows))
        sql = SQL.format(stream="arr")
        expected = con.sql(sql).to_arrow_table()
        got_tables: list[pa.Table] = []
        for _ in range(100):
            got_tables = [(topic, pa.ipc.open_stream(payload).read_all()) for topic, payload in out.wait_for(1, 1)]
            if sum(t.num_rows for _, t in got_tables) >= expected.num_rows:
                break
        letters = dead.wait_for(1)
        out.close()
        dead.close()
        assert service.pipeline.stats["arr"].deadletters == 1 and len(letters) == 1
    for topic, table in got_tables:
        assert set(table.column("line").to_pylist()) == {topic.rsplit("/", 1)[1]}
        assert table.schema.field("ts").type == pa.timestamp("ms") and table.schema.field("rpm2").type == pa.int64()
    got = pa.concat_tables([t for _, t in got_tables])
    key = [("ts", "ascending"), ("machine", "ascending")]
    assert expected.num_rows > 300 and got.num_rows == expected.num_rows
    assert got.sort_by(key).to_pylist() == expected.cast(got.schema).sort_by(key).to_pylist()


def test_schema_inferred_from_the_first_batch_end_to_end(mosquitto, tmp_path):
    prefix = unique()
    streams = (f'[archive]\ndir = "{tmp_path}/archive"\n'
               f'[streams.auto]\ntopic = "{prefix}/auto/{{machine}}"\narchive = true')
    subs = f"""[subscriptions.hot]
sql = "SELECT machine, temp, label FROM auto WHERE temp > 50"
output = "{prefix}/out/{{machine}}"
[subscriptions.typo]
sql = "SELECT machine, tmp FROM auto"
output = "{prefix}/typo" """
    first = [{"temp": 40, "label": "a"}, {"temp": 60, "label": "b"}]
    later = [{"temp": 70.5, "label": "c", "extra": 1}, {"temp": 55, "extra": 2, "more": "x"}, {"temp": "hot"},
             {"temp": 10}]
    with running_service(service_config(prefix, streams, subs), tmp_path, mosquitto.url) as service:
        assert list(service.engine.pending) == ["hot", "typo"]
        op = Operator(mosquitto.port, f"{prefix}/arros", topics=(f"{prefix}/arros/status/hot",))
        early = op.request({"op": "create", "name": "early", "sql": "SELECT temp FROM auto", "output": "x"})
        out = Collector(mosquitto.port, [f"{prefix}/out/#"])
        dead = Collector(mosquitto.port, [f"{prefix}/arros/deadletter/#"])
        publish_all(mosquitto.port, [(f"{prefix}/auto/m1", orjson.dumps(p)) for p in first])
        out.wait_for(1)
        publish_all(mosquitto.port, [(f"{prefix}/auto/m2", orjson.dumps(p)) for p in later])
        con = duckdb.connect()
        con.register("auto", pa.Table.from_pylist([{"machine": "m1", **r} for r in first] + [
            {"machine": "m2", "temp": r["temp"], "label": r.get("label")} for r in later if r["temp"] != "hot"],
            schema=pa.schema([("machine", pa.string()), ("temp", pa.float64()), ("label", pa.string())])))
        expected = sorted(con.sql("SELECT machine, temp, label FROM auto WHERE temp > 50").to_arrow_table()
                          .to_pylist(), key=repr)
        got = received(out, len(expected))
        letters = dead.wait_for(1)
        described = op.request({"op": "describe", "name": "hot"})["result"]
        status = {}
        for _ in range(50):  # statuses come every 200 ms: one after the extra fields were counted
            statuses = [orjson.loads(p) for t, p, _ in list(op.messages) if t.endswith("/status/hot")]
            status = statuses[-1] if statuses else {}
            if status.get("stream_extra_fields"):
                break
            time.sleep(0.1)
        op.close()
        out.close()
        dead.close()
        stats = service.pipeline.stats["auto"]
        engine = service.engine
    assert not early["ok"] and "has no schema yet" in early["error"]["message"]
    assert described["stream"] == {
        "name": "auto", "format": "json", "schema": "inferred", "extra_fields": {"extra": 2, "more": 1},
        "columns": {"temp": "double", "label": "string", "machine": "string", "_topic": "string",
                    "_received_at": "timestamp[ms, tz=UTC]"}}
    assert status["stream_extra_fields"] == {"extra": 2, "more": 1}
    assert got == expected and len(expected) == 3
    assert len(letters) == 1 and "'temp'" in orjson.loads(letters[0][1])["error"]
    assert stats.extra_fields == {"extra": 2, "more": 1}
    assert engine.streams["auto"].schema.names == ["temp", "label"] and "tmp" in engine.rejected["typo"]
    archived = duckdb.sql(f"SELECT machine, temp, label FROM '{tmp_path}/archive/streams/auto/**/*.parquet'")
    assert sorted(archived.to_arrow_table().to_pylist(), key=repr) == sorted(
        con.sql("SELECT machine, temp, label FROM auto").to_arrow_table().to_pylist(), key=repr)


def test_csv_with_header_from_mosquitto_pub_one_message_per_file(mosquitto, tmp_path):
    """A CSV logger sending whole files: `mosquitto_pub -s` publishes stdin as one message."""
    prefix = unique()
    streams = f'[streams.logger]\ntopic = "{prefix}/logger/{{device}}"\nformat = "csv"\nheader = true'
    subs = f'[subscriptions.all]\nsql = "SELECT device, ts, v, note FROM logger"\noutput = "{prefix}/out"'
    files = ["ts,v,note\n2025-01-01T00:00:00Z,1,a\n2025-01-01T00:00:01Z,2.5,\"b, c\"\n",
             "note,v,ts\nd,3,2025-01-01T00:00:02Z\n"]
    with running_service(service_config(prefix, streams, subs), tmp_path, mosquitto.url):
        out = Collector(mosquitto.port, [f"{prefix}/out"])
        for text in files:
            subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(mosquitto.port), "-t", f"{prefix}/logger/d9",
                            "-q", "1", "-s"], input=text.encode(), check=True, timeout=30)
            out.wait_for(len(out.messages) + 1, timeout=10)
        got = [orjson.loads(p) for _, p in out.wait_for(3)]
        out.close()
    assert got == [
        {"device": "d9", "ts": "2025-01-01T00:00:00.000000Z", "v": 1.0, "note": "a"},  # inferred: timestamp[us]
        {"device": "d9", "ts": "2025-01-01T00:00:01.000000Z", "v": 2.5, "note": "b, c"},
        {"device": "d9", "ts": "2025-01-01T00:00:02.000000Z", "v": 3.0, "note": "d"},
    ]
