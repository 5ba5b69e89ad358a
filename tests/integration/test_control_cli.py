"""`arros sub ...` against a live `arros run` process, as an operator uses them from a shell."""

from __future__ import annotations

import time

import orjson

from tests.control_support import control_config
from tests.support import Collector, arros_command, publish_all, start_arros, stop_process, unique


def test_sub_commands_against_a_running_service(mosquitto, tmp_path):
    prefix = unique()
    config = tmp_path / "arros.toml"
    config.write_text(control_config(prefix, tmp_path / "state"))
    log = tmp_path / "arros.log"
    process = start_arros("run", "-c", str(config), "--broker", mosquitto.url, log=log)
    target = ("-c", str(config), "--broker", mosquitto.url)

    def sub(*args: str):
        return arros_command("sub", *args, *target, "--timeout", "10")

    try:
        deadline = time.monotonic() + 30
        while "arros running" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        sql = "SELECT machine, temp FROM telemetry WHERE temp > 50"
        created = sub("create", "hot", "--sql", sql, "--output", f"{prefix}/hot/{{machine}}", "--qos", "0")
        assert created.returncode == 0, created.stderr
        assert "kind:        per_row" in created.stdout and "columns:     machine string, temp double" in created.stdout

        out = Collector(mosquitto.port, [f"{prefix}/hot/#"])
        publish_all(mosquitto.port, [(f"{prefix}/factory/l1/m1/telemetry", orjson.dumps({"temp": t}))
                                     for t in (10, 60, 70)])
        assert [orjson.loads(p) for _, p in out.wait_for(2)] == [{"machine": "m1", "temp": 60.0},
                                                                  {"machine": "m1", "temp": 70.0}]
        out.close()

        listed = sub("list")
        assert listed.returncode == 0
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["NAME", "ORIGIN", "KIND", "STREAM", "OUTPUT", "STATE", "ROWS_IN", "ROWS_OUT"]
        assert lines[2].split() == ["hot", "control", "per_row", "telemetry", f"{prefix}/hot/{{machine}}", "running",
                                    "3", "2"]
        status = sub("status", "hot")
        assert status.returncode == 0 and "rows_in:" in status.stdout
        fields = {k: v.strip() for k, v in (line.split(":", 1) for line in status.stdout.splitlines())}
        assert (fields["name"], fields["rows_in"], fields["rows_out"], fields["paused"]) == ("hot", "3", "2", "False")
        as_json = orjson.loads(sub("list", "--json").stdout)
        assert as_json["ok"] and [s["name"] for s in as_json["result"]["subscriptions"]] == ["base", "hot"]

        assert "physical plan:" in sub("explain", "hot").stdout
        assert "FilterExec" in sub("explain", "--sql", "SELECT temp FROM telemetry WHERE temp > 1").stdout
        assert sub("pause", "hot").stdout.strip() == "hot: paused (paused by request)"
        described = sub("describe", "hot")
        assert "  paused:        True" in described.stdout and "  rows_out:      2" in described.stdout
        assert sub("resume", "hot").stdout.strip() == "hot: running"
        replaced = sub("replace", "hot", "--sql", "SELECT machine FROM telemetry", "--output", f"{prefix}/h")
        assert replaced.returncode == 0 and "sql:         SELECT machine FROM telemetry" in replaced.stdout

        refused = sub("drop", "base")
        assert refused.returncode == 1 and refused.stderr.startswith("arros: error: forbidden: ")
        bad_sql = sub("create", "x", "--sql", "COPY telemetry TO '/tmp/x.csv'", "--output", "o")
        assert bad_sql.returncode == 1 and "forbidden" in bad_sql.stderr and "Traceback" not in bad_sql.stderr
        assert sub("drop", "hot").stdout.strip() == "dropped hot"
        assert sub("drop", "hot").returncode == 1

        nobody = arros_command("sub", "list", "--broker", mosquitto.url, "--prefix", unique(), "--timeout", "1")
        assert nobody.returncode == 3 and "no reply" in nobody.stderr
    finally:
        assert stop_process(process) == 0
    assert "Traceback" not in log.read_text()
