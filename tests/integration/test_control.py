"""The control topic on a real Mosquitto: every op, every error code, reply routing, the retained
catalogue, statuses, limits and persistence across a restart. Results of run-time subscriptions
are checked against DuckDB running the same SQL over the same rows."""

from __future__ import annotations

import random
import time

import duckdb
import orjson
import paho.mqtt.client as mqtt
import pyarrow as pa

from tests.control_support import Operator, control_config
from tests.support import ROOT, Collector, publish_all, running_service, unique

HOT_SQL = ("SELECT t.machine, m.model, t.temp FROM telemetry t JOIN machines m USING (machine) "
           "WHERE t.temp > m.max_temp")


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"line": f"l{rng.randrange(2)}", "machine": f"m{rng.randrange(1, 5)}", "ts": 1_764_000_000_000 + i,
             "temp": round(rng.uniform(60, 100), 2), "rpm": rng.randrange(1000)} for i in range(n)]


def publish_rows(port: int, prefix: str, rows: list[dict]) -> None:
    publish_all(port, [(f"{prefix}/factory/{r['line']}/{r['machine']}/telemetry",
                        orjson.dumps({k: r[k] for k in ("ts", "temp", "rpm")})) for r in rows])


def duckdb_rows(rows: list[dict], sql: str) -> list[dict]:
    con = duckdb.connect()
    con.register("telemetry", pa.Table.from_pylist(rows))
    con.execute(f"CREATE TABLE machines AS SELECT * FROM read_csv_auto('{ROOT}/examples/factory/machines.csv')")
    return sorted(con.sql(sql).to_arrow_table().to_pylist(), key=repr)


def payloads(collector: Collector, count: int) -> list[dict]:
    return sorted((orjson.loads(p) for _, p in collector.wait_for(count)), key=repr)


def retained(port: int, topic: str) -> list[tuple[bytes, bool]]:
    """What a new subscriber gets for `topic` right after subscribing (retained messages)."""
    collector = Collector(port, [topic])
    time.sleep(0.5)
    collector.close()
    return [(payload, True) for _, payload in collector.messages]


