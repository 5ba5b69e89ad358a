"""Output options of a subscription: retain and QoS, seen by real subscribers."""

from __future__ import annotations

import orjson

from tests.support import Collector, publish_all, running_service, unique


def test_retained_results_reach_a_late_subscriber(mosquitto, tmp_path):
    prefix = unique()
    text = f"""
[streams.s]
topic = "{prefix}/in/{{device}}"
schema = {{ v = "int64" }}
[subscriptions.last]
sql = "SELECT device, v FROM s"
output = "{prefix}/last/{{device}}"
retain = true
qos = 0
"""
    with running_service(text, tmp_path, mosquitto.url):
        early = Collector(mosquitto.port, [f"{prefix}/last/#"], qos=0)
        for i in range(3):
            publish_all(mosquitto.port, [(f"{prefix}/in/d{j}", orjson.dumps({"v": i})) for j in range(2)])
        early.wait_for(6)
        early.close()
        late = Collector(mosquitto.port, [f"{prefix}/last/#"])  # joins after the fact
        got = dict((t, orjson.loads(p)["v"]) for t, p in late.wait_for(2, timeout=10))
        late.close()
    assert got == {f"{prefix}/last/d0": 2, f"{prefix}/last/d1": 2}
