"""kill -9 of one member of `arros run` with `[engine] workers = 2` mid-stream, on a real Mosquitto: the
other member goes on, the supervisor starts the killed one again, its log replays and its broker session
delivers the share that waited for it; a QoS 2 filter's results equal DuckDB's over the input, each exactly once."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from tests.support import Collector, publish_all, start_arros, stop_process, unique, wait_for_log

SQL = "SELECT machine, seq, temp FROM t WHERE temp > 40"


def config_text(base: str, url: str, state: Path) -> str:
    return f"""
[broker]
url = "{url}"
client_id = "{base}"
[engine]
state_dir = "{state}"
workers = 2
[flight]
enabled = false
[control]
prefix = "{base}/arros"
[streams.t]
topic = "{base}/plant/{{machine}}/t"
schema = {{ seq = "int64", temp = "float64" }}
[subscriptions.hot]
sql = "{SQL}"
output = "{base}/hot/{{machine}}"
qos = 2
"""


def pids_of(log: Path, index: int) -> list[int]:
    return [int(p) for p in re.findall(rf"worker {index} started \(pid (\d+)\)", log.read_text(errors="replace"))]


def test_kill9_of_one_worker_mid_stream_loses_nothing_and_repeats_nothing(mosquitto, tmp_path):
    base, log = unique(), tmp_path / "arros.log"
    (tmp_path / "arros.toml").write_text(config_text(base, mosquitto.url, tmp_path / "state"))
    rng = random.Random(18)
    rows = [{"machine": f"m{rng.randrange(8)}", "seq": i, "temp": round(rng.uniform(0, 100), 2)} for i in range(6000)]
    messages = [(f"{base}/plant/{r['machine']}/t", orjson.dumps({"seq": r["seq"], "temp": r["temp"]})) for r in rows]
    con = duckdb.connect()
    con.register("t", pa.Table.from_pylist(rows))
    expected = sorted(tuple(r.values()) for r in con.sql(SQL).to_arrow_table().to_pylist())

    hot = Collector(mosquitto.port, [f"{base}/hot/#"], qos=2)
    parent = start_arros("run", "-c", str(tmp_path / "arros.toml"), log=log)  # [engine] workers = 2
    try:
        for index in (0, 1):
            wait_for_log(log, f"worker-{index}] arros_mqtt.service.runtime: arros running", process=parent, timeout=60)
        time.sleep(0.5)  # both shared SUBSCRIBEs acknowledged
        chunks = [messages[i:i + 500] for i in range(0, len(messages), 500)]
        for number, chunk in enumerate(chunks):
            publish_all(mosquitto.port, chunk)
            if number == 4:  # a third of the way: kill worker 1 while messages keep coming
                (victim,) = pids_of(log, 1)
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(pids_of(log, 1)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(pids_of(log, 1)) == 2, log.read_text()[-3000:]
        got = sorted(tuple(orjson.loads(p).values()) for _, p in hot.wait_for(len(expected), timeout=90))
    finally:
        code = stop_process(parent, timeout=60)
        hot.close()
    assert "exited with signal SIGKILL" in log.read_text()
    assert len(got) == len(expected), f"{len(got)} results, {len(expected)} expected (duplicates or losses)"
    assert got == expected
    assert code == 0
