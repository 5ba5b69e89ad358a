"""Each example in examples/ runs against the embedded broker with the simulator feeding it; every
derived topic must carry exactly what DuckDB computes from the raw telemetry a real subscriber saw
(the same SQL written independently in DuckDB's dialect, lookup tables read by DuckDB itself).

Windowed subscriptions run scaled down (1 s windows, 1.5 s watermark, 1 s idle timeout instead of
10 s / 5 s / 30 s) so that every window closes within seconds; DuckDB computes the same windows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import orjson
import pytest
from paho.mqtt.client import MQTTv311

from arros_mqtt.sim.simulator import SimOptions, simulate
from tests.support import HOST, ROOT, Collector, arros_command, free_port, publish_all, running_service

TS_MS = "epoch_ms(ts) AS ts"


@dataclass
class Check:
    subscription: str
    topics: str  # filter for the derived messages
    duckdb_sql: str  # over `raw` (the received telemetry, topic levels as columns)
    topic_of: str | None = None  # Python format string for a row's topic; None for a batched topic
    batch: bool = False
    # columns rounded in the SQL: a sum in another order can land on the other side of a rounding edge
    tolerance: dict[str, float] = field(default_factory=dict)


@dataclass
class Example:
    folder: str
    raw_topics: str
    raw_columns: dict[str, str]  # DuckDB types of the payload fields
    levels: dict[str, int]  # topic level index -> column
    devices: dict[str, int]
    checks: list[Check] = field(default_factory=list)
    scaled: dict[str, str] = field(default_factory=dict)  # config text replacements for a short run


EXAMPLES = [
    Example(
        "factory", "factory/+/+/telemetry",
        {"ts": "BIGINT", "spindle_rpm": "BIGINT", "temp": "DOUBLE", "vibration": "DOUBLE", "status": "VARCHAR",
         "parts": "BIGINT", "scrap": "BIGINT"},
        {"line": 1, "machine": 2}, {"cnc": 6, "robots": 0, "agvs": 0},
        [Check("machine_stats", "derived/factory/stats/#", """
            SELECT {'start': epoch_ms(ts - ts % 1000), 'end': epoch_ms(ts - ts % 1000 + 1000)} AS window,
                   line, machine, count(*) AS readings, round(avg(temp), 1) AS avg_temp, max(temp) AS max_temp,
                   max(vibration) AS max_vibration
            FROM raw GROUP BY ALL""", "derived/factory/stats/{line}/{machine}", tolerance={"avg_temp": 0.1 + 1e-9}),
         Check("over_limit", "alerts/factory/#", f"""
            SELECT t.line, t.machine, m.model, {TS_MS}, t.temp, t.vibration,
                   CASE WHEN t.temp > m.max_temp THEN 'temperature' ELSE 'vibration' END AS reason
            FROM raw t JOIN read_csv('examples/factory/machines.csv') m ON t.machine = m.machine
            WHERE t.temp > m.max_temp OR t.vibration > m.max_vibration""", "alerts/factory/{line}/{machine}"),
         Check("faults", "derived/factory/faults", f"""
            SELECT line, machine, {TS_MS}, status, spindle_rpm, parts FROM raw WHERE status = 'fault'""",
               batch=True)],
        scaled={"INTERVAL '10 seconds'": "INTERVAL '1 second'",
                'watermark = "5s"': 'watermark = "1500ms"\nidle_timeout = "1s"'}),
    Example(
        "fleet", "fleet/+/telemetry",
        {"ts": "BIGINT", "x": "DOUBLE", "y": "DOUBLE", "speed": "DOUBLE", "battery": "DOUBLE", "fault": "VARCHAR",
         "trip": "BIGINT"},
        {"vehicle": 1}, {"cnc": 0, "robots": 0, "agvs": 5},
        [Check("vehicle_alerts", "alerts/fleet/#", f"""
            SELECT f.vehicle, v.depot, {TS_MS}, coalesce(f.fault, 'low_battery') AS alert, f.battery, f.trip
            FROM raw f JOIN read_csv('examples/fleet/vehicles.csv') v ON f.vehicle = v.vehicle
            WHERE f.fault IS NOT NULL OR f.battery < v.min_battery""", "alerts/fleet/{vehicle}"),
         Check("positions", "derived/fleet/#", f"""
            SELECT vehicle, {TS_MS}, x, y, speed * 3.6 AS speed_kmh, trip FROM raw WHERE speed > 0""",
               "derived/fleet/{vehicle}/position")]),
    Example(
        "robot-cell", "cell/+/+/telemetry",
        {"ts": "BIGINT", "joint_temp": "DOUBLE[]", "torque": "DOUBLE[]", "cycles": "BIGINT", "state": "VARCHAR"},
        {"cell": 1, "robot": 2}, {"cnc": 0, "robots": 4, "agvs": 0},
        [Check("joint_alerts", "alerts/cell/#", f"""
            SELECT r.cell, r.robot, i.model, {TS_MS}, list_max(r.joint_temp) AS max_joint_temp,
                   list_max(r.torque) AS max_torque
            FROM raw r JOIN read_csv('examples/robot-cell/robots.csv') i ON r.robot = i.robot
            WHERE list_max(r.joint_temp) > i.max_joint_temp OR list_max(r.torque) > i.max_torque""",
               "alerts/cell/{cell}/{robot}"),
         Check("health", "derived/cell/#", f"""
            SELECT cell, robot, {TS_MS}, cycles, list_max(joint_temp) AS max_joint_temp,
                   joint_temp[1] AS base_joint_temp
            FROM raw WHERE state = 'running'""", "derived/cell/{cell}/{robot}/health")]),
]


def expected_rows(example: Example, raw: list[tuple[str, bytes]], sql: str, directory) -> list[dict]:
    path = directory / f"{example.folder}-raw.jsonl"
    with open(path, "wb") as handle:
        for topic, payload in raw:
            levels = topic.split("/")
            row = orjson.loads(payload) | {name: levels[i] for name, i in example.levels.items()}
            handle.write(orjson.dumps(row) + b"\n")
    columns = example.raw_columns | dict.fromkeys(example.levels, "VARCHAR")
    spec = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items()) + "}"
    con = duckdb.connect()
    con.execute(f"CREATE VIEW raw AS SELECT * FROM read_json('{path}', columns = {spec}, format = 'newline_delimited')")
    return [comparable(row) for row in con.sql(sql).to_arrow_table().to_pylist()]


def assert_same_rows(got: list[dict], expected: list[dict], check: Check) -> None:
    """Equal as multisets; the `tolerance` columns within their bound of the row that matches on the rest."""
    def exact(row: dict) -> dict:
        return {key: value for key, value in row.items() if key not in check.tolerance}

    got, expected = sorted(got, key=lambda r: repr(exact(r))), sorted(expected, key=lambda r: repr(exact(r)))
    assert [exact(r) for r in got] == [exact(r) for r in expected], check.subscription
    for mine, theirs in zip(got, expected, strict=True):
        for key, bound in check.tolerance.items():
            assert abs(mine[key] - theirs[key]) <= bound, (check.subscription, mine, theirs)


def comparable(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            value = comparable(value)
        elif isinstance(value, dt.datetime):
            value = value.replace(tzinfo=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        elif isinstance(value, float):
            value = round(value, 9)
        out[key] = value
    return out


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.folder)
def test_example_derives_what_duckdb_computes(example: Example, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # lookup table paths in the examples are relative to the repository
    port = free_port()
    config_text = (ROOT / "examples" / example.folder / "arros.toml").read_text()
    for old, new in example.scaled.items():
        assert old in config_text, f"examples/{example.folder}/arros.toml changed: {old!r} not found"
        config_text = config_text.replace(old, new)
    count = 900
    with running_service(config_text, tmp_path, listen=f"{HOST}:{port}"):
        raw = Collector(port, [example.raw_topics], protocol=MQTTv311)
        derived = {check.subscription: Collector(port, [check.topics], protocol=MQTTv311) for check in example.checks}
        stats = simulate(SimOptions(broker=f"mqtt://{HOST}:{port}", rate=60, count=count, qos=1, seed=11,
                                    anomaly_rate=0.05, late_fraction=0.05, late_max=1.0, **example.devices))
        assert stats.sent == count
        received = raw.wait_for(count)
        assert len(received) == count
        for check in example.checks:
            expected = expected_rows(example, received, check.duckdb_sql, tmp_path)
            assert expected, f"{check.subscription}: the simulated run should produce results"
            messages = derived[check.subscription].wait_for(1 if check.batch else len(expected), timeout=30)
            if check.batch:  # arrays, one per micro-batch: wait until all rows are in
                for _ in range(100):
                    if sum(len(orjson.loads(p)) for _, p in messages) >= len(expected):
                        break
                    messages = derived[check.subscription].wait_for(len(messages) + 1, timeout=0.3)
                got = [comparable(row) for topic, p in messages for row in orjson.loads(p)]
                assert {topic for topic, _ in messages} == {check.topics}
            else:
                got = []
                for topic, payload in messages:
                    row = orjson.loads(payload)
                    assert topic == check.topic_of.format(**row), "output topic filled from the row"
                    got.append(comparable(row))
            assert_same_rows(got, expected, check)
        for collector in [raw, *derived.values()]:
            collector.close()


def test_example_configs_check():
    for folder in ("factory", "fleet", "robot-cell"):
        result = arros_command("check", "-c", f"examples/{folder}/arros.toml")
        assert result.returncode == 0, result.stderr
        assert "per_row" in result.stdout


def test_published_bad_payload_in_an_example_is_a_dead_letter(tmp_path, monkeypatch):
    """The examples' strict schemas: a gateway sending a string for a number gets a dead letter."""
    monkeypatch.chdir(ROOT)
    port = free_port()
    config_text = (ROOT / "examples" / "fleet" / "arros.toml").read_text()
    with running_service(config_text, tmp_path, listen=f"{HOST}:{port}") as service:
        dead = Collector(port, ["arros/deadletter/#"], protocol=MQTTv311)
        publish_all(port, [("fleet/agv9/telemetry", b'{"ts": 1, "battery": "full"}')], protocol=MQTTv311)
        letters = dead.wait_for(1, timeout=10)
        dead.close()
    assert [orjson.loads(p)["topic"] for _, p in letters] == ["fleet/agv9/telemetry"]
    assert service.pipeline.stats["fleet"].deadletters == 1
