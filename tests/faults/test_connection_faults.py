"""The broker goes away and comes back on the same port: the service in client mode keeps running and resumes."""

from __future__ import annotations

import time

import orjson

from tests.integration.test_connection import service_config, values
from tests.support import (
    Collector,
    free_port,
    publish_all,
    running_service,
    start_mosquitto,
    unique,
)


def test_reconnects_after_broker_restart(tmp_path):
    """The broker goes away and comes back on the same port: the service keeps running and resumes."""
    port = free_port()
    broker = start_mosquitto(tmp_path, port=port)
    prefix = unique()
    text = service_config(prefix, f'[broker]\nclient_id = "{unique("arros-")}"')
    try:
        with running_service(text, tmp_path, broker.url) as service:
            publish_all(port, [(f"{prefix}/in/d1", orjson.dumps({"v": 1}))])
            deadline = time.monotonic() + 10
            while service.pipeline.stats["s"].rows < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            # v=1's result acknowledged before the broker goes: else it is (rightly, at QoS 1) sent again on
            # the reconnect and the collector below, subscribed by then, counts it among the 50
            assert service.transport.flush(10), "the broker did not acknowledge the first result"
            service.transport.subscribed.clear()  # before the restart: the resubscribe may be quick
            broker.stop()
            time.sleep(1.0)
            broker.start()
            assert service.transport.subscribed.wait(30), "no resubscribe after the broker came back"
            out = Collector(port, [f"{prefix}/out/#"])
            publish_all(port, [(f"{prefix}/in/d2", orjson.dumps({"v": i})) for i in range(2, 52)])
            assert values(out.wait_for(50)) == list(range(2, 52))
            out.close()
    finally:
        broker.stop()
