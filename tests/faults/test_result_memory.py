"""Result memory stays bounded against hostile queries and payloads (issue 20 item 1), `arros run` as a
subprocess whose VmRSS is sampled: a filter passing every row of one 36 MB JSON array of 1,000,000
readings (6.6 GB RSS before), a join fanning one row out to 1,000,000 (5.4 GB and a 24 s stall) and
`unnest(range(0, rpm * 5000000))` (past 6 GB). Each offender is paused with its reason, its result not
published; a parallel subscription loses nothing.

Under the bounds, one input of 50,000 readings padded to 2 kB results each (100 MB) in both modes, with a
real subscriber: every result arrives once and RSS grows by less than the result plus `output_memory`
plus a constant (+640 MB before results were encoded in slices and held to `output_memory` in embedded
mode; +226-245 MB after)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from tests.support import Collector, free_port, publish_all, start_arros, stop_process, unique, wait_for_log

MAX_RSS_MB = 1500  # the bound asserted; the figure measured is printed


def vm_rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def config(directory: Path, port: int, prefix: str) -> str:
    return f"""
[broker]
url = "mqtt://127.0.0.1:{port}"
client_id = "{unique('arros-memory-')}"
[engine]
state_dir = "{directory / 'state'}"
[control]
prefix = "{prefix}/arros"
status_interval = "300ms"
[streams.telemetry]
topic = "{prefix}/{{machine}}/telemetry"
schema = {{ ts = "timestamp[ms]", rpm = "int64", temp = "float64" }}
[subscriptions.every_row]
sql = "SELECT machine, rpm FROM telemetry WHERE rpm >= 0"
output = "{prefix}/every/{{machine}}"
qos = 0
[subscriptions.fan_out]
sql = "SELECT t.machine, s.value FROM telemetry t JOIN range(0, 1000000) s ON true WHERE t.temp = -1"
output = "{prefix}/fan/{{machine}}"
[subscriptions.unnest_bomb]
sql = "SELECT machine, unnest(range(0, rpm * 5000000)) AS i FROM telemetry WHERE temp = -2"
output = "{prefix}/unnest/{{machine}}"
[subscriptions.good]
sql = "SELECT machine, temp FROM telemetry WHERE temp > 1000"
output = "{prefix}/good/{{machine}}"
"""


def test_hostile_results_keep_rss_bounded_and_pause_only_the_offenders(mosquitto, tmp_path):
    prefix = unique()
    path = tmp_path / "arros.toml"
    path.write_text(config(tmp_path, mosquitto.port, prefix))
    log = tmp_path / "arros.log"
    process = start_arros("run", "-c", str(path), log=log)
    statuses = Collector(mosquitto.port, [f"{prefix}/arros/status/#"])
    good = Collector(mosquitto.port, [f"{prefix}/good/#"])
    dead = Collector(mosquitto.port, [f"{prefix}/arros/deadletter/#"])
    peak = 0
    try:
        wait_for_log(log, "subscribed", "running", process=process)
        time.sleep(1.0)
        readings = [{"ts": 1_764_000_000_000 + i, "rpm": i % 5000, "temp": 20.0} for i in range(1_000_000)]
        array = orjson.dumps(readings)
        assert len(array) > 30_000_000
        publish_all(mosquitto.port, [(f"{prefix}/m1/telemetry", array)])
        del readings, array
        publish_all(mosquitto.port, [(f"{prefix}/m2/telemetry", orjson.dumps({"ts": 1_764_000_000_000, "rpm": 1,
                                                                               "temp": -1.0})),
                                     (f"{prefix}/m3/telemetry", orjson.dumps({"ts": 1_764_000_000_000, "rpm": 1000,
                                                                               "temp": -2.0}))])
        paused: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(paused) < 2:
            peak = max(peak, vm_rss_mb(process.pid))
            for _, payload in list(statuses.messages):
                status = orjson.loads(payload)
                if status.get("paused"):
                    paused[status["name"]] = status["paused_reason"]
            time.sleep(0.1)
        assert set(paused) == {"every_row", "fan_out"}, paused
        assert all(reason.startswith("result limit") for reason in paused.values())
        publish_all(mosquitto.port, [(f"{prefix}/m{i % 4}/telemetry", orjson.dumps(
            {"ts": 1_764_000_001_000 + i, "rpm": 1, "temp": 2000.0 + i})) for i in range(100)])
        got = good.wait_for(100)
        peak = max(peak, vm_rss_mb(process.pid))
        print(f"\nresult memory: max VmRSS {peak} MB (bound {MAX_RSS_MB} MB), paused: {paused}")
        assert len(got) == 100
        assert peak < MAX_RSS_MB
        letters = [orjson.loads(payload) for _, payload in dead.wait_for(1)]
        assert any("range() would build a list of 5,000,000,000 elements" in letter.get("error", "")
                   for letter in letters), letters
    finally:
        for collector in (statuses, good, dead):
            collector.close()
        stop_process(process)


ROWS, PAD = 50_000, 2000  # one input message -> 100 MB of per-row results
OUTPUT_MEMORY_MB = 8
CONSTANT_MB = 200  # beyond the result's Arrow bytes and output_memory: DataFusion, encoding slices, the broker


def rss_bound_mb() -> int:
    """What a round of ROWS x PAD results may add to RSS: the result table itself (bounded by
    max_result_bytes), output_memory and a constant; before results were encoded in slices and held
    to output_memory in embedded mode it was ~6x the results (+630 MB here)."""
    return ROWS * PAD // 1_000_000 + OUTPUT_MEMORY_MB + CONSTANT_MB


def padded_config(directory: Path, port: int, prefix: str, embedded: bool) -> str:
    where = (f'[embedded]\nlisten = "127.0.0.1:{port}"\n' if embedded else
             f'[broker]\nurl = "mqtt://127.0.0.1:{port}"\nclient_id = "{unique("arros-padded-")}"\n')
    return f"""{where}
