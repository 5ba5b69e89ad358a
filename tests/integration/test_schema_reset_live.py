"""Over real Mosquitto: a schema-less stream whose first messages fixed a useless schema (every value a
bool) is reset with the control op `reset_schema`; the next good payload is inferred afresh and the
stream's subscription publishes it."""

from __future__ import annotations

import time

import orjson

from tests.control_support import Operator, control_config
from tests.support import Collector, publish_all, running_service, unique, wait_subscribed


def test_reset_schema_over_the_control_topic(mosquitto, tmp_path):
    prefix = unique()
    extra = f"""
[streams.loose]
topic = "{prefix}/loose/{{device}}"
[subscriptions.hot]
sql = "SELECT device, temp FROM loose WHERE temp > 50"
output = "{prefix}/hot/{{device}}"
"""
    with running_service(control_config(prefix, tmp_path / "state", subscriptions=extra), tmp_path,
                         mosquitto.url) as service:
        wait_subscribed(service)
        op = Operator(mosquitto.port, f"{prefix}/arros")
        hot = Collector(mosquitto.port, [f"{prefix}/hot/#"])
        publish_all(mosquitto.port, [(f"{prefix}/loose/d1", orjson.dumps({"temp": True}))] * 20)
        deadline = time.monotonic() + 15
        while service.engine.streams["loose"].schema is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "hot" in service.engine.rejected  # temp > 50 over a bool column does not plan
        assert not op.request({"op": "reset_schema", "name": "telemetry"})["ok"]  # declared: nothing to reset
        missing = op.request({"op": "reset_schema", "name": "nope"})
        assert missing["error"]["code"] == "not_found"
        reply = op.request({"op": "reset_schema", "name": "loose"})
        assert reply["ok"] and reply["result"]["reset"] and reply["result"]["waiting"] == ["hot"]
        publish_all(mosquitto.port, [(f"{prefix}/loose/d2", orjson.dumps({"temp": 72.5}))])
        [(topic, payload)] = hot.wait_for(1)
        assert topic == f"{prefix}/hot/d2" and orjson.loads(payload)["temp"] == 72.5
        hot.close()
        op.close()
