"""Hostile control requests: each gets exactly one clear reply and the service keeps running,
processing telemetry as before."""

from __future__ import annotations

import random
import time
import uuid

import msgpack
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.control_support import Operator, control_config
from tests.support import Collector, publish_all, running_service, unique

OUT = "x/out"
SELECT = "SELECT machine, temp FROM telemetry"


def create(name: str = "ok_name", **overrides) -> dict:
    return {"op": "create", "name": name, "sql": SELECT, "output": OUT, **overrides}


def hostile_requests() -> list[tuple[bytes, str]]:
    """(payload, expected error code)."""
    rng = random.Random(5)
    cases: list[tuple[object, str]] = [
        (b"x" * (1024 * 1024), "invalid_request"),  # 1 MiB
        (b"{" + b" " * 70_000 + b"}", "invalid_request"),  # over 64 KiB of whitespace
        (bytes(rng.randrange(256) for _ in range(300)), "invalid_request"),
        (b"\xc1\xc1\xc1", "invalid_request"),  # bytes msgpack never uses
        (b"\x00", "invalid_request"),
        (b"", "invalid_request"),
        (b"{\"op\": \"create\"", "invalid_request"),  # truncated JSON
        (b"[" * 5000 + b"]" * 5000, "invalid_request"),  # deeper than any parser recursion limit
        (b"\"create\"", "invalid_request"),
        (b"null", "invalid_request"),
        (b"12", "invalid_request"),
        (msgpack.packb({1: "create"}), "invalid_request"),  # non-string keys
        (msgpack.packb([1, 2, 3]), "invalid_request"),
        ({"op": 5}, "invalid_request"),
        ({"op": ["create"]}, "invalid_request"),
        ({"op": "CREATE", "name": "a"}, "invalid_request"),
        ({"op": "create", "name": ["x"], "sql": SELECT, "output": OUT}, "invalid_request"),
        (create("a/b"), "invalid_request"),
        (create("a+b"), "invalid_request"),
        (create("n" * 65), "invalid_request"),
        (create("1abc"), "invalid_request"),
        (create(sql=5), "invalid_request"),
        (create(sql=""), "invalid_request"),
        (create(sql="SELECT machine FROM telemetry WHERE machine = '\x00'"), "invalid_request"),
        (create(qos=3), "invalid_request"),
        (create(qos="1"), "invalid_request"),
        (create(qos=True), "invalid_request"),
        (create(retain="yes"), "invalid_request"),
        (create(output="x/#"), "invalid_request"),
        (create(output="x/{nope}"), "invalid_sql"),  # a column the query does not return
        (create(format="yaml"), "invalid_request"),
        (create(extra=1), "invalid_request"),
        (create(request_id={"a": 1}), "invalid_request"),
        (create(reply_to="replies/#"), "invalid_request"),
        (create(sql="COPY (SELECT * FROM telemetry) TO '/tmp/arros-pwned.csv'"), "forbidden"),
        (create(sql="CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'"), "forbidden"),
        (create(sql="CREATE TABLE t2 AS SELECT * FROM telemetry"), "forbidden"),
        (create(sql="DROP TABLE machines"), "forbidden"),
        (create(sql="INSERT INTO machines VALUES ('m9', 'x', 1)"), "forbidden"),
        (create(sql="SET datafusion.execution.batch_size = 1"), "forbidden"),
        (create(sql="EXPLAIN SELECT * FROM telemetry"), "forbidden"),
        (create(sql="SELECT * FROM '/etc/passwd'"), "invalid_sql"),
        (create(sql="SELECT * FROM read_csv('/etc/passwd')"), "invalid_sql"),
        (create(sql="SELECT * FROM read_parquet('/tmp/x.parquet')"), "invalid_sql"),
        (create(sql=f"{SELECT}; DROP TABLE machines"), "invalid_sql"),
        (create(sql="SELECT * FROM machines"), "unknown_stream"),
        ({"op": "explain", "sql": "COPY telemetry TO '/tmp/x.csv'"}, "forbidden"),
        ({"op": "explain", "name": "base", "sql": SELECT}, "invalid_request"),
        ({"op": "replace", "name": "base", "sql": "DROP TABLE machines", "output": OUT}, "forbidden"),
    ]
    return [(case if isinstance(case, bytes) else orjson.dumps(case), code) for case, code in cases]


def test_hostile_requests_each_get_one_reply(mosquitto, tmp_path):
    prefix = unique()
    with running_service(control_config(prefix, tmp_path / "state"), tmp_path, mosquitto.url) as service:
        op = Operator(mosquitto.port, f"{prefix}/arros")
        sent = []
        for payload, code in hostile_requests():
            correlation = uuid.uuid4().bytes
            op.send(payload, correlation=correlation, response_topic=op.reply_topic)
            sent.append((correlation, code, payload[:80]))
        for correlation, code, what in sent:
            _, reply = op.wait(lambda m, c=correlation: m[2] == c)
            body = orjson.loads(reply)
            assert body["ok"] is False and body["error"]["code"] == code, (what, body)
            assert 0 < len(body["error"]["message"]) <= 600
        time.sleep(0.5)
        by_correlation = [m[2] for m in op.messages]
        assert all(by_correlation.count(c) == 1 for c, _, _ in sent), "exactly one reply per request"
        assert set(service.engine.subscriptions) == {"base"}
        # Still serving: a msgpack request works, and telemetry flows.
        reply = op.request(msgpack.packb({"op": "list", "request_id": "after"}))
        assert reply["ok"] and [s["name"] for s in reply["result"]["subscriptions"]] == ["base"]
        base = Collector(mosquitto.port, [f"{prefix}/base/#"])
        publish_all(mosquitto.port, [(f"{prefix}/factory/l1/m1/telemetry", orjson.dumps({"temp": i}))
                                     for i in range(50)])
        assert len(base.wait_for(50)) == 50
        base.close()
        op.close()


def test_ten_thousand_creates_are_bounded_by_the_limit(mosquitto, tmp_path):
    prefix = unique()
    text = control_config(prefix, tmp_path / "state", extra_control="max_subscriptions = 20")
    n = 10_000
    with running_service(text, tmp_path, mosquitto.url) as service:
        op = Operator(mosquitto.port, f"{prefix}/arros")
        infos = []
        for i in range(n):
            properties = Properties(PacketTypes.PUBLISH)
            properties.ResponseTopic = op.reply_topic
            properties.CorrelationData = i.to_bytes(4, "big")
            body = orjson.dumps({"op": "create", "name": f"s{i}", "sql": SELECT, "output": f"{prefix}/s/{i}"})
            infos.append(op.client.publish(f"{prefix}/arros/control", body, qos=1, properties=properties))
        for info in infos:
            info.wait_for_publish(60)
        deadline = time.monotonic() + 90
        while len(op.messages) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        replies = [orjson.loads(p) for _, p, _ in op.messages]
        assert len(replies) == n and len({c for _, _, c in op.messages}) == n
        codes = [r["error"]["code"] if not r["ok"] else "ok" for r in replies]
        assert codes.count("ok") == 19 and codes.count("limit_exceeded") == n - 19
        assert len(service.engine.subscriptions) == 20
        assert op.request({"op": "drop", "name": "s0"})["ok"]
        assert op.request(create("after_drop"))["ok"]
        op.close()
