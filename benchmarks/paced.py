"""A paced publisher, run as a child process (so it never competes with a measuring process for the GIL):
`workload.readings(rate * seconds, machines)` as JSON at a fixed rate, each payload stamped with its
wall-clock send time in microseconds (`sent_us`, for latency). What is due is sent every ~1 ms (10
messages at a time at 10k msgs/s, like a gateway's bursts); waking every 0.2 ms cost the publisher
~40% more CPU on the 2 cores it shares with the broker and Arros. At QoS 1 (the default, as a device
publishing to a QoS 1 subscription would) `mqtt_wire.QosOneSender` counts the PUBACKs on a thread and
the publisher waits for the last of them before it exits; QoS 0 for the tuned rows.

    python benchmarks/paced.py PORT RATE SECONDS [MACHINES] [QOS]
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

ACK_TIMEOUT = 60.0


def rows(rate: int, seconds: float) -> int:
    return int(rate * seconds)


def publish(port: int, rate: int, seconds: float, machines: int, qos: int) -> int:
    """Publishes; the exit status: 0 once every message is sent (and at QoS 1 acknowledged)."""
    client = mqtt_wire.WireClient(HOST, port, f"bench-paced-{time.monotonic_ns()}")
    sender = mqtt_wire.QosOneSender(client) if qos else None
    data = workload.readings(rows(rate, seconds), machines=machines)
    temps, ts = data.temp.tolist(), data.ts.tolist()
    topics = [workload.topic(m) for m in data.machine.tolist()]
    print("ready", flush=True)  # connected, data built: the measured stretch starts now
    sent, start = 0, time.perf_counter()
    while sent < data.rows:
        due = min(data.rows, int((time.perf_counter() - start) * rate) + 1)
        if due > sent:
            now_us = time.time_ns() // 1000
            packets = [mqtt_wire.publish_packet(topics[i], b'{"ts":%d,"temp":%r,"rpm":1,"ok":true,"status":"run",'
                                                b'"seq":%d,"sent_us":%d}' % (ts[i], temps[i], i, now_us),
                                                qos, mqtt_wire.nth_packet_id(i) if qos else 0)
                       for i in range(sent, due)]
            if sender is not None:
                sender.send(packets)
            else:
                client.sock.sendall(b"".join(packets))
            sent = due
        time.sleep(0.001)
    unacknowledged = sender.wait_acked(ACK_TIMEOUT) if sender is not None else 0
    client.close()
    return 1 if unacknowledged else 0


def start(port: int, rate: int, seconds: float, machines: int = 100, qos: int = 1) -> subprocess.Popen:
    """The publisher in a child process, returned once it is connected and about to publish (it printed
    `ready`; a measurement starts its clock then, not while Python starts up)."""
    process = subprocess.Popen([sys.executable, __file__, str(port), str(rate), str(seconds), str(machines), str(qos)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.readline()  # "ready", or "" if it exited first (its exit status tells)
    return process


if __name__ == "__main__":
    args = sys.argv[1:]
    args += ["100", "1"][len(args) - 3:]  # MACHINES and QOS when not given
    raise SystemExit(publish(int(args[0]), int(args[1]), float(args[2]), int(args[3]), int(args[4])))
