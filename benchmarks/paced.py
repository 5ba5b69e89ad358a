"""A paced publisher, run as a child process (so it never competes with a measuring process for the GIL):
`workload.readings(rate * seconds, machines)` as JSON at a fixed rate, each payload stamped with its
wall-clock send time in microseconds (`sent_us`, for latency). What is due is sent every ~1 ms (10
messages at a time at 10k msgs/s, like a gateway's bursts); waking every 0.2 ms cost the publisher
~40% more CPU on the 2 cores it shares with the broker and Arros.

    python benchmarks/paced.py PORT RATE SECONDS [MACHINES]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import HOST  # noqa: E402
from benchmarks import mqtt_wire, workload  # noqa: E402


def rows(rate: int, seconds: float) -> int:
    return int(rate * seconds)


def publish(port: int, rate: int, seconds: float, machines: int) -> None:
    client = mqtt_wire.WireClient(HOST, port, f"bench-paced-{time.monotonic_ns()}")
    data = workload.readings(rows(rate, seconds), machines=machines)
    temps, ts = data.temp.tolist(), data.ts.tolist()
    topics = [workload.topic(m) for m in data.machine.tolist()]
    sent, start = 0, time.perf_counter()
    while sent < data.rows:
        due = min(data.rows, int((time.perf_counter() - start) * rate) + 1)
        if due > sent:
            now_us = time.time_ns() // 1000
            client.sock.sendall(b"".join(
                mqtt_wire.publish_packet(topics[i], b'{"ts":%d,"temp":%r,"rpm":1,"ok":true,"status":"run",'
                                         b'"seq":%d,"sent_us":%d}' % (ts[i], temps[i], i, now_us))
                for i in range(sent, due)))
            sent = due
        time.sleep(0.001)
    client.close()


def start(port: int, rate: int, seconds: float, machines: int = 100) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, str(port), str(rate), str(seconds), str(machines)])


if __name__ == "__main__":
    publish(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 100)
