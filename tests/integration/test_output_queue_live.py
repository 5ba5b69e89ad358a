"""Results produced while the broker is unreachable wait in memory, then on disk, and go out in order."""

from __future__ import annotations

import orjson

from arros_mqtt.config import BrokerConfig
from arros_mqtt.core.log_position import LogPosition
from arros_mqtt.egress.mqtt_sink import MqttSink
from tests.support import Collector, unique


def test_outputs_spill_to_disk_while_disconnected_and_are_published_in_order_after(mosquitto, tmp_path):
    prefix = unique()
    out = Collector(mosquitto.port, [f"{prefix}/#"])
    position = LogPosition()
    spill = tmp_path / "outbox"
    sink = MqttSink(BrokerConfig(url=mosquitto.url, client_id=unique("arros-")), memory_bytes=4_000,
                    spill_bytes=10_000_000, spill_dir=spill, position=position)
    for i in range(3000):  # not connected yet: as during a broker outage
        position.seq = 1 + i // 10
        sink.publish(f"{prefix}/r/{i % 5}", orjson.dumps({"i": i, "pad": "x" * 50}), qos=1 if i % 3 else 0)
    queue = sink.outputs
    assert queue.queued == 3000 and queue.spilled > 2900 and list(spill.glob("spill-*.bin"))
    assert queue.queued_bytes > queue.memory_bytes and not queue.full
    assert queue.confirmed(300) == 0  # nothing confirmed: record 1's outputs wait
    sink.start(wait=10)
    assert sink.flush(30)
    got = out.wait_for(3000)
    sink.stop()
    out.close()
    assert [orjson.loads(p)["i"] for _, p in got] == list(range(3000))
    assert queue.queued == 0 and queue.confirmed(300) == 300 and not list(spill.glob("spill-*.bin"))


def test_a_batched_round_is_handed_over_at_its_end_in_order(mosquitto):
    """Inside `batched()` (the engine's round) results only queue; its end hands them all to the client."""
    prefix = unique()
    out = Collector(mosquitto.port, [f"{prefix}/#"])
    sink = MqttSink(BrokerConfig(url=mosquitto.url, client_id=unique("arros-")))
    sink.start(wait=10)
    try:
        with sink.outputs.batched():
            for i in range(500):
                sink.publish(f"{prefix}/r/{i % 3}", orjson.dumps({"i": i}), qos=i % 2)
            assert sink.outputs.sent == 0 and sink.outputs.queued == 500
        assert sink.outputs.sent == 500
        assert sink.flush(30)
        got = out.wait_for(500)
    finally:
        sink.stop()
        out.close()
    assert sorted(orjson.loads(p)["i"] for _, p in got) == list(range(500))


def test_a_qos0_flood_waits_in_the_bounded_queue_not_in_paho(mosquitto, tmp_path):
    """QoS 0 results count against the output queue's bounds too: paho's own queue holds at most
    `max_inflight` of them (it had no bound: a flood grew its memory without limit), and all arrive."""
    import subprocess
    import time

    from arros_mqtt.transport.paho_internals import WriteHooks
    from tests.support import HOST

    prefix, count = unique(), 60_000
    receiver = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(mosquitto.port), "-t", f"{prefix}/#",
                                 "-C", str(count), "-W", "60"], stdout=subprocess.PIPE)
    sink = MqttSink(BrokerConfig(url=mosquitto.url, client_id=unique("arros-")), memory_bytes=1_000_000,
                    spill_bytes=100_000_000, spill_dir=tmp_path / "outbox")
    sink.start(wait=10)
    time.sleep(0.5)  # mosquitto_sub subscribed
    queue = sink.outputs
    with queue.batched():  # an engine round's results: handed to the client together at its end
        for _ in range(count):
            sink.publish(f"{prefix}/r", b"x" * 100, qos=0)
    most = len(WriteHooks.out_queue.fget(sink.client))  # right after the hand-over
    assert sink.flush(60)
    out, _ = receiver.communicate(timeout=60)
    sink.stop()
    assert out.count(b"\n") == count
    assert most <= queue.max_inflight + 1
