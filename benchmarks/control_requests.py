"""Control-topic request latency and a flood of creates, against a live service on a real Mosquitto.

Measures (1) the round trip of sequential MQTT 5 requests (`list`, and `create` + `drop` of a
per-row subscription) from publish to reply, and (2) how long N pipelined creates take to be all
answered when `max_subscriptions` stops all but a few, while telemetry keeps flowing through a
config-file subscription (its result count is checked: the flood must not lose a row).

    .venv/bin/python benchmarks/control_requests.py [--requests 300] [--flood 10000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.config import parse_config  # noqa: E402
from arros_mqtt.service.runtime import Service  # noqa: E402
from arros_mqtt.testing import HOST, start_mosquitto  # noqa: E402
from arros_mqtt.transport.paho_client import send_at_once  # noqa: E402


class Requester:
    def __init__(self, port: int) -> None:
        self.topic = f"arros/control/replies/bench-{uuid.uuid4().hex[:8]}"
        self.replies: dict[bytes, float] = {}
        self.cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        send_at_once(self.client)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(HOST, port)
        self.client.subscribe(self.topic, qos=1)
        self.client.loop_start()
        subscribed.wait(10)

    def _on_message(self, _client, _userdata, message) -> None:
        with self.cond:
            self.replies[message.properties.CorrelationData] = time.perf_counter()
            self.cond.notify_all()

    def send(self, body: dict, correlation: bytes) -> mqtt.MQTTMessageInfo:
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = self.topic
        properties.CorrelationData = correlation
        return self.client.publish("arros/control", orjson.dumps(body), qos=1, properties=properties)

    def round_trip(self, body: dict) -> float:
        correlation = uuid.uuid4().bytes
        start = time.perf_counter()
        self.send(body, correlation)
        with self.cond:
            self.cond.wait_for(lambda: correlation in self.replies, timeout=30)
        return self.replies[correlation] - start

    def wait_for(self, count: int, timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(lambda: len(self.replies) >= count, timeout=timeout)


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"p50_ms": round(statistics.median(values) * 1000, 2),
            "p99_ms": round(values[int(len(values) * 0.99) - 1] * 1000, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--flood", type=int, default=10_000)
    parser.add_argument("--telemetry-rows", type=int, default=20_000, help="published during the flood")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--broker-extra", default="", help="extra mosquitto.conf lines, e.g. \"set_tcp_nodelay true\"")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        broker = start_mosquitto(Path(directory), extra=args.broker_extra)
        config = parse_config({
            "broker": {"url": broker.url, "client_id": "arros-bench-control"},
            "engine": {"state_dir": f"{directory}/state"},
            "control": {"max_subscriptions": 20},
            "streams": {"t": {"topic": "bench/{machine}", "schema": {"v": "int64"}}},
            "subscriptions": {"all": {"sql": "SELECT machine, v FROM t", "output": "bench-out/{machine}",
                                      "qos": 0}},
        })
        service = Service(config)
        service.start()
        try:
            requester = Requester(broker.port)
            lists = [requester.round_trip({"op": "list"}) for _ in range(args.requests)]
            churn = []
            for i in range(args.requests // 2):
                sql = {"op": "create", "name": f"c{i}", "sql": "SELECT v FROM t WHERE v > 5", "output": "x"}
                churn.append(requester.round_trip(sql))
                churn.append(requester.round_trip({"op": "drop", "name": f"c{i}"}))

            telemetry = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
            telemetry.connect(HOST, broker.port)
            telemetry.loop_start()
            rows = args.telemetry_rows
            before = len(requester.replies)
            start = time.perf_counter()
            sender = threading.Thread(target=lambda: [telemetry.publish(f"bench/m{i % 10}", b'{"v": %d}' % i, qos=0)
                                                      for i in range(rows)])
            sender.start()
            for i in range(args.flood):
                requester.send({"op": "create", "name": f"f{i}", "sql": "SELECT v FROM t", "output": "y"},
                               i.to_bytes(4, "big"))
            requester.wait_for(before + args.flood, timeout=300)
            flood_seconds = time.perf_counter() - start
            sender.join()
            deadline = time.monotonic() + 30
            while service.engine.subscriptions["all"].stats.rows_out < rows and time.monotonic() < deadline:
                time.sleep(0.05)
            result = {
                "list": percentiles(lists),
                "create_or_drop": percentiles(churn),
                "flood": {"requests": args.flood, "answered": len(requester.replies) - before,
                          "seconds": round(flood_seconds, 2),
                          "requests_per_s": round(args.flood / flood_seconds),
                          "telemetry_rows_sent_meanwhile": rows,
                          "telemetry_rows_out": service.engine.subscriptions["all"].stats.rows_out},
            }
            telemetry.disconnect()
            telemetry.loop_stop()
        finally:
            service.stop()
            broker.stop()
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
