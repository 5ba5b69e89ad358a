"""The result client's bulk acknowledgements, against a real Mosquitto: every QoS 1 PUBLISH is
acknowledged exactly once (through `on_pubacks` lists, or paho's own `on_publish` for what the bulk path
leaves to it), paho forgets every acknowledged message, and QoS 0 and 2 messages mixed in still complete."""

from __future__ import annotations

import threading
import time

import pytest

from arros_mqtt.config import BrokerConfig
from arros_mqtt.egress.mqtt_sink import ResultClient
from arros_mqtt.transport.paho_client import new_client
from tests.support import Collector, unique


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize("subscribed", [False, True], ids=["no-subscriber", "subscriber"])
def test_every_qos1_publish_is_acknowledged_once(mosquitto, protocol, subscribed):
    prefix = unique("bulka")
    collector = Collector(mosquitto.port, [f"{prefix}/#"], qos=1) if subscribed else None
    client = new_client(BrokerConfig(url=mosquitto.url, client_id=unique("bulka-"), protocol=protocol),
                        suffix="-out", persistent=False, client_class=ResultClient)
    client.max_inflight_messages_set(0)
    lock = threading.Lock()
    bulk: list[list[int]] = []
    single: list[int] = []

    def on_pubacks(mids: list[int]) -> None:
        with lock:
            bulk.append(list(mids))

    def on_publish(_client, _userdata, mid, *_rest) -> None:
        with lock:
            single.append(mid)

    client.on_pubacks = on_pubacks
    client.on_publish = on_publish
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        assert connected.wait(10)
        n = 3000
        qos = [1 if i % 5 else (0 if i % 10 else 2) for i in range(n)]  # mostly QoS 1, some 0 and 2
        with client.publishing():
            infos = [client.publish(f"{prefix}/{i % 7}", b"%d" % i, qos=q) for i, q in enumerate(qos)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(info.is_published() for info in infos):
            time.sleep(0.05)
        assert all(info.is_published() for info in infos)
        qos1 = sorted(info.mid for info, q in zip(infos, qos, strict=True) if q == 1)
        bulk_mids = [mid for mids in bulk for mid in mids]
        assert sorted(bulk_mids + [m for m in single if m in set(qos1)]) == qos1  # each exactly once
        assert not set(bulk_mids) & set(single)
        assert any(len(mids) > 1 for mids in bulk), "no PUBACKs were taken in bulk"
        assert client.paho_in_flight == 0
        if collector is not None:
            assert len(collector.wait_for(n, timeout=30)) == n
    finally:
        client.disconnect()
        client.loop_stop()
        if collector is not None:
            collector.close()