def test_every_op_end_to_end(mosquitto, tmp_path):
    prefix = unique()
    control = f"{prefix}/arros"
    rows = [make_rows(300, seed) for seed in range(4)]
    with running_service(control_config(prefix, tmp_path / "state"), tmp_path, mosquitto.url) as service:
        op = Operator(mosquitto.port, control, topics=(f"{control}/status/#", f"{control}/catalog/#"))
        base = Collector(mosquitto.port, [f"{prefix}/base/#"])
        hot = Collector(mosquitto.port, [f"{prefix}/hot/#"])
        hot2 = Collector(mosquitto.port, [f"{prefix}/hot2/#"])

        reply = op.request({"op": "create", "name": "hot", "sql": HOT_SQL, "output": f"{prefix}/hot/{{machine}}",
                            "request_id": "r-1"})
        assert reply["ok"] and reply["request_id"] == "r-1"
        entry = reply["result"]
        assert entry["origin"] == "control" and entry["kind"] == "per_row" and entry["stream"] == "telemetry"
        assert entry["tables"] == ["machines"]
        assert [c["name"] for c in entry["columns"]] == ["machine", "model", "temp"]
        stored = retained(mosquitto.port, f"{control}/catalog/hot")
        assert len(stored) == 1 and orjson.loads(stored[0][0]) == entry

        # Created at run time: runs from the next micro-batch, next to the config-file one.
        publish_rows(mosquitto.port, prefix, rows[0])
        expected = duckdb_rows(rows[0], HOT_SQL)
        assert payloads(hot, len(expected)) == expected
        assert len(base.wait_for(300)) == 300

        # Paused: skips micro-batches; the others still get every row.
        reply = op.request({"op": "pause", "name": "hot"})
        assert reply["result"]["paused"] and reply["result"]["paused_reason"] == "paused by request"
        publish_rows(mosquitto.port, prefix, rows[1])
        assert len(base.wait_for(600)) == 600
        assert len(hot.messages) == len(expected)

        reply = op.request({"op": "resume", "name": "hot"})
        assert reply["ok"] and not reply["result"]["paused"]
        publish_rows(mosquitto.port, prefix, rows[2])
        expected += duckdb_rows(rows[2], HOT_SQL)
        assert payloads(hot, len(expected)) == sorted(expected, key=repr)

        # Replaced: the new definition takes over in one step.
        sql2 = "SELECT machine, rpm FROM telemetry WHERE rpm < 100"
        reply = op.request({"op": "replace", "name": "hot", "sql": sql2, "output": f"{prefix}/hot2/{{machine}}"})
        assert reply["ok"] and reply["result"]["sql"] == sql2 and reply["result"]["tables"] == []
        publish_rows(mosquitto.port, prefix, rows[3])
        expected2 = duckdb_rows(rows[3], sql2)
        assert payloads(hot2, len(expected2)) == expected2
        assert len(base.wait_for(1200)) == 1200
        assert len(hot.messages) == len(expected)

        listed = op.request({"op": "list"})["result"]["subscriptions"]
        assert [(s["name"], s["origin"], s["paused"]) for s in listed] == [("base", "config", False),
                                                                         ("hot", "control", False)]
        described = op.request({"op": "describe", "name": "hot"})["result"]
        assert described["sql"] == sql2 and described["status"]["rows_in"] == 300
        assert described["status"]["rows_out"] == len(expected2) and described["status"]["last_emit"].endswith("Z")

        explained = op.request({"op": "explain", "name": "hot"})["result"]
        assert explained["kind"] == "per_row" and explained["state"].startswith("none")
        assert "Filter" in explained["logical_plan"] and "FilterExec" in explained["physical_plan"]
        explained = op.request({"op": "explain", "sql": HOT_SQL})["result"]
        assert explained["name"] is None and "Join" in explained["logical_plan"]
        assert "explain" not in service.engine.subscriptions

        # Statuses arrive periodically with the counters.
        status_topic = f"{control}/status/hot"
        op.wait(lambda m: m[0] == status_topic and orjson.loads(m[1])["rows_in"] == 300, timeout=10)
        status = orjson.loads(op.on_topic(status_topic)[-1])
        assert status["origin"] == "control" and status["state_bytes"] == 0 and status["late_rows"] == 0

        reply = op.request({"op": "drop", "name": "hot"})
        assert reply["result"] == {"name": "hot", "dropped": True}
        op.wait(lambda m: m[0] == f"{control}/catalog/hot" and m[1] == b"")
        assert retained(mosquitto.port, f"{control}/catalog/hot") == []
        assert retained(mosquitto.port, f"{control}/catalog/base") != []
        assert "hot" not in service.engine.subscriptions
        for collector in (op, base, hot, hot2):
            collector.close()


