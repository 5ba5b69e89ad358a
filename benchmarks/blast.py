"""A publisher at full speed in a child process of its own, so it never shares the measuring process's GIL.

It publishes the messages of `workload.readings(ROWS, rows_per_message=PER)` in FORMAT as PUBLISH
packets built ahead of time: at QoS 0 written in 1 MB chunks, at QoS 1 through `mqtt_wire.QosOneSender`
(a window of unacknowledged packets, PUBACKs counted by size), as a device publishing to a QoS 1
subscription would. It connects and builds every packet first, prints `ready`, waits for `go` on
stdin (the measuring process starts its clock when it writes it), publishes, waits for every PUBACK
and prints one JSON line: sent, unacknowledged, seconds, and `send_seconds` (until the last packet was
written). With RATE (messages/s) it is paced: what is due is written every ~1 ms, as `paced.py` does, for
the sustained-rate searches.

    python benchmarks/blast.py PORT FORMAT PER ROWS QOS [RATE]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import HOST  # noqa: E402
from benchmarks import mqtt_wire, workload  # noqa: E402

ACK_TIMEOUT = 600.0


def packets(fmt: str, rows_per_message: int, rows: int, qos: int) -> list[bytes]:
    """The PUBLISH packets, one per message, with packet ids at QoS 1."""
    data = workload.readings(rows, rows_per_message=rows_per_message)
    return [mqtt_wire.publish_packet(topic, payload, qos, mqtt_wire.nth_packet_id(i) if qos else 0)
            for i, (topic, payload) in enumerate(workload.payloads(data, fmt))]


def publish(port: int, fmt: str, rows_per_message: int, rows: int, qos: int, rate: float = 0.0) -> dict:
    client = mqtt_wire.WireClient(HOST, port, f"bench-blast-{time.monotonic_ns()}")
    built = packets(fmt, rows_per_message, rows, qos)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":  # the measuring process gave up before the start
        client.close()
        return {"sent": 0, "unacknowledged": 0, "seconds": 0.0, "send_seconds": 0.0}
    start = time.perf_counter()
    sender = mqtt_wire.QosOneSender(client) if qos else None
    write = sender.send if sender is not None else (lambda chunk: client.send(b"".join(chunk)))
    if rate:
        _paced(write, built, rate, start)
    else:
        write(built)
    send_seconds = time.perf_counter() - start
    unacknowledged = sender.wait_acked(ACK_TIMEOUT) if sender is not None else 0
    seconds = time.perf_counter() - start
    client.close()
    return {"sent": len(built), "unacknowledged": unacknowledged, "seconds": seconds, "send_seconds": send_seconds}


def _paced(write, built: list[bytes], rate: float, start: float) -> None:
    """Write what is due at `rate` messages/s every ~1 ms (a gateway's bursts), never ahead of time."""
    sent = 0
    while sent < len(built):
        due = min(len(built), int((time.perf_counter() - start) * rate) + 1)
        if due > sent:
            write(built[sent:due])
            sent = due
        time.sleep(0.001)


class Blast:
    """The child, driven from the measuring process: started at construction (it builds its packets while
    the caller starts what it measures), `ready` once it is connected with its packets built, `go` starts
    the publishing, `finish` collects its report (and, without `go`, lets it exit unpublished)."""

    def __init__(self, port: int, fmt: str, rows_per_message: int, rows: int, qos: int, rate: float = 0.0) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, str(port), fmt, str(rows_per_message), str(rows),
                                         str(qos), str(rate)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        self.report: dict | None = None

    def ready(self) -> None:
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":  # "" if it exited first
            self.finish(10)
            raise RuntimeError(f"the publisher did not start (exit {self.process.returncode})")

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = ACK_TIMEOUT + 60) -> dict:
        """Its report once it exited; {} if it failed or had to be killed after `timeout` seconds. Once
        collected, the same report again."""
        if self.report is None:
            try:
                out, _ = self.process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate(timeout=10)
                out = ""
            lines = out.strip().splitlines()
            self.report = json.loads(lines[-1]) if self.process.returncode == 0 and lines else {}
        return self.report


if __name__ == "__main__":
    port, fmt, per, rows, qos = sys.argv[1:6]
    pace = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    print(json.dumps(publish(int(port), fmt, int(per), int(rows), int(qos), pace)), flush=True)
