"""A device fleet in one process: QoS 1 JSON telemetry at a steady rate, for fault tests.

Row i (0-based) is machine `m{i % machines}`, `seq` = i, event time `ts` = start + i / rate seconds,
`temp` = (i * 7919 % 1000) / 10, published to `{prefix}/{machine}/telemetry`; so a test recomputes the
input from `--count`, `--rate`, `--machines` and the start time printed first. A last row on machine
`zz` with `ts` a minute later (seq -1) closes every window. The client keeps a persistent session and
resends what the broker did not acknowledge (also across a broker restart); it exits once the broker
acknowledged everything.

    python -m tests.peers.telemetry_publisher --port 1883 --prefix t1 --count 20000 --rate 5000
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MAX_OUTSTANDING = 20_000  # published, not yet acknowledged (also while the broker is down)


def row(i: int, start_ms: int, rate: int, machines: int) -> tuple[str, dict]:
    return f"m{i % machines}", {"ts": start_ms + i * 1000 // rate, "seq": i, "temp": (i * 7919 % 1000) / 10}


def parse_args() -> tuple[argparse.Namespace, int]:
    """The command line of both publishers, and the event time of row 0 (printed for the test)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=int, required=True, help="messages per second")
    parser.add_argument("--machines", type=int, default=10)
    parser.add_argument("--start-ms", type=int, default=0, help="event time of row 0 (default: now)")
    args = parser.parse_args()
    start_ms = args.start_ms or time.time_ns() // 1_000_000
    print(f"start_ms {start_ms}", flush=True)
    return args, start_ms


def main() -> int:
    args, start_ms = parse_args()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311, clean_session=False)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(0.1, 1.0)
    acked = [0]
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)  # once per message, when acknowledged
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    total = args.count + 1
    infos = []
    began = time.monotonic()
    for i in range(args.count):
        machine, values = row(i, start_ms, args.rate, args.machines)
        infos.append(client.publish(f"{args.prefix}/{machine}/telemetry", orjson.dumps(values), qos=1))
        if i % 200 == 199:
            ahead = (i + 1) / args.rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
            while i + 1 - acked[0] > MAX_OUTSTANDING:  # paho's packet ids wrap at 65,535
                time.sleep(0.001)
    last_ts = start_ms + (args.count - 1) * 1000 // args.rate
    infos.append(client.publish(f"{args.prefix}/zz/telemetry",
                                orjson.dumps({"ts": last_ts + 60_000, "seq": -1, "temp": 0.0}), qos=1))
    deadline = time.monotonic() + 120
    while acked[0] < total and time.monotonic() < deadline:
        time.sleep(0.01)
    pending = total - acked[0]
    print(f"published {len(infos)} in {time.monotonic() - began:.1f}s, unacknowledged {pending}", flush=True)
    client.disconnect()
    client.loop_stop()
    return 0 if pending == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
