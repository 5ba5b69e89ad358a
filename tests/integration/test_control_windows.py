"""Windowed subscriptions through the control topic: created at run time, explained with the SQL the
engine really runs, and their state released on drop."""

from __future__ import annotations

import time

import orjson

from tests.control_support import Operator, control_config
from tests.integration.test_control import make_rows, publish_rows
from tests.support import Collector, running_service, unique

WINDOW_SQL = ("SELECT tumble(_received_at, INTERVAL '1 second') AS window, machine, count(*) AS n, "
              "max(temp) AS max_temp FROM telemetry GROUP BY window, machine")


def test_windowed_subscription_created_explained_and_dropped(mosquitto, tmp_path):
    prefix = unique()
    control = f"{prefix}/arros"
    rows = make_rows(300, seed=11)
    with running_service(control_config(prefix, tmp_path / "state"), tmp_path, mosquitto.url) as service:
        op = Operator(mosquitto.port, control)
        out = Collector(mosquitto.port, [f"{prefix}/win/#"])
        reply = op.request({"op": "create", "name": "win", "sql": WINDOW_SQL, "output": f"{prefix}/win/{{machine}}"})
        assert reply["ok"], reply
        assert reply["result"]["kind"] == "windowed"

        publish_rows(mosquitto.port, prefix, rows)
        explained = op.request({"op": "explain", "name": "win"})["result"]
        assert explained["how"].startswith("windowed (tumble 1s")
        assert "partial_sql" in explained and "final_sql" in explained and explained["state_rows"] > 0

        time.sleep(2.1)  # a later row moves the arrival-time watermark past every window of the first rows
        publish_rows(mosquitto.port, prefix, make_rows(1, seed=12))
        deadline = time.monotonic() + 15
        closed: list[dict] = []
        while sum(r["n"] for r in closed) < 300 and time.monotonic() < deadline:
            closed = [orjson.loads(p) for _, p in out.wait_for(len(closed) + 1, timeout=1)]
        assert sum(r["n"] for r in closed) == 300  # every row in exactly one emitted window
        by_machine: dict[str, float] = {}
        for r in closed:
            by_machine[r["machine"]] = max(by_machine.get(r["machine"], 0), r["max_temp"])
        expected: dict[str, float] = {}
        for r in rows:
            expected[r["machine"]] = max(expected.get(r["machine"], 0), r["temp"])
        assert by_machine == expected

        assert op.request({"op": "drop", "name": "win"})["ok"]
        assert not any(service.engine._ctx.table_exist(f"__{kind}_win") for kind in ("state", "final", "changed"))
        op.close()
        out.close()