[engine]
state_dir = "{directory / 'state'}"
[durability]
output_memory = "{OUTPUT_MEMORY_MB}MiB"
[streams.telemetry]
topic = "{prefix}/{{machine}}/telemetry"
schema = {{ ts = "timestamp[ms]", rpm = "int64", temp = "float64" }}
[subscriptions.padded]
sql = "SELECT machine, rpm, rpad('x', {PAD}, 'y') AS pad FROM telemetry"
output = "{prefix}/padded/{{machine}}"
qos = 1
"""


@pytest.mark.parametrize("mode", ["embedded", "client"])
def test_many_large_results_of_one_input_keep_rss_bounded_and_arrive_once(mode, mosquitto, tmp_path):
    embedded = mode == "embedded"
    port = free_port() if embedded else mosquitto.port
    protocol = mqtt.MQTTv311 if embedded else mqtt.MQTTv5
    prefix = unique()
    path = tmp_path / "arros.toml"
    path.write_text(padded_config(tmp_path, port, prefix, embedded))
    log = tmp_path / "arros.log"
    process = start_arros("run", "-c", str(path), log=log)
    results = None
    try:
        wait_for_log(log, "subscribed", "listening on", process=process)
        results = Collector(port, [f"{prefix}/padded/#"], protocol=protocol)
        time.sleep(0.5)
        before = peak = vm_rss_mb(process.pid)
        array = orjson.dumps([{"ts": 1_764_000_000_000 + i, "rpm": i, "temp": 20.0} for i in range(ROWS)])
        publish_all(port, [(f"{prefix}/m1/telemetry", array)], protocol=protocol, sync=embedded)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(results.messages) < ROWS:
            peak = max(peak, vm_rss_mb(process.pid))
            time.sleep(0.05)
        got = results.wait_for(ROWS, timeout=1)
        peak = max(peak, vm_rss_mb(process.pid))
        print(f"\n{mode}: {len(got):,} results of {PAD} B: VmRSS {before} -> {peak} MB (+{peak - before} MB, "
              f"bound +{rss_bound_mb()} MB)")
        assert len(got) == ROWS
        assert len({orjson.loads(payload)["rpm"] for _, payload in got}) == ROWS  # each once
        assert peak - before < rss_bound_mb()
    finally:
        if results is not None:
            results.close()
        stop_process(process)
