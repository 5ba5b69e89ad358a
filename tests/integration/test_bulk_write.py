"""The result client's bulk writes, against a real Mosquitto: QoS 0, 1 and 2 PUBLISHes interleaved
arrive complete and in order, and every message gets its `on_publish` once, also when queued in
`publishing()` blocks (one wake-up of the network thread per block)."""

from __future__ import annotations

import contextlib
import threading

import pytest

from arros_mqtt.transport.bulk_write import BulkWriteClient
from tests.support import Collector, connected_result_client, unique


def qos_of(i: int, every: int) -> int:
    return 0 if i % every else (1 if i % (2 * every) else 2)


def connected_client(mosquitto, protocol: str, on_publish=None):
    return connected_result_client(mosquitto, protocol, BulkWriteClient, on_publish)


@pytest.mark.parametrize(("every", "block"), [(100, 0), (3, 0), (3, 250)], ids=["few-acked", "acked", "blocks"])
def test_interleaved_qos_levels_arrive_in_order_with_one_callback_each(mosquitto, every, block):
    prefix = unique("bulkw")
    collector = Collector(mosquitto.port, [f"{prefix}/#"], qos=1)
    published: list[int] = []
    lock = threading.Lock()

    def on_publish(_client, _userdata, mid, _reason, _properties):
        with lock:
            published.append(mid)

    try:
        with connected_client(mosquitto, "5", on_publish) as client:
            n = 3000
            mids = []
            for start in range(0, n, block or n):  # every `every`-th is QoS 1 or 2
                with client.publishing() if block else contextlib.nullcontext():
                    for i in range(start, min(n, start + (block or n))):
                        payload = (b"%d:" % i) + b"x" * (i % 700)  # some large enough to fill socket writes
                        mids.append(client.publish(f"{prefix}/{i % 7}", payload, qos=qos_of(i, every)).mid)
            received = collector.wait_for(n, timeout=30)
    finally:
        collector.close()
    assert len(received) == n
    for topic in {f"{prefix}/{k}" for k in range(7)}:  # MQTT orders per topic and QoS level
        qos0 = [int(p.split(b":")[0]) for t, p in received if t == topic and int(p.split(b":")[0]) % every]
        assert qos0 == sorted(qos0)
    seqs = sorted(int(p.split(b":")[0]) for _, p in received)
    assert seqs == list(range(n))
    assert all(p.split(b":")[1] == b"x" * (int(p.split(b":")[0]) % 700) for _, p in received)
    assert sorted(published) == sorted(mids)


def test_large_payloads_survive_partial_writes(mosquitto):
    """20 MB of QoS 0 messages queued at once: writes fill the socket and stop part-way through packets
    (partial sends, would-block); every payload arrives whole and in order."""
    prefix = unique("bulkw")
    collector = Collector(mosquitto.port, [f"{prefix}/#"], qos=0)
    try:
        with connected_client(mosquitto, "3.1.1") as client:
            payloads = [bytes([i % 256]) * (100_000 + i) for i in range(200)]
            for payload in payloads:
                client.publish(f"{prefix}/big", payload, qos=0)
            received = collector.wait_for(len(payloads), timeout=60)
    finally:
        collector.close()
    assert [p for _, p in received] == payloads