def test_error_codes(mosquitto, tmp_path):
    prefix = unique()
    text = control_config(prefix, tmp_path / "state", extra_control="max_subscriptions = 3")
    with running_service(text, tmp_path, mosquitto.url):
        op = Operator(mosquitto.port, f"{prefix}/arros")
        out = f"{prefix}/x"

        def code(body: dict) -> str:
            reply = op.request(body)
            assert not reply["ok"] and reply["error"]["message"], reply
            return reply["error"]["code"]

        assert op.request({"op": "create", "name": "a", "sql": "SELECT * FROM telemetry", "output": out})["ok"]
        assert code({"name": "a"}) == "invalid_request"
        assert code({"op": "create", "name": "b", "sql": "SELECT * FROM telemetry"}) == "invalid_request"  # output
        assert code({"op": "create", "name": "b", "sql": "SELEC * FROM telemetry", "output": out}) == "invalid_sql"
        assert code({"op": "create", "name": "b", "sql": "SELECT nope FROM telemetry", "output": out}) == "invalid_sql"
        assert code({"op": "create", "name": "b", "sql": "SELECT 1 AS x", "output": out}) == "unknown_stream"
        assert code({"op": "create", "name": "a", "sql": "SELECT * FROM telemetry", "output": out}) == "exists"
        assert code({"op": "create", "name": "base", "sql": "SELECT * FROM telemetry", "output": out}) == "exists"
        assert code({"op": "drop", "name": "nope"}) == "not_found"
        assert code({"op": "describe", "name": "nope"}) == "not_found"
        assert code({"op": "replace", "name": "nope", "sql": "SELECT * FROM telemetry", "output": out}) == "not_found"
        assert code({"op": "drop", "name": "base"}) == "forbidden"
        assert code({"op": "replace", "name": "base", "sql": "SELECT * FROM telemetry", "output": out}) == "forbidden"
        assert code({"op": "create", "name": "b", "sql": "COPY telemetry TO '/tmp/x.csv'", "output": out}) == \
            "forbidden"
        assert op.request({"op": "create", "name": "b", "sql": "SELECT * FROM telemetry", "output": out})["ok"]
        reply = op.request({"op": "create", "name": "c", "sql": "SELECT * FROM telemetry", "output": out})
        assert reply["error"]["code"] == "limit_exceeded" and "max_subscriptions = 3" in reply["error"]["message"]
        # Config-file subscriptions may be paused and resumed over MQTT (not persisted).
        assert op.request({"op": "pause", "name": "base"})["result"]["paused"]
        assert not op.request({"op": "resume", "name": "base"})["result"]["paused"]
        op.close()


def test_reply_routing(mosquitto, tmp_path):
    """Response Topic + Correlation Data (MQTT 5), else reply_to (3.1.1 too), else {prefix}/control/replies."""
    prefix = unique()
    control = f"{prefix}/arros"
    with running_service(control_config(prefix, tmp_path / "state"), tmp_path, mosquitto.url):
        v5 = Operator(mosquitto.port, control)
        v311 = Operator(mosquitto.port, control, protocol=mqtt.MQTTv311, topics=(f"{prefix}/ops/#",))
        default = f"{control}/control/replies"

        v311.send({"op": "list", "request_id": 7, "reply_to": f"{prefix}/ops/console-1"})
        topic, payload = v311.wait(lambda m: m[0] == f"{prefix}/ops/console-1")
        assert orjson.loads(payload)["request_id"] == 7 and orjson.loads(payload)["ok"]

        v311.send({"op": "describe", "name": "base", "request_id": "no-reply-to"})
        _, payload = v311.wait(lambda m: m[0] == default and orjson.loads(m[1])["request_id"] == "no-reply-to")
        assert orjson.loads(payload)["result"]["name"] == "base"

        # Response Topic wins over reply_to; the Correlation Data comes back unchanged (binary too).
        correlation = bytes(range(256))
        v5.send({"op": "list", "reply_to": f"{prefix}/ops/elsewhere"}, correlation=correlation,
                response_topic=v5.reply_topic)
        topic, payload = v5.wait(lambda m: m[2] == correlation)
        assert topic == v5.reply_topic and orjson.loads(payload)["ok"]

        # A malformed request is answered too, to where it asked when that much could be read.
        v5.send(b"\x00\x01 not a request", correlation=b"bad-1", response_topic=v5.reply_topic)
        topic, payload = v5.wait(lambda m: m[2] == b"bad-1")
        assert topic == v5.reply_topic and orjson.loads(payload)["error"]["code"] == "invalid_request"
        v311.send({"op": "nope", "request_id": "r-9", "reply_to": f"{prefix}/ops/console-1"})
        _, payload = v311.wait(lambda m: m[0] == f"{prefix}/ops/console-1" and b"r-9" in m[1])
        assert orjson.loads(payload)["error"]["code"] == "invalid_request"

        # Never a reply onto the control topic itself (it would be read as a request).
        v5.send({"op": "list", "request_id": "loop"}, correlation=b"loop", response_topic=f"{control}/control")
        topic, _ = v5.wait(lambda m: m[2] == b"loop")
        assert topic == default
        v5.close()
        v311.close()


