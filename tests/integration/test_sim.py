"""`arros simulate` and `arros demo` as a user runs them."""

from __future__ import annotations

import signal
import time
import tomllib

import orjson

from arros_mqtt.sim.simulator import SimOptions, simulate
from tests.support import HOST, ROOT, Collector, arros_command, free_port, start_arros, stop_process, unique

FIELDS = {
    "cell": {"ts", "joint_temp", "torque", "cycles", "state"},
    "fleet": {"ts", "x", "y", "speed", "battery", "fault", "trip"},
    "factory": {"ts", "spindle_rpm", "temp", "vibration", "status", "parts", "scrap"},
}


def test_simulate_command_sends_exactly_count_with_late_messages(mosquitto):
    prefix = unique()
    out = Collector(mosquitto.port, [f"{prefix}/#"])
    result = arros_command("simulate", "--broker", mosquitto.url, "--count", "600", "--rate", "50", "--qos", "1",
                           "--late-fraction", "0.2", "--late-max", "1", "--topic-prefix", prefix, "--seed", "5")
    messages = [m for m in out.wait_for(601, timeout=30) if "/arros-sim/" not in m[0]]  # minus its sync echo
    out.close()
    assert result.returncode == 0, result.stderr
    assert "sent 600 messages" in result.stdout
    assert len(messages) == 600
    last_ts: dict[str, int] = {}
    out_of_order = 0
    for topic, payload in messages:
        reading = orjson.loads(payload)
        assert set(reading) == FIELDS[topic.split("/")[1]], topic
        out_of_order += reading["ts"] < last_ts.get(topic, 0)
        last_ts[topic] = max(reading["ts"], last_ts.get(topic, 0))
    assert out_of_order > 0, "late readings arrive after newer ones"
    assert {topic.split("/")[1] for topic, _ in messages} == {"cell", "fleet", "factory"}


def test_simulator_counters_only_grow_and_values_are_plausible(mosquitto):
    prefix = unique()
    seen: list[tuple[str, dict]] = []
    simulate(SimOptions(broker=mosquitto.url, rate=100, count=1500, late_fraction=0, seed=2, topic_prefix=prefix),
             on_message=lambda topic, reading: seen.append((topic, reading)))
    last: dict[str, dict] = {}
    for topic, reading in seen:
        kind = topic.split("/")[1]
        previous = last.get(topic)
        if kind == "cell":
            assert len(reading["joint_temp"]) == len(reading["torque"]) == 6
            assert min(reading["joint_temp"]) > 20 and max(reading["joint_temp"]) < 120
            assert previous is None or reading["cycles"] >= previous["cycles"]
        elif kind == "fleet":
            assert 0 <= reading["battery"] <= 100 and reading["speed"] >= 0
            assert reading["fault"] is None or reading["speed"] == 0
        else:
            assert previous is None or (reading["parts"] >= previous["parts"] and reading["scrap"] >= previous["scrap"])
            assert reading["status"] in ("run", "idle", "fault") and (reading["spindle_rpm"] > 0) == (
                reading["status"] == "run")
        last[topic] = reading


def test_demo_runs_for_seconds_and_prints_every_subscription():
    port = free_port()
    result = arros_command("demo", "--seconds", "5", "--rate", "20", "--seed", "3", "--listen", f"{HOST}:{port}",
                           timeout=90)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    final = result.stdout.split("arros demo:")[-1]
    assert "(stopped)" in final and f"127.0.0.1:{port}" in final
    demo = tomllib.loads((ROOT / "arros_mqtt" / "sim" / "demo.toml").read_text())
    for name in demo["subscriptions"]:
        assert f"\n{name} -> " in final, name
    oee = final.split("cnc_oee -> ")[1].split("\n\n")[0]  # a running aggregate: a row per machine at once
    assert all(f"m{i} " in oee for i in range(1, 7)), oee


def test_demo_stops_cleanly_on_ctrl_c(tmp_path):
    log = tmp_path / "demo.log"
    process = start_arros("demo", "--listen", f"{HOST}:{free_port()}", "--rate", "20", log=log)
    try:
        deadline = time.monotonic() + 30
        while "readings in" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stop_process(process, signal.SIGINT) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "(stopped)" in text and "Traceback" not in text
