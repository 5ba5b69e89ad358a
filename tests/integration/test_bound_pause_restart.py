"""Over real Mosquitto, across a real restart: a subscription paused by a run bound (a micro-batch's result
past `max_result_rows`) stays paused after the restart, for a config-file and a run-time subscription alike,
so the offender does not run (and blow up) again; `resume` runs it, and a changed SQL in the config file
runs afresh."""

from __future__ import annotations

import orjson

from tests.control_support import Operator, control_config
from tests.plc_servers import wait_until
from tests.support import Collector, publish_all, running_service, unique, wait_subscribed

FAN_OUT = "SELECT machine, rpm FROM telemetry"


def _config(prefix: str, state_dir, base_sql: str = FAN_OUT) -> str:
    return control_config(prefix, state_dir, base_sql=base_sql).replace(
        "batch_max_delay", "max_result_rows = 5\nbatch_max_delay")


def _burst(port: int, prefix: str, rows: int) -> None:
    """One message holding `rows` readings: one micro-batch, `rows` result rows."""
    payload = orjson.dumps([{"rpm": i} for i in range(rows)])
    publish_all(port, [(f"{prefix}/factory/l1/m1/telemetry", payload)])


def test_a_run_bound_pause_survives_a_restart_until_resumed(mosquitto, tmp_path):
    prefix = unique()
    state = tmp_path / "state"
    with running_service(_config(prefix, state), tmp_path, mosquitto.url) as service:
        wait_subscribed(service)
        op = Operator(mosquitto.port, f"{prefix}/arros")
        created = op.request({"op": "create", "name": "rt", "sql": FAN_OUT, "output": f"{prefix}/rt/{{machine}}"})
        assert created["ok"], created
        _burst(mosquitto.port, prefix, 10)  # past max_result_rows = 5: both pause
        assert wait_until(lambda: service.engine.paused.keys() == {"base", "rt"})
        assert all(reason.startswith("result limit") for reason in service.engine.paused.values())
        op.close()
    with running_service(_config(prefix, state), tmp_path, mosquitto.url) as service:
        wait_subscribed(service)
        assert service.engine.paused.keys() == {"base", "rt"}
        assert service.engine.paused["base"].startswith("result limit")
        results = Collector(mosquitto.port, [f"{prefix}/base/#", f"{prefix}/rt/#"])
        op = Operator(mosquitto.port, f"{prefix}/arros")
        for name in ("base", "rt"):
            assert op.request({"op": "resume", "name": name})["ok"]
        _burst(mosquitto.port, prefix, 3)  # within the bound: both publish
        assert len(results.wait_for(6)) == 6
        _burst(mosquitto.port, prefix, 10)  # paused again, stored again
        assert wait_until(lambda: service.engine.paused.keys() == {"base", "rt"})
        results.close()
        op.close()
    # the config file's SQL changed: that subscription runs afresh; the run-time one stays paused
    changed = "SELECT machine, rpm + 1 AS rpm FROM telemetry"
    with running_service(_config(prefix, state, changed), tmp_path, mosquitto.url) as service:
        wait_subscribed(service)
        assert "base" not in service.engine.paused
        assert service.engine.paused["rt"].startswith("result limit")