def test_run_time_subscriptions_survive_a_restart(mosquitto, tmp_path):
    prefix = unique()
    state = tmp_path / "state"
    text = control_config(prefix, state)
    rows = make_rows(400, seed=9)
    with running_service(text, tmp_path, mosquitto.url):
        op = Operator(mosquitto.port, f"{prefix}/arros")
        assert op.request({"op": "create", "name": "hot", "sql": HOT_SQL, "output": f"{prefix}/hot/{{machine}}",
                           "format": "json", "qos": 0})["ok"]
        assert op.request({"op": "create", "name": "quiet", "sql": "SELECT * FROM telemetry",
                           "output": f"{prefix}/quiet"})["ok"]
        assert op.request({"op": "pause", "name": "quiet"})["ok"]
        assert op.request({"op": "create", "name": "gone", "sql": "SELECT * FROM telemetry",
                           "output": f"{prefix}/gone"})["ok"]
        assert op.request({"op": "drop", "name": "gone"})["ok"]
        op.close()
    stored = orjson.loads((state / "subscriptions.json").read_bytes())
    assert [s["name"] for s in stored["subscriptions"]] == ["hot", "quiet"]
    assert [p.name for p in state.iterdir() if "subscriptions.json" in p.name] == ["subscriptions.json"]  # no temp

    with running_service(text, tmp_path, mosquitto.url) as service:
        op = Operator(mosquitto.port, f"{prefix}/arros")
        listed = op.request({"op": "list"})["result"]["subscriptions"]
        assert [(s["name"], s["origin"], s["paused"]) for s in listed] == [
            ("base", "config", False), ("hot", "control", False), ("quiet", "control", True)]
        hot = Collector(mosquitto.port, [f"{prefix}/hot/#"])
        quiet = Collector(mosquitto.port, [f"{prefix}/quiet"])
        publish_rows(mosquitto.port, prefix, rows)
        expected = duckdb_rows(rows, HOT_SQL)
        assert payloads(hot, len(expected)) == expected
        assert quiet.messages == [] and service.engine.subscriptions["hot"].config.qos == 0
        described = op.request({"op": "describe", "name": "hot"})["result"]
        assert described["created_at"] == stored["subscriptions"][0]["created_at"]
        for collector in (op, hot, quiet):
            collector.close()


def test_output_rate_limit_pauses_only_the_flooding_subscription(mosquitto, tmp_path):
    prefix = unique()
    control = f"{prefix}/arros"
    text = control_config(prefix, tmp_path / "state", extra_control="max_output_rate = 100",
                          base_sql="SELECT machine, temp FROM telemetry WHERE temp > 99")
    rows = make_rows(1000, seed=3)
    with running_service(text, tmp_path, mosquitto.url) as service:
        op = Operator(mosquitto.port, control, topics=(f"{control}/status/#",))
        assert op.request({"op": "create", "name": "flood", "sql": "SELECT machine, temp FROM telemetry",
                           "output": f"{prefix}/flood/{{machine}}"})["ok"]
        base = Collector(mosquitto.port, [f"{prefix}/base/#"])
        publish_rows(mosquitto.port, prefix, rows)
        expected_base = duckdb_rows(rows, "SELECT machine, temp FROM telemetry WHERE temp > 99")
        assert payloads(base, len(expected_base)) == expected_base
        _, payload = op.wait(lambda m: m[0] == f"{control}/status/flood" and orjson.loads(m[1])["paused"])
        status = orjson.loads(payload)
        assert "output rate limit" in status["paused_reason"] and "max_output_rate = 100" in status["paused_reason"]
        assert status["messages_out"] <= 100 and service.engine.subscriptions["flood"].stats.rows_out > 100
        assert "base" not in service.engine.paused
        # Resuming starts a fresh one-second window.
        assert not op.request({"op": "resume", "name": "flood"})["result"]["paused"]
        for collector in (op, base):
            collector.close()
