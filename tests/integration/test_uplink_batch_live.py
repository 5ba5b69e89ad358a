"""Batching upstream against a second Mosquitto as the cloud broker: consecutive results of one topic go up
as one JSON array or one Arrow IPC stream; through an outage every result arrives once, in order per topic."""

from __future__ import annotations

import time

import orjson
import pyarrow as pa
import pytest

from tests.integration.test_uplink_live import (
    CloudSubscriber,
    expected,
    persistent_cloud,
    publish_inputs,
    service_config,
    wait_until,
)
from tests.support import BrokerUnderTest, unique

MAX = 50


def unbatch(kind: str, payload: bytes) -> list[dict]:
    if kind == "json":
        return orjson.loads(payload)
    table = pa.ipc.open_stream(payload).read_all()
    assert table.schema.names == ["payload", "received", "qos", "seq"]
    seqs = table.column("seq").to_pylist()
    assert seqs == sorted(seqs)
    return [orjson.loads(p) for p in table.column("payload").to_pylist()]


class BatchSubscriber(CloudSubscriber):
    """Counts batches and unpacks each into its results (the QoS 2 DUP handling of CloudSubscriber)."""

    kind = "json"

    def __init__(self, port: int, topic: str) -> None:
        self.sizes: list[int] = []
        super().__init__(port, topic)

    def _on_message(self, _client, _userdata, message) -> None:
        rows = unbatch(self.kind, message.payload)
        with self._lock:
            key = (message.topic, message.payload)
            if message.dup and self._delivered.get(message.mid) == key:
                self.redelivered += 1
                return
            self._delivered[message.mid] = key
            self.sizes.append(len(rows))
            self.got[message.topic].extend(row["n"] for row in rows)
            self.count += len(rows)
            self._lock.notify_all()


@pytest.mark.parametrize("kind", ["json", "arrow"])
def test_batches_reach_the_cloud_once_in_order_through_an_outage(broker: BrokerUnderTest, tmp_path, kind):
    """600 results arrive while the cloud is down; back up, they go as batches of at most 50 of one topic,
    formed from the on-disk buffer: each result once, in order per topic, nothing left buffered."""
    prefix = unique()
    cloud = persistent_cloud(tmp_path / "cloud")
    text = service_config(prefix, cloud, tmp_path / "state", qos="2", batch=f'"{kind}"',
                          batch_max_messages=str(MAX), batch_max_delay='"200ms"')
    try:
        with broker.service(text, tmp_path) as service:
            uplink = service.uplinks[0]
            assert wait_until(uplink.connected.is_set)
            BatchSubscriber.kind = kind
            subscriber = BatchSubscriber(cloud.port, "site-7/#")
            publish_inputs(broker.port, broker.protocol, prefix, 0, 100)
            assert subscriber.wait_for(100)
            cloud.stop()
            assert wait_until(lambda: not uplink.connected.is_set())
            publish_inputs(broker.port, broker.protocol, prefix, 100, 500)
            assert wait_until(lambda: uplink.buffer.pending >= 500)
            cloud.start()
            got = subscriber.wait_for(600)
            assert got == expected(prefix, 600)  # once each, in order per topic
            assert max(subscriber.sizes) <= MAX
            assert len(subscriber.sizes) <= 600 // 5  # batched, not one message per result
            assert wait_until(lambda: uplink.buffer.pending == 0)
            status = uplink.status()
            assert status["sent"] == 600 and status["dropped"] == 0
            subscriber.close()
    finally:
        cloud.stop()


def test_batches_are_formed_again_from_the_buffer_after_a_restart(broker: BrokerUnderTest, tmp_path):
    """Results buffered while the cloud is down survive the service's stop; the next start sends them as
    batches from the on-disk buffer: each once, in order per topic."""
    prefix = unique()
    cloud = persistent_cloud(tmp_path / "cloud")
    text = service_config(prefix, cloud, tmp_path / "state", qos="2", batch='"json"',
                          batch_max_messages=str(MAX), batch_max_delay='"200ms"')
    try:
        BatchSubscriber.kind = "json"
        subscriber = BatchSubscriber(cloud.port, "site-7/#")
        cloud.stop()
        with broker.service(text, tmp_path) as service:
            time.sleep(0.3)  # the uplink's local subscription is in place
            publish_inputs(broker.port, broker.protocol, prefix, 0, 400)
            assert wait_until(lambda: service.uplinks[0].buffer.pending >= 400)
        cloud.start()
        with broker.service(text, tmp_path) as service:
            got = subscriber.wait_for(400)
            assert got == expected(prefix, 400)
            assert max(subscriber.sizes) <= MAX and len(subscriber.sizes) <= 400 // 5
            assert wait_until(lambda: service.uplinks[0].buffer.pending == 0)
        subscriber.close()
    finally:
        cloud.stop()
