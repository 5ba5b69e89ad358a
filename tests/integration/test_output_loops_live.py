"""Over real Mosquitto: a control request whose output would feed its own input, or write under the control
prefix, is refused with one clear reply; nothing loops, and the service keeps serving telemetry."""

from __future__ import annotations

import orjson

from tests.control_support import Operator, control_config
from tests.support import Collector, publish_all, running_service, unique, wait_subscribed

SELECT = "SELECT machine, temp FROM telemetry"


def test_a_looping_output_and_a_control_prefix_output_are_refused(mosquitto, tmp_path):
    prefix = unique()
    with running_service(control_config(prefix, tmp_path / "state"), tmp_path, mosquitto.url) as service:
        wait_subscribed(service)
        op = Operator(mosquitto.port, f"{prefix}/arros")
        loop = op.request({"op": "create", "name": "loop", "sql": SELECT,
                           "output": f"{prefix}/factory/l9/{{machine}}/telemetry"})
        assert not loop["ok"] and loop["error"]["code"] == "forbidden"
        assert "output loop" in loop["error"]["message"] and "loop writes into telemetry" in loop["error"]["message"]
        control = op.request({"op": "create", "name": "ctl", "sql": SELECT, "output": f"{prefix}/arros/control"})
        assert not control["ok"] and control["error"]["code"] == "forbidden"
        assert "control prefix" in control["error"]["message"]
        dollar = op.request({"op": "create", "name": "sys", "sql": SELECT, "output": "$SYS/arros"})
        assert not dollar["ok"] and dollar["error"]["code"] == "forbidden"
        assert sorted(service.engine.subscriptions) == ["base"]
        # telemetry still flows through the config-file subscription, and nothing comes back into the input
        inputs = Collector(mosquitto.port, [f"{prefix}/factory/#"])
        base = Collector(mosquitto.port, [f"{prefix}/base/#"])
        publish_all(mosquitto.port, [(f"{prefix}/factory/l1/m{i}/telemetry", orjson.dumps({"temp": i}))
                                     for i in range(5)])
        assert len(base.wait_for(5)) == 5
        assert len(inputs.wait_for(5)) == 5  # only what we published: no subscription wrote into it
        inputs.close()
        base.close()
        op.close()
