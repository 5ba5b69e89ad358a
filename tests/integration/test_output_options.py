"""Output options of a subscription: retain and QoS, seen by real subscribers (client and embedded mode)."""

from __future__ import annotations

import orjson

from tests.support import unique


def test_retained_results_reach_a_late_subscriber(broker, tmp_path):
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
    with broker.service(text, tmp_path):
        early = broker.collector([f"{prefix}/last/#"], qos=0)
        for i in range(3):
            broker.publish_all([(f"{prefix}/in/d{j}", orjson.dumps({"v": i})) for j in range(2)])
        early.wait_for(6)
        early.close()
        late = broker.collector([f"{prefix}/last/#"])  # joins after the fact
        got = dict((t, orjson.loads(p)["v"]) for t, p in late.wait_for(2, timeout=10))
        late.close()
    assert got == {f"{prefix}/last/d0": 2, f"{prefix}/last/d1": 2}
