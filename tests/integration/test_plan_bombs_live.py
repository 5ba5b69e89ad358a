"""Plan-time bombs against a running service, both modes (issue 20 item 2): `explain` of a query with a huge
constant used to hold the engine ~16 s, take 2.3 GB and send no reply (the reply exceeded the MQTT
maximum). Now each request gets its one reply, bounded in size, the process's RSS stays bounded, and a
parallel stream's rows all come through."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt

from arros_mqtt.control.protocol import MAX_REPLY_BYTES
from tests.control_support import Operator, control_config
from tests.support import unique

BOMBS = [
    ("explain", "SELECT machine, repeat('a', 300000000) AS s FROM telemetry", True),
    ("explain", "SELECT machine, range(1, 20000000) AS r FROM telemetry", True),
    ("explain", "SELECT machine, repeat('ab', 400000) AS s, repeat('ba', 400000) AS t FROM telemetry", True),
    ("explain", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10000000) "
                "SELECT machine, (SELECT max(n) FROM r) AS n FROM telemetry", False),
    ("create", "SELECT machine, unnest(range(0, rpm * 5000000)) AS i FROM telemetry", True),
]


def vm_rss_mb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def request(op: Operator, body: dict, request_id: str) -> None:
    op.send({**body, "request_id": request_id, "reply_to": op.reply_topic})


def reply_for(op: Operator, request_id: str, timeout: float = 30.0) -> tuple[bytes, list[bytes]]:
    def ours(message) -> bool:
        try:
            return orjson.loads(message[1]).get("request_id") == request_id
        except orjson.JSONDecodeError:
            return False
    _, payload = op.wait(ours, timeout)
    return payload, [m[1] for m in op.messages if ours(m)]


def test_plan_bombs_each_get_one_bounded_reply_and_other_streams_go_on(broker, tmp_path):
    prefix = unique()
    text = control_config(prefix, tmp_path / "state")
    with broker.service(text, tmp_path):
        op = Operator(broker.port, f"{prefix}/arros", protocol=broker.protocol)
        base = broker.collector([f"{prefix}/base/#"])
        dead = broker.collector([f"{prefix}/arros/deadletter/#"])
        rss_before = vm_rss_mb()
        sent = threading.Event()

        def telemetry() -> None:  # a parallel good stream while the bombs are planned
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=broker.protocol)
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            for i in range(200):
                body = orjson.dumps({"ts": 1_764_000_000_000 + i, "temp": float(i), "rpm": 1000})
                client.publish(f"{prefix}/factory/l1/m{i % 4}/telemetry", body, qos=1).wait_for_publish(10)
                time.sleep(0.005)
            client.disconnect()
            client.loop_stop()
            sent.set()

        publisher = threading.Thread(target=telemetry)
        publisher.start()
        for i, (kind, sql, ok) in enumerate(BOMBS):
            body = {"op": "explain", "sql": sql} if kind == "explain" else \
                {"op": "create", "name": "bomb", "sql": sql, "output": f"{prefix}/bomb/{{machine}}"}
            request(op, body, f"b{i}")
            payload, replies = reply_for(op, f"b{i}")
            assert len(replies) == 1 and len(payload) <= MAX_REPLY_BYTES
            reply = orjson.loads(payload)
            assert reply["ok"] is ok, (sql, reply)
            if kind == "explain" and ok:
                assert len(reply["result"]["logical_plan"]) < MAX_REPLY_BYTES
            if not ok:
                assert "recursive CTEs" in reply["error"]["message"]
        publisher.join(60)
        assert sent.is_set()
        assert len(base.wait_for(200)) == 200, "rows lost on the parallel stream"
        # the bomb subscription: every row dead-lettered with the reason, none published
        letters = dead.wait_for(1)
        reasons = [orjson.loads(p).get("error", "") for _, p in letters]
        assert sum("range() would build a list of" in r for r in reasons) >= 1
        assert vm_rss_mb() - rss_before < 400  # one repeat('a', 300000000) plan took 2.3 GB
        base.close()
        dead.close()
        op.close()
