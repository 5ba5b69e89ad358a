"""The result client's bulk acknowledgements, against a real Mosquitto: every QoS 1 PUBLISH is
acknowledged exactly once (through `on_pubacks` lists, or paho's own `on_publish` for what the bulk path
leaves to it), paho forgets every acknowledged message, and QoS 0 and 2 messages mixed in still complete."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from arros_mqtt.egress.mqtt_sink import ResultClient
from tests.support import Collector, connected_result_client, unique


class Acks:
    """What the client reported: lists of packet ids taken in bulk, and single ones from paho."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bulk: list[list[int]] = []
        self.single: list[int] = []

    def on_pubacks(self, mids: list[int]) -> None:
        with self.lock:
            self.bulk.append(list(mids))

    def on_publish(self, _client, _userdata, mid, *_rest) -> None:
        with self.lock:
            self.single.append(mid)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize("subscribed", [False, True], ids=["no-subscriber", "subscriber"])
def test_every_qos1_publish_is_acknowledged_once(mosquitto, protocol, subscribed):
    prefix = unique("bulka")
    acks = Acks()
    n = 3000
    qos = [1 if i % 5 else (0 if i % 10 else 2) for i in range(n)]  # mostly QoS 1, some 0 and 2
    with contextlib.ExitStack() as stack:
        collector = Collector(mosquitto.port, [f"{prefix}/#"], qos=1) if subscribed else None
        if collector is not None:
            stack.callback(collector.close)
        client = stack.enter_context(connected_result_client(mosquitto, protocol, ResultClient, acks.on_publish,
                                                             inflight=0))
        client.on_pubacks = acks.on_pubacks
        with client.publishing():
            infos = [client.publish(f"{prefix}/{i % 7}", b"%d" % i, qos=q) for i, q in enumerate(qos)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(info.is_published() for info in infos):
            time.sleep(0.05)
        assert all(info.is_published() for info in infos)
        qos1 = sorted(info.mid for info, q in zip(infos, qos, strict=True) if q == 1)
        bulk_mids = [mid for mids in acks.bulk for mid in mids]
        assert sorted(bulk_mids + [m for m in acks.single if m in set(qos1)]) == qos1  # each exactly once
        assert not set(bulk_mids) & set(acks.single)
        assert any(len(mids) > 1 for mids in acks.bulk), "no PUBACKs were taken in bulk"
        assert client.paho_in_flight == 0
        if collector is not None:
            assert len(collector.wait_for(n, timeout=30)) == n
